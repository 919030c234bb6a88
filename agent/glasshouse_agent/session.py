"""`glasshouse-agent session`: the per-user helper, started by the desktop session (XDG
autostart). It runs the collectors that need the user's display (active window, idle), only
those the policy allows and only inside its schedule, and streams their samples to the system
service over the Unix socket. It stores nothing itself; if the service is away it waits and
reconnects, and samples taken meanwhile are not kept (the service would refuse stale ones)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable

from glasshouse_agent.apps_notify import Notifier
from glasshouse_agent.collectors import HEARTBEAT_FRACTION, Collector, DisplayGone
from glasshouse_agent.ipc import LineReader, encode
from glasshouse_agent.model import Kind
from glasshouse_agent.policy import NOTHING, Policy, PolicyError, parse_policy

log = logging.getLogger(__name__)

CollectorFactory = Callable[[Kind, Policy], Collector]
# What a user session can observe; logins come from the service's utmp reader.
USER_KINDS: tuple[Kind, ...] = ("window", "idle")


class SessionEnded(Exception):
    """The display went away (the user logged out): the helper exits."""


def platform_factory(display: str | None) -> CollectorFactory:
    """Pick the backend for this platform. Wayland has none: without an X display the helper
    collects no window or idle data rather than guess."""

    def make(kind: Kind, policy: Policy) -> Collector:
        heartbeat = policy.pulse_seconds * HEARTBEAT_FRACTION
        if sys.platform == "win32":
            from glasshouse_agent.collectors import win32

            api = win32.Win32Api.load()
            if kind == "window":
                return win32.win32_window_collector(api, titles=policy.titles, heartbeat=heartbeat)
            return win32.win32_idle_collector(api, threshold=policy.idle_threshold_seconds, heartbeat=heartbeat)
        if sys.platform == "darwin":
            from glasshouse_agent.collectors import macos

            mac = macos.MacApi(macos.CtypesObjC())
            if kind == "window":
                return macos.macos_window_collector(mac, heartbeat=heartbeat)
            return macos.macos_idle_collector(mac, threshold=policy.idle_threshold_seconds, heartbeat=heartbeat)
        if not (display or os.environ.get("DISPLAY")):
            raise RuntimeError("no X display (Wayland sessions are not supported yet)")
        from glasshouse_agent.collectors import x11

        if kind == "window":
            return x11.X11WindowCollector(display, titles=policy.titles, heartbeat=heartbeat)
        return x11.x11_idle_collector(display, threshold=policy.idle_threshold_seconds, heartbeat=heartbeat)

    return make


class SessionHelper:
    def __init__(
        self,
        socket_path: str,
        factory: CollectorFactory,
        *,
        clock: Callable[[], float] = time.time,
        reconnect_max: float = 30.0,
    ) -> None:
        self.socket_path = socket_path
        self.factory = factory
        self.clock = clock
        self.reconnect_max = reconnect_max
        self.stop_event = threading.Event()
        self.policy: Policy = NOTHING
        self.collectors: dict[Kind, Collector] = {}
        self._retry_at: dict[Kind, float] = {}
        self.notifier = Notifier()  # the service's messages to the user (an app closed by policy)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(OSError):  # full (already awake) or closed (already stopped)
            os.write(self._wake_w, b"x")

    def run(self) -> int:
        delay = 0.5
        try:
            while not self.stop_event.is_set():
                try:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(self.socket_path)
                except OSError as exc:
                    sock.close()
                    log.info("service not reachable at %s (%s); retrying in %.0fs", self.socket_path, exc, delay)
                    self.stop_event.wait(delay)
                    delay = min(self.reconnect_max, delay * 2)
                    continue
                delay = 0.5
                try:
                    self._connected(sock)
                except SessionEnded as exc:
                    log.info("session ended: %s", exc)
                    return 0
                except (OSError, ValueError) as exc:
                    # The service went away or sent garbage: start over with a new connection.
                    log.warning("lost the service connection: %s", exc)
                finally:
                    sock.close()
                    self._close_collectors()
                    # Without a service there is no policy in force: collect nothing until the
                    # next one says otherwise.
                    self.policy = NOTHING
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
        return 0

    def _connected(self, sock: socket.socket) -> None:
        sock.settimeout(5.0)
        reader = LineReader()
        while not self.stop_event.is_set():
            now = self.clock()
            self._reconcile(now)
            sel = selectors.DefaultSelector()
            try:
                sel.register(sock, selectors.EVENT_READ, "service")
                sel.register(self._wake_r, selectors.EVENT_READ, "wake")
                for kind, collector in self.collectors.items():
                    fd = collector.fileno()
                    if fd is not None:
                        sel.register(fd, selectors.EVENT_READ, kind)
                wakeups = [c.next_wakeup() for c in self.collectors.values()]
                # While paused by the schedule, look again each minute.
                wakeups.append(now + 60.0)
                timeout = max(0.0, min(wakeups) - now)
                ready = sel.select(timeout)
            finally:
                sel.close()
            for key, _ in ready:
                if key.data == "service":
                    data = sock.recv(65536)
                    if not data:
                        log.info("service closed the connection")
                        return
                    for message in reader.feed(data):
                        self._on_message(message)
                elif key.data == "wake":
                    os.read(self._wake_r, 512)
            now = self.clock()
            for collector in list(self.collectors.values()):
                if collector.next_wakeup() <= now or collector.fileno() is not None:
                    try:
                        samples = collector.poll(now)
                    except DisplayGone as exc:
                        raise SessionEnded(f"the display closed ({exc})") from exc
                    for sample in samples:
                        sock.sendall(encode({"type": "sample", "sample": sample.to_json()}))

    def _on_message(self, message: object) -> None:
        if isinstance(message, dict) and message.get("type") == "notify":
            self.notifier.show(message)
            return
        if not isinstance(message, dict) or message.get("type") != "policy":
            return
        doc = message.get("policy")
        try:
            policy = NOTHING if doc is None else parse_policy(doc)
        except PolicyError as exc:
            log.error("service sent a policy we cannot apply (%s); collecting nothing", exc)
            policy = NOTHING
        if policy != self.policy:
            log.info("policy: %s", json.dumps(policy.to_json()["collect"]))
            self.policy = policy
            self._retry_at = {}
            # Settings that shape a collector (titles, threshold, pulse) take effect by
            # building it anew; a collector never runs under a policy it was not built for.
            self._close_collectors()

    def _reconcile(self, now: float) -> None:
        """Run exactly the collectors the policy allows at this moment."""
        for kind in USER_KINDS:
            allowed = self.policy.allows(kind, now)
            running = kind in self.collectors
            if allowed and not running and now >= self._retry_at.get(kind, 0.0):
                try:
                    self.collectors[kind] = self.factory(kind, self.policy)
                except Exception as exc:
                    # E.g. no X display yet, or a missing extension: say so, try again later.
                    log.error("cannot start the %s collector: %s", kind, exc)
                    self._retry_at[kind] = now + 60.0
            elif running and not allowed:
                self.collectors.pop(kind).close()

    def _close_collectors(self) -> None:
        for kind, collector in self.collectors.items():
            try:
                collector.close()
            except Exception as exc:
                log.warning("closing the %s collector: %s", kind, exc)
        self.collectors = {}
