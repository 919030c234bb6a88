"""The native messaging host between a browser (played here through pipes, in Chrome's framing)
and the real service over the real session socket; `browser-install`; the extension's own
promises checked statically. The real browser is in test_web_chromium.py."""

from __future__ import annotations

import base64
import json
import os
import pwd
import select
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.cli import main as cli_main
from glasshouse_agent.ipc import encode
from glasshouse_agent.model import Sample
from glasshouse_agent.policy import Policy
from glasshouse_agent.web.host import Frames, NativeHost, frame
from glasshouse_agent.web.install import DEFAULT_HOST_PATH, DEV_EXTENSION_ID, extension_id, host_manifest
from tests.conftest import make_policy
from tests.desktop import wait_for
from tests.test_service import start_service, stop_service, stored

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "browser-extension"
PACKAGING = REPO / "agent" / "packaging"
BLOCK = {"rules": [{"action": "block", "kind": "domain", "value": "facebook.com"}]}


@pytest.fixture
def sockdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="ghw-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Browser:
    """The browser's side of native messaging: pipes into and out of a NativeHost thread."""

    def __init__(self, socket_path: str) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.host = NativeHost(socket_path, stdin_fd=self.in_r, stdout_fd=self.out_w, reconnect_max=0.5)
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.host.run()), daemon=True)
        self.thread.start()
        self.frames = Frames()
        self.configs: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        os.write(self.in_w, frame(message))

    def _pump(self) -> None:
        while select.select([self.out_r], [], [], 0)[0]:
            self.configs += [m for m in self.frames.feed(os.read(self.out_r, 65536)) if m.get("type") == "config"]

    def config(self) -> dict[str, Any] | None:
        self._pump()
        return self.configs[-1] if self.configs else None

    def wait_config(self, tabs: str, blocks: str = "off") -> None:
        wait_for(lambda: self.config() == {"type": "config", "tabs": tabs, "blocks": blocks})

    def close(self) -> int:
        os.close(self.in_w)  # the browser went away
        self.thread.join(10)
        assert not self.thread.is_alive()
        for fd in (self.in_r, self.out_r, self.out_w):
            os.close(fd)
        return self.result[0]


def browser_rows(tmp_path: Path) -> list[tuple[str, dict[str, object], int | None]]:
    return [row for row in stored(tmp_path) if row[0] != "session"]


def run(tmp_path: Path, sockdir: str, policy: Policy) -> tuple[Any, Browser]:
    service = start_service(tmp_path, sockdir, policy)
    return service, Browser(service.socket_path)


def test_domain_only_unless_full_urls(tmp_path: Path, sockdir: str) -> None:
    service, browser = run(tmp_path, sockdir, make_policy(collect={"browser": True}, web=BLOCK))
    try:
        browser.wait_config("domain", "domain")
        # Even an extension that ignored the config would not get the URL or title stored.
        browser.send({"type": "tab", "url": "https://Mail.Example.com/inbox/42", "title": "Inbox (3)"})
        browser.send({"type": "tab", "domain": "news.example.com"})
        browser.send({"type": "tab"})  # a chrome:// page in front: nothing
        browser.send({"type": "tab", "url": "chrome://settings/", "title": "Settings"})
        wait_for(lambda: len(browser_rows(tmp_path)) == 2)
    finally:
        assert browser.close() == 0
        stop_service(service)
    assert browser_rows(tmp_path) == [
        ("browser", {"domain": "mail.example.com"}, os.getuid()),
        ("browser", {"domain": "news.example.com"}, os.getuid()),
    ]


def test_full_urls_and_titles_when_the_policy_allows(tmp_path: Path, sockdir: str) -> None:
    policy = make_policy(collect={"browser": True}, web={"full_urls": True})
    service, browser = run(tmp_path, sockdir, policy)
    try:
        browser.wait_config("full")
        browser.send({"type": "tab", "url": "https://mail.example.com/inbox", "title": "Inbox " + "x" * 900})
        browser.send({"type": "tab"})
        wait_for(lambda: len(browser_rows(tmp_path)) == 1)
    finally:
        browser.close()
        stop_service(service)
    ((kind, attrs, _),) = browser_rows(tmp_path)
    assert kind == "browser"
    assert attrs["domain"] == "mail.example.com"
    assert attrs["url"] == "https://mail.example.com/inbox"
    assert str(attrs["title"]).startswith("Inbox x")
    assert len(str(attrs["title"])) == 512


