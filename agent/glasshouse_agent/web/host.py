"""`glasshouse-agent-browser-host`: the native messaging host. The browser starts it, as the user
and in the user's session, when the Glasshouse extension calls `chrome.runtime.connectNative`;
it ends when the browser closes the pipe.

Browser side (stdin/stdout, Chrome's native messaging framing: a 32-bit length in native byte
order, then that many bytes of UTF-8 JSON):

    host -> extension  {"type": "config", "tabs": "off"|"domain"|"full", "blocks": "off"|"domain"|"full"}
    extension -> host  {"type": "tab", "url": "...", "title": "..."}    (full)
                       {"type": "tab", "domain": "..."}                  (domain only)
                       {"type": "tab"}                                   (no web page in front)
                       {"type": "blocked", "url": "..."} / {"type": "blocked", "domain": "..."}

The extension sends only what the last config asked for: with `tabs: "domain"` the URL and
title never leave the browser process. Until a config arrives, and whenever the service is not
reachable or the policy does not allow browser capture now, the config says "off".

Service side: the session socket (glasshouse_agent.ipc), like the session helper. The service
learns the user from SO_PEERCRED, checks every sample against the policy again and merges
`browser` samples into spans; this host repeats the state in front every 0.8 x pulse so the
spans stay joined, as the window collector does. It stores nothing itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from glasshouse_agent.collectors import HEARTBEAT_FRACTION
from glasshouse_agent.ipc import DEFAULT_SOCKET, LineReader, encode
from glasshouse_agent.model import MAX_TITLE_CHARS, Attrs, Sample
from glasshouse_agent.policy import NOTHING, Policy, PolicyError, parse_policy
from glasshouse_agent.web.rules import domain_of, normalize_domain

log = logging.getLogger("glasshouse_agent.web.host")

SOCKET_ENV = "GLASSHOUSE_AGENT_SOCKET"
# A tab report is a URL and a title; anything much larger is a broken or hostile peer.
MAX_MESSAGE = 64 * 1024
MAX_URL_CHARS = 1024
_LENGTH = struct.Struct("=I")  # native byte order, as Chrome writes it


class Frames:
    """Splits the browser's byte stream into messages; raises ValueError on an oversized one."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out = []
        while len(self._buf) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buf)
            if length > MAX_MESSAGE:
                raise ValueError(f"message of {length} bytes from the browser")
            if len(self._buf) < _LENGTH.size + length:
                break
            body = self._buf[_LENGTH.size : _LENGTH.size + length]
            self._buf = self._buf[_LENGTH.size + length :]
            out.append(json.loads(body))
        return out


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


def modes(policy: Policy, now: float) -> tuple[str, str]:
    """(tabs, blocks): what the extension may report under this policy at this moment."""
    detail = "full" if policy.web.get("full_urls") is True else "domain"
    tabs = detail if policy.allows("browser", now) else "off"
    rules = policy.web.get("rules")
    blocking = isinstance(rules, list) and any(isinstance(r, dict) and r.get("action") == "block" for r in rules)
    return tabs, detail if blocking else "off"


