"""Real browser: Debian's Chromium, headless (new mode), with the unpacked extension from
browser-extension/ talking to the real native messaging host, which talks to the real service.

- Tab changes (open, switch) arrive in the spool as `browser` spans: domains only by default
  (and the extension never even hands the URL or title to the host), URL and title too when
  `web.full_urls` allows them.
- A URL blocked by the web filter is refused by Chromium with the managed policy the service
  wrote into the machine's /etc/chromium/policies/managed/ (ERR_BLOCKED_BY_ADMINISTRATOR; the
  extension reports it as a `web_block` event), and loads again once the rule is lifted.
  That file is machine-wide: a fixture removes it (and anything else the test may leave in /etc)
  whatever happens.

Pages come from a local http.server; every *.glasshouse.test host name resolves to it through
`--host-resolver-rules`, so nothing leaves the machine and no other program's sites are touched.
Without Chromium the tests install it as root (scripts/ensure-chromium.sh), skip otherwise,
and fail under CI=true."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.service import Service
from glasshouse_agent.spool import Spool
from glasshouse_agent.uplink import Uplink
from glasshouse_agent.web.host import Frames
from glasshouse_agent.web.install import DEV_EXTENSION_ID, host_manifest
from tests.conftest import make_policy, policy_doc
from tests.desktop import wait_for
from tests.fakeserver import FakeServer
from tests.test_service import start_service, stop_service

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "browser-extension"
ENSURE = REPO / "scripts" / "ensure-chromium.sh"
WORKER_URL = f"chrome-extension://{DEV_EXTENSION_ID}/background.js"
# Uploads would carry browser spans to the in-test server (which knows only the v1 kinds);
# these tests read the spool, so nothing is uploaded while they run.
NO_UPLOAD = {"max_batch_spans": 1000, "max_batch_seconds": 3600}

# Seconds after its start by which Chromium surely watches /etc/chromium/policies (measured:
# between 2 and 6 s on a loaded 2-core machine).
WATCH_DELAY = 12.0

pytestmark = pytest.mark.timeout(240)


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0:
        subprocess.run(["bash", str(ENSURE)], check=False, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed (run scripts/ensure-chromium.sh as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


# -- pages --------------------------------------------------------------------------------------


class Pages:
    """An HTTP server for every *.glasshouse.test host; remembers which host asked for what."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                pages.requests.append((host, self.path))
                body = f"<html><head><title>{host} page {self.path}</title></head><body>ok</body></html>".encode()
                self.send_response(404 if self.path == "/favicon.ico" else 200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"

    def hosts(self) -> set[str]:
        return {host for host, path in self.requests if path != "/favicon.ico"}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def pages() -> Iterator[Pages]:
    server = Pages()
    yield server
    server.close()


# -- the browser ----------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium with the extension and a user-level native messaging host manifest in
    its own profile directory. The host is this checkout's, behind a `tee` that records every
    byte the extension sends it, so a test can check what left the browser."""

    def __init__(self, binary: str, socket_path: str, workdir: Path) -> None:
        self.workdir = workdir
        self.profile = workdir / "profile"
        hosts = self.profile / "NativeMessagingHosts"
        hosts.mkdir(parents=True)
        self.recording = workdir / "extension-to-host.bin"
        wrapper = workdir / "glasshouse-agent-browser-host"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"tee -a '{self.recording}' | exec '{sys.executable}' -m glasshouse_agent.web.host \"$@\" "
            f"2>>'{workdir / 'host.log'}'\n"
        )
        wrapper.chmod(0o755)
        manifest = host_manifest(str(wrapper), DEV_EXTENSION_ID)
        (hosts / "com.glasshouse.agent.json").write_text(json.dumps(manifest))
        args = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            f"--user-data-dir={self.profile}",
            f"--load-extension={EXTENSION}",
            "--remote-debugging-port=0",  # Chromium picks a free port and writes it down
            "--host-resolver-rules=MAP *.glasshouse.test 127.0.0.1",
            "about:blank",
        ]
        env = {**os.environ, "GLASSHOUSE_AGENT_SOCKET": socket_path}
        self.log = open(workdir / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.port = 0
        try:
            wait_for(self._read_port, timeout=30)
            wait_for(lambda: any(t.get("url") == WORKER_URL for t in self.targets()), timeout=30)
        except BaseException:
            self.close()
            raise

    def _read_port(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"chromium exited: {(self.workdir / 'chromium.log').read_text(errors='replace')}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.port = int((self.profile / "DevToolsActivePort").read_text().split()[0])
        return self.port > 0

    def _call(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local browser
            body = response.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode()

    def targets(self) -> list[dict[str, Any]]:
        try:
            return list(self._call("/json/list"))
        except OSError:
            return []

    def open(self, url: str) -> str:
        return str(self._call(f"/json/new?{url}", method="PUT")["id"])

    def activate(self, target: str) -> None:
        self._call(f"/json/activate/{target}")

    def close_tab(self, target: str) -> None:
        with contextlib.suppress(OSError):
            self._call(f"/json/close/{target}")

    def sent_by_extension(self) -> list[dict[str, Any]]:
        data = self.recording.read_bytes() if self.recording.exists() else b""
        return list(Frames().feed(data))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the browser, its helpers and the host
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short, and reachable by an unprivileged browser host: the socket lives here too.
    path = Path(tempfile.mkdtemp(prefix="ghc-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def chromium(socket_path: str, workdir: Path) -> Iterator[Chromium]:
    browser = Chromium(chromium_path(), socket_path, workdir)
    try:
        yield browser
    finally:
        browser.close()


def host_connected(spool_path: Path) -> bool:
    spool = Spool(str(spool_path))
    try:
        return bool(json.loads(spool.get("sessions") or "[]"))
    finally:
        spool.close()


def browser_spans(spool_path: Path) -> list[dict[str, Any]]:
    """Closed and still-open browser spans, in time order."""
    spool = Spool(str(spool_path))
    try:
        rows = spool._db.execute(
            "SELECT start, attrs, uid FROM spans WHERE kind = 'browser' "
            "UNION ALL SELECT start, attrs, uid FROM open_spans WHERE kind = 'browser' ORDER BY 1"
        ).fetchall()
    finally:
        spool.close()
    return [{**json.loads(attrs), "_uid": uid} for _, attrs, uid in rows]


def events(spool_path: Path, kind: str) -> list[dict[str, Any]]:
    spool = Spool(str(spool_path))
    try:
        rows = spool._db.execute("SELECT attrs FROM spans WHERE kind = ?", (kind,)).fetchall()
    finally:
        spool.close()
    return [json.loads(a) for (a,) in rows]


def domains(spans: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for span in spans:
        if not out or out[-1] != span["domain"]:
            out.append(span["domain"])
    return out


# -- capture --------------------------------------------------------------------------------------


def test_tab_changes_arrive_as_domain_only_spans(tmp_path: Path, workdir: Path, pages: Pages) -> None:
    policy = make_policy(collect={"browser": True}, upload=NO_UPLOAD)
    service = start_service(tmp_path, str(workdir), policy)
    spool = tmp_path / "spool.sqlite3"
    try:
        with chromium(service.socket_path, workdir) as browser:
            wait_for(lambda: host_connected(spool), timeout=30)
            alpha = browser.open(pages.url("alpha.glasshouse.test", "/inbox/42"))
            wait_for(lambda: domains(browser_spans(spool))[-1:] == ["alpha.glasshouse.test"], timeout=30)
            browser.open(pages.url("beta.glasshouse.test", "/report"))
            wait_for(lambda: domains(browser_spans(spool))[-1:] == ["beta.glasshouse.test"], timeout=30)
            browser.activate(alpha)  # switch back to the first tab
            wait_for(lambda: domains(browser_spans(spool))[-1:] == ["alpha.glasshouse.test"], timeout=30)
            sent = browser.sent_by_extension()
    finally:
        stop_service(service)
    spans = browser_spans(spool)
    assert domains(spans) == ["alpha.glasshouse.test", "beta.glasshouse.test", "alpha.glasshouse.test"]
    assert all(set(span) == {"domain", "_uid"} and span["_uid"] == os.getuid() for span in spans)
    # What the extension handed the host: domains only; the URL and title stayed in the browser.
    tabs = [m for m in sent if m.get("type") == "tab"]
    assert {"type": "tab", "domain": "beta.glasshouse.test"} in tabs
    assert all(set(m) <= {"type", "domain"} for m in sent), sent
    assert pages.hosts() == {"alpha.glasshouse.test", "beta.glasshouse.test"}


def test_full_urls_and_titles_when_the_policy_allows(tmp_path: Path, workdir: Path, pages: Pages) -> None:
    policy = make_policy(collect={"browser": True}, web={"full_urls": True, "rules": []}, upload=NO_UPLOAD)
    service = start_service(tmp_path, str(workdir), policy)
    spool = tmp_path / "spool.sqlite3"
    url = pages.url("gamma.glasshouse.test", "/docs/page?id=7")
    try:
        with chromium(service.socket_path, workdir) as browser:
            wait_for(lambda: host_connected(spool), timeout=30)
            browser.open(url)
            want = {
                "domain": "gamma.glasshouse.test",
                "url": url,
                "title": "gamma.glasshouse.test page /docs/page?id=7",
            }
            wait_for(lambda: any(span.items() >= want.items() for span in browser_spans(spool)), timeout=30)
    finally:
        stop_service(service)


# -- web filtering --------------------------------------------------------------------------------

MACHINE_FILES = (
    "/etc/chromium/policies/managed/glasshouse.json",
    "/etc/opt/chrome/policies/managed/glasshouse.json",
    "/etc/firefox/policies/policies.json",
)


def _ancestors(path: str) -> list[str]:
    out = []
    head = os.path.dirname(path)
    while head not in ("/", "/etc"):
        out.append(head)
        head = os.path.dirname(head)
    return out


@pytest.fixture
def machine_policy() -> Iterator[None]:
    """The service writes into the machine's /etc here. Whatever happens, afterwards the three
    files are as before (absent, or their old bytes) and directories the test made are gone."""
    if os.geteuid() != 0:
        reason = "writing /etc/chromium/policies/managed needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    if os.path.exists(MACHINE_FILES[0]):
        pytest.skip(f"{MACHINE_FILES[0]} exists on this machine (a real agent's?); not touching it")
    saved = {path: Path(path).read_bytes() if os.path.exists(path) else None for path in MACHINE_FILES}
    directories = sorted({d for path in MACHINE_FILES for d in _ancestors(path)}, key=len, reverse=True)
    existed = {d: os.path.isdir(d) for d in directories}
    leftover: list[str] = []
    try:
        yield
    finally:
        leftover = [p for p, c in saved.items() if c is None and os.path.exists(p)]
        for path, content in saved.items():
            if content is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                Path(path).write_bytes(content)
        for directory in directories:
            if not existed[directory]:
                with contextlib.suppress(FileNotFoundError, OSError):
                    os.rmdir(directory)
    # Checked after the clean-up, so a failure here leaves nothing behind either.
    assert leftover == [], f"the service left managed policy behind: {leftover}"


def test_a_blocked_url_is_refused_and_loads_again_when_the_rule_is_lifted(
    tmp_path: Path, workdir: Path, pages: Pages, server: FakeServer, machine_policy: None
) -> None:
    blocked = f"blocked-{uuid.uuid4().hex[:8]}.glasshouse.test"  # nobody else's site
    rules = {"rules": [{"action": "block", "kind": "domain", "value": blocked}]}
    device_id, key = server.add_device()
    server.set_policy(policy_doc(collect={"browser": True}, web=rules, upload=NO_UPLOAD))
    spool_path = tmp_path / "spool.sqlite3"
    service = Service(
        spool_path=str(spool_path),
        socket_path=str(workdir / "session.sock"),
        uplink=Uplink(server.url, device_id, key, timeout=5),
        utmp_path=str(tmp_path / "no-utmp"),
        web_root="/",  # the real thing: Chromium reads /etc/chromium/policies/managed
        policy_interval=0.2,
        checkpoint_seconds=0.2,
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    policy_file = Path(MACHINE_FILES[0])
    try:
        assert service.ready.wait(10)
        wait_for(lambda: policy_file.exists(), timeout=20)
        assert json.loads(policy_file.read_text()) == {"URLBlocklist": [blocked]}
        with chromium(service.socket_path, workdir) as browser:
            wait_for(lambda: host_connected(spool_path), timeout=30)
            browser.open(pages.url(blocked, "/news"))
            wait_for(lambda: events(spool_path, "web_block"), timeout=30)
            browser.open(pages.url("allowed.glasshouse.test"))
            wait_for(lambda: "allowed.glasshouse.test" in pages.hosts(), timeout=30)
            assert blocked not in pages.hosts()  # the browser never asked the server for it
            assert events(spool_path, "web_block") == [{"domain": blocked, "user": pwd.getpwuid(os.getuid()).pw_name}]

            # Chromium starts watching its policy directory a few seconds after it starts; a
            # change before that is only seen at its next periodic reload (15 minutes). Lift
            # the rule once the watch is surely in place.
            time.sleep(max(0.0, browser.started + WATCH_DELAY - time.monotonic()))
            server.set_policy(policy_doc(collect={"browser": True}, web={"rules": []}, upload=NO_UPLOAD))
            wait_for(lambda: not policy_file.exists(), timeout=20)
            for attempt in range(30):  # Chromium notices the change by itself, within seconds
                tab = browser.open(pages.url(blocked, f"/news?attempt={attempt}"))
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: blocked in pages.hosts(), timeout=1.0)
                browser.close_tab(tab)
                if blocked in pages.hosts():
                    break
            assert blocked in pages.hosts()
    finally:
        service.stop()
        thread.join(10)
    # The service removed what it wrote (its own files here; the fixture checks all three).
    assert not os.path.exists(MACHINE_FILES[0])
    assert not os.path.exists(MACHINE_FILES[1])