def test_nothing_is_reported_when_browser_capture_is_off(tmp_path: Path, sockdir: str) -> None:
    service, browser = run(tmp_path, sockdir, make_policy(collect={"browser": False}))
    try:
        browser.wait_config("off")
        browser.send({"type": "tab", "url": "https://mail.example.com/", "title": "Inbox"})
        browser.send({"type": "blocked", "url": "https://facebook.com/"})
        time.sleep(0.5)
    finally:
        browser.close()
        stop_service(service)
    assert browser_rows(tmp_path) == []


def test_before_the_service_answers_the_extension_is_told_off(tmp_path: Path, sockdir: str) -> None:
    browser = Browser(os.path.join(sockdir, "session.sock"))  # no service yet
    try:
        browser.wait_config("off")
        service = start_service(tmp_path, sockdir, make_policy(collect={"browser": True}))
        try:
            browser.wait_config("domain")  # the host reconnects and passes the policy on
        finally:
            stop_service(service)
        browser.wait_config("off")  # the service went away: report nothing
    finally:
        browser.close()


def test_the_host_repeats_the_state_so_spans_stay_joined(tmp_path: Path, sockdir: str) -> None:
    service, browser = run(tmp_path, sockdir, make_policy(collect={"browser": True}, pulse_seconds=1))
    try:
        browser.wait_config("domain")
        browser.send({"type": "tab", "domain": "docs.example.com"})
        time.sleep(3.0)
        browser.send({"type": "tab"})
        wait_for(lambda: len(browser_rows(tmp_path)) == 1)
    finally:
        browser.close()
        stop_service(service)
    spool_rows = stored(tmp_path)
    assert [a for k, a, _ in spool_rows if k == "browser"] == [{"domain": "docs.example.com"}]
    from glasshouse_agent.spool import Spool

    spool = Spool(str(tmp_path / "spool.sqlite3"))
    ((start, end),) = spool._db.execute("SELECT start, \"end\" FROM spans WHERE kind = 'browser'").fetchall()
    spool.close()
    assert end - start >= 2.5  # one span over the heartbeats, not one per report


def test_a_refused_page_becomes_a_web_block_event(tmp_path: Path, sockdir: str) -> None:
    # Blocks are recorded while web filtering blocks something, even with browser capture off.
    service, browser = run(tmp_path, sockdir, make_policy(collect={"browser": False}, web=BLOCK))
    try:
        browser.wait_config("off", "domain")
        browser.send({"type": "blocked", "url": "https://www.facebook.com/some/profile"})
        wait_for(lambda: browser_rows(tmp_path))
    finally:
        browser.close()
        stop_service(service)
    ((kind, attrs, _),) = browser_rows(tmp_path)
    assert kind == "web_block"
    assert attrs == {"domain": "www.facebook.com", "user": pwd.getpwuid(os.getuid()).pw_name}


def test_the_service_strips_what_a_rogue_peer_sends(tmp_path: Path, sockdir: str) -> None:
    service = start_service(tmp_path, sockdir, make_policy(collect={"browser": True}))
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(service.socket_path)
        now = time.time()
        attrs: dict[str, str | int] = {"domain": "a.example", "url": "https://a.example/secret", "title": "T", "x": 1}
        sock.sendall(encode({"type": "sample", "sample": Sample("browser", now, attrs).to_json()}))
        sock.sendall(encode({"type": "sample", "sample": Sample("browser", now + 0.5, {}).to_json()}))
        # Blocks while nothing is blocked, and claims about the user, are ignored.
        sock.sendall(encode({"type": "web_block", "time": now, "domain": "a.example", "user": "alice"}))
        wait_for(lambda: browser_rows(tmp_path))
        sock.close()
    finally:
        stop_service(service)
    assert browser_rows(tmp_path) == [("browser", {"domain": "a.example"}, os.getuid())]