class NativeHost:
    def __init__(
        self,
        socket_path: str,
        *,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        clock: Callable[[], float] = time.time,
        reconnect_max: float = 30.0,
    ) -> None:
        self.socket_path = socket_path
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.clock = clock
        self.reconnect_max = reconnect_max
        self.policy: Policy = NOTHING
        self.sock: socket.socket | None = None
        self._reader = LineReader()
        self._retry_at = 0.0
        self._delay = 0.5
        self._sent_config: tuple[str, str] | None = None
        self._tab: Attrs | None = None  # the state in front, as last sent to the service
        self._next_beat: float | None = None

    def run(self) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.stdin_fd, selectors.EVENT_READ, "browser")
        frames = Frames()
        try:
            while True:
                now = self.clock()
                if self.sock is None and now >= self._retry_at:
                    self._connect(sel, now)
                self._send_config(now)
                deadlines = [math.floor(now / 60.0) * 60.0 + 60.0]  # schedules change on the minute
                if self.sock is None:
                    deadlines.append(self._retry_at)
                if self._next_beat is not None:
                    deadlines.append(self._next_beat)
                for key, _ in sel.select(max(0.0, min(deadlines) - now)):
                    if key.data == "browser":
                        data = os.read(self.stdin_fd, 65536)
                        if not data:
                            log.info("the browser closed the connection")
                            return 0
                        for message in frames.feed(data):
                            self._on_browser(message)
                    elif key.data == "service":
                        self._on_service(sel)
                now = self.clock()
                if self._next_beat is not None and now >= self._next_beat and self._tab:
                    self._send_sample(self._tab, now)
        except ValueError as exc:
            log.error("bad message from the browser: %s", exc)
            return 1
        finally:
            sel.close()
            if self.sock is not None:
                self.sock.close()

    # -- the service ---------------------------------------------------------------------

    def _connect(self, sel: selectors.BaseSelector, now: float) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            log.info("service not reachable at %s (%s); retrying in %.0fs", self.socket_path, exc, self._delay)
            self._retry_at = now + self._delay
            self._delay = min(self.reconnect_max, self._delay * 2)
            return
        sock.settimeout(5.0)
        self.sock = sock
        self._reader = LineReader()
        self._delay = 0.5
        sel.register(sock, selectors.EVENT_READ, "service")

    def _disconnect(self, sel: selectors.BaseSelector, reason: str) -> None:
        log.warning("lost the service connection: %s", reason)
        if self.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(self.sock)
            self.sock.close()
        self.sock = None
        # Without a service there is no policy in force: the extension reports nothing.
        self.policy = NOTHING
        self._tab = None
        self._next_beat = None
        self._retry_at = self.clock() + self._delay

    def _on_service(self, sel: selectors.BaseSelector) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
            if not data:
                return self._disconnect(sel, "closed by the service")
            messages = self._reader.feed(data)
        except (OSError, ValueError) as exc:
            return self._disconnect(sel, str(exc))
        for message in messages:
            if isinstance(message, dict) and message.get("type") == "policy":
                doc = message.get("policy")
                try:
                    self.policy = NOTHING if doc is None else parse_policy(doc)
                except PolicyError as exc:
                    log.error("service sent a policy we cannot apply (%s); reporting nothing", exc)
                    self.policy = NOTHING
        return None

    def _send(self, message: dict[str, Any]) -> None:
        if self.sock is None:
            return
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            log.warning("cannot reach the service: %s", exc)  # the next read sees the EOF

    def _send_sample(self, attrs: Attrs, now: float) -> None:
        self._send({"type": "sample", "sample": Sample("browser", now, attrs).to_json()})
        self._next_beat = now + self.policy.pulse_seconds * HEARTBEAT_FRACTION if attrs else None

    # -- the browser ---------------------------------------------------------------------

    def _send_config(self, now: float) -> None:
        config = modes(self.policy, now) if self.sock is not None else ("off", "off")
        if config != self._sent_config:
            self._sent_config = config
            write_all(self.stdout_fd, frame({"type": "config", "tabs": config[0], "blocks": config[1]}))
            if config[0] == "off" and self._tab:
                self._send_sample({}, now)  # close the open span now, not a pulse later
            # The extension reports the tab again under the new config; until then nothing
            # gathered under the old one is repeated.
            self._tab, self._next_beat = None, None

    def _on_browser(self, message: Any) -> None:
        if not isinstance(message, dict) or self._sent_config is None:
            return
        tabs, blocks = self._sent_config
        now = self.clock()
        if message.get("type") == "tab" and tabs != "off":
            attrs = tab_attrs(message, full=tabs == "full")
            self._tab = attrs
            self._send_sample(attrs, now)
        elif message.get("type") == "blocked" and blocks != "off":
            domain = _domain(message)
            if domain is not None:
                event: dict[str, Any] = {"type": "web_block", "time": now, "domain": domain}
                url = message.get("url")
                if blocks == "full" and isinstance(url, str):
                    event["url"] = url[:MAX_URL_CHARS]
                self._send(event)


def _domain(message: dict[str, Any]) -> str | None:
    url, domain = message.get("url"), message.get("domain")
    if isinstance(url, str) and url:
        return domain_of(url)
    if isinstance(domain, str) and domain:
        try:
            return normalize_domain(domain)
        except ValueError:
            return None
    return None


def tab_attrs(message: dict[str, Any], *, full: bool) -> Attrs:
    """The span attributes for a tab report: the domain; URL and title too when `full`. A page
    that is not on the web (chrome://, file://, no window in front) gives {}: nothing active."""
    domain = _domain(message)
    if domain is None:
        return {}
    attrs: Attrs = {"domain": domain}
    if full:
        url, title = message.get("url"), message.get("title")
        if isinstance(url, str) and url:
            attrs["url"] = url[:MAX_URL_CHARS]
        if isinstance(title, str) and title:
            attrs["title"] = title[:MAX_TITLE_CHARS]
    return attrs


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def main(argv: list[str] | None = None) -> int:
    """Chrome passes the caller's origin (chrome-extension://ID/) as the first argument; the
    host manifest's allowed_origins already decided who may start it."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="glasshouse-agent-browser-host: %(levelname)s %(message)s", stream=sys.stderr
    )
    origin = args[0] if args else "?"
    log.info("started by %s (pid %d, uid %d)", origin, os.getpid(), os.getuid())
    path = os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    try:
        return NativeHost(path).run()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