def test_the_policy_filter_keeps_only_what_browser_spans_may_carry() -> None:
    now = time.time()
    sample = Sample("browser", now, {"domain": "a.example", "url": "u" * 2000, "title": "t" * 900, "pid": 4})
    domain_only = make_policy(collect={"browser": True})
    assert domain_only.filter(sample) == Sample("browser", now, {"domain": "a.example"})
    full = make_policy(collect={"browser": True}, web={"full_urls": True})
    kept = full.filter(sample)
    assert kept is not None
    assert kept.attrs == {"domain": "a.example", "url": "u" * 1024, "title": "t" * 512}
    # A number where a string belongs would make the server refuse the whole batch: dropped.
    assert domain_only.filter(Sample("browser", now, {"domain": 5})) == Sample("browser", now, {})
    assert make_policy(collect={"browser": False}).filter(sample) is None


def test_oversized_messages_from_the_browser_end_the_host(sockdir: str) -> None:
    browser = Browser(os.path.join(sockdir, "session.sock"))
    os.write(browser.in_w, (10_000_000).to_bytes(4, "little"))
    browser.thread.join(10)
    assert browser.result == [1]
    browser.close()


# -- browser-install and the shipped files ----------------------------------------------------


def test_browser_install_writes_manifests_and_the_force_install_policy(tmp_path: Path) -> None:
    url = "https://glasshouse.example.com/static/extension/updates.xml"
    assert cli_main(["browser-install", "--root", str(tmp_path), "--update-url", url]) == 0
    for browser_dir in ("etc/chromium", "etc/opt/chrome"):
        manifest = json.loads((tmp_path / browser_dir / "native-messaging-hosts/com.glasshouse.agent.json").read_text())
        assert manifest == {
            "name": "com.glasshouse.agent",
            "description": manifest["description"],
            "path": "/usr/bin/glasshouse-agent-browser-host",
            "type": "stdio",
            "allowed_origins": [f"chrome-extension://{DEV_EXTENSION_ID}/"],
        }
        forcelist = json.loads((tmp_path / browser_dir / "policies/managed/glasshouse-extension.json").read_text())
        assert forcelist == {"ExtensionInstallForcelist": [f"{DEV_EXTENSION_ID};{url}"]}
    assert (tmp_path / "etc/firefox/policies").is_dir()  # for the service's hardened unit
    assert cli_main(["browser-install", "--root", str(tmp_path), "--remove"]) == 0
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == []


def test_browser_install_refuses_bad_input(tmp_path: Path) -> None:
    assert cli_main(["browser-install", "--root", str(tmp_path), "--extension-id", "not-an-id"]) == 1
    assert cli_main(["browser-install", "--root", str(tmp_path), "--host-path", "relative/host"]) == 1
    assert cli_main(["browser-install", "--root", str(tmp_path), "--update-url", "ftp://x"]) == 1


def test_the_extension_id_is_the_one_its_key_gives() -> None:
    manifest = json.loads((EXTENSION / "manifest.json").read_text())
    assert extension_id(base64.b64decode(manifest["key"])) == DEV_EXTENSION_ID


def test_packaged_files_match_what_browser_install_writes() -> None:
    shipped = json.loads((PACKAGING / "browser-native-host.json").read_text())
    assert shipped == host_manifest(DEFAULT_HOST_PATH, DEV_EXTENSION_ID)
    forcelist = json.loads((PACKAGING / "browser-extension-forcelist.json").read_text())
    assert forcelist["ExtensionInstallForcelist"][0].startswith(f"{DEV_EXTENSION_ID};https://")
    # The hardened unit lets the service write exactly the browser policy directories.
    unit = (PACKAGING / "glasshouse-agent.service").read_text()
    assert "ReadWritePaths=-/etc/chromium/policies -/etc/opt/chrome/policies -/etc/firefox/policies" in unit


def test_the_extension_is_manifest_v3_with_no_remote_code_and_no_page_access() -> None:
    manifest = json.loads((EXTENSION / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    assert manifest["background"] == {"service_worker": "background.js"}
    assert sorted(manifest["permissions"]) == ["nativeMessaging", "tabs", "webNavigation"]
    for key in ("content_scripts", "host_permissions", "optional_host_permissions", "web_accessible_resources"):
        assert key not in manifest
    assert sorted(p.name for p in EXTENSION.iterdir()) == ["README.md", "background.js", "manifest.json"]
    code = (EXTENSION / "background.js").read_text()
    for forbidden in (
        "eval(",
        "new Function",
        "importScripts",
        "fetch(",
        "XMLHttpRequest",
        "scripting.",
        "http://",
        "https://",
    ):
        assert forbidden not in code
    assert "connectNative(HOST)" in code
    assert 'const HOST = "com.glasshouse.agent";' in code
