"""USB device control against a real USBGuard daemon (Debian's usbguard-daemon with its
umockdev backend, in a temporary directory) and simulated devices: what the daemon decides is
what the tests read back with `usbguard list-devices`. The agent side runs for real too:
UsbControl's thread, the `usbguard` commands it issues, `usbguard watch`, the spool."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.policy import Policy
from glasshouse_agent.uplink import Uplink
from glasshouse_agent.usb import UsbControl, UsbOptions, decide, parse_usb
from glasshouse_agent.usb.device import parse_device_rule
from glasshouse_agent.usb.offline import make_code
from tests.conftest import make_policy
from tests.usbmock import (
    DUCKY,
    HUB,
    KEYBOARD,
    MOUSE,
    NIC,
    OTHER_STICK,
    PHONE,
    PRINTER,
    STICK,
    WEBCAM,
    UsbDev,
    UsbGuardDaemon,
    usbguard_daemon,
    wait_until,
)

KEY_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
KEY = __import__("base64").b32decode(KEY_B32)


def usb_section(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "classes": {
            "storage": "block",
            "mtp": "allow",
            "printer": "allow",
            "network": "allow",
            "hid": "allow",
            "other": "allow",
        },
        "block_unknown_keyboards": False,
        "allow": [],
        "temporary": [],
        "offline_key": KEY_B32,
    }
    classes = overrides.pop("classes", {})
    doc["classes"] = {**doc["classes"], **classes}
    doc.update(overrides)
    return doc


def policy_with(**overrides: Any) -> Policy:
    return make_policy(usb=usb_section(**overrides))


def usb_events(spool_path: Path) -> list[dict[str, Any]]:
    if not spool_path.exists():
        return []
    db = sqlite3.connect(spool_path)
    try:
        rows = db.execute("SELECT start, attrs FROM spans WHERE kind = 'usb' ORDER BY id").fetchall()
    finally:
        db.close()
    return [{"time": start, **json.loads(attrs)} for start, attrs in rows]


@pytest.fixture(scope="module")
def daemon() -> Iterator[UsbGuardDaemon]:
    with usbguard_daemon() as d:
        yield d


@pytest.fixture
def control(daemon: UsbGuardDaemon, tmp_path: Path) -> Iterator[UsbControl]:
    for plugged in list(daemon.plugged):
        if plugged.link.exists():
            daemon.unplug(plugged)
    daemon.plugged.clear()
    ctl = UsbControl(
        UsbOptions(socket_path=str(tmp_path / "usb.sock"), backend="usbguard", sysfs_root=daemon.testbed_sysfs()),
        spool_path=str(tmp_path / "spool.sqlite3"),
    )
    ctl.start()
    assert ctl.ready.wait(10)
    yield ctl
    ctl.stop()


def apply(ctl: UsbControl, policy: Policy, daemon: UsbGuardDaemon) -> None:
    expected = parse_usb(policy.usb)
    assert expected is not None
    ctl.set_policy(policy)
    wait_until(lambda: ctl.policy == expected and ctl.applied_rules is not None, 20, "the policy to be applied")
    wait_until(lambda: daemon.rules() == ctl.applied_rules, 20, "the daemon to hold the rules")


def test_blocked_storage_stays_blocked_and_the_allow_listed_serial_is_allowed(
    daemon: UsbGuardDaemon, control: UsbControl, tmp_path: Path
) -> None:
    policy = policy_with(allow=[{"vid": "0781", "pid": "5567", "serial": "4C530001234", "label": "Finance stick"}])
    apply(control, policy, daemon)
    finance = daemon.plug(STICK)
    other = daemon.plug(OTHER_STICK)  # the same model, another serial: not on the list
    assert daemon.settled_target(finance.port) == "allow"
    assert daemon.settled_target(other.port) == "block"
    # It stays blocked: nothing later lets it in.
    time.sleep(1.0)
    assert daemon.target(other.port) == "block"
    # The events reach the spool, with the daemon's verdict and what the device says it is.
    wait_until(
        lambda: len([e for e in usb_events(tmp_path / "spool.sqlite3") if e["action"] == "insert"]) == 2, 10, "events"
    )
    events = usb_events(tmp_path / "spool.sqlite3")
    assert {k: events[0][k] for k in ("action", "version")} == {"action": "policy", "version": 1}
    inserts = {e["port"]: e for e in events if e["action"] == "insert"}
    assert inserts[finance.port]["verdict"] == "allowed"
    assert inserts[other.port]["verdict"] == "blocked"
    assert inserts[other.port] | {"time": 0} == {
        "time": 0,
        "action": "insert",
        "verdict": "blocked",
        "vid": "0781",
        "pid": "5567",
        "serial": "4C530009999",
        "vendor": "SanDisk",
        "product": "Cruzer Blade",
        "class": "storage",
        "port": other.port,
    }
    daemon.unplug(other)
    wait_until(lambda: any(e["action"] == "remove" for e in usb_events(tmp_path / "spool.sqlite3")), 10, "remove")
    (removed,) = [e for e in usb_events(tmp_path / "spool.sqlite3") if e["action"] == "remove"]
    assert (removed["port"], removed["verdict"], removed["serial"]) == (other.port, "blocked", "4C530009999")


def test_unknown_keyboards_are_blocked_only_when_the_rule_is_on(daemon: UsbGuardDaemon, control: UsbControl) -> None:
    apply(control, policy_with(classes={"storage": "allow"}), daemon)
    keyboard = daemon.plug(KEYBOARD)
    mouse = daemon.plug(MOUSE)
    assert daemon.settled_target(keyboard.port) == "allow"
    apply(control, policy_with(version=2, classes={"storage": "allow"}, block_unknown_keyboards=True), daemon)
    # The present keyboard is blocked at once (USBGuard alone would only judge new devices).
    wait_until(lambda: daemon.target(keyboard.port) == "block", 10, "the keyboard to be blocked")
    assert daemon.target(mouse.port) == "allow"
    ducky = daemon.plug(DUCKY)  # a "storage" stick that is also a keyboard
    assert daemon.settled_target(ducky.port) == "block"
    # An allow-listed keyboard is fine.
    apply(
        control,
        policy_with(
            version=3,
            classes={"storage": "allow"},
            block_unknown_keyboards=True,
            allow=[{"vid": "046d", "pid": "c31c", "serial": "", "label": "IT keyboard"}],
        ),
        daemon,
    )
    wait_until(lambda: daemon.target(keyboard.port) == "allow", 10, "the allow-listed keyboard")
    assert daemon.target(ducky.port) == "block"


@pytest.mark.parametrize(
    "classes",
    [
        {
            "storage": "read_only",
            "mtp": "block",
            "printer": "allow",
            "network": "block",
            "hid": "allow",
            "other": "allow",
        },
        {"storage": "allow", "mtp": "allow", "printer": "block", "network": "allow", "hid": "allow", "other": "block"},
    ],
)
def test_the_daemon_reaches_the_same_verdict_as_decide(
    daemon: UsbGuardDaemon, control: UsbControl, classes: dict[str, str]
) -> None:
    policy = policy_with(classes=classes, block_unknown_keyboards=True)
    apply(control, policy, daemon)
    usb = parse_usb(policy.usb)
    assert usb is not None
    devices: list[UsbDev] = [STICK, KEYBOARD, MOUSE, DUCKY, PHONE, PRINTER, NIC, WEBCAM, HUB]
    plugged = [daemon.plug(dev) for dev in devices]
    for p in plugged:
        vid, pid = p.dev.ids
        verdict, _ = decide(usb, vid, pid, p.dev.serial, p.dev.interfaces, now=time.time())
        expected = "block" if verdict == "blocked" else "allow"
        assert daemon.settled_target(p.port) == expected, (p.dev.product, verdict, daemon.rules())


def test_temporary_access_opens_and_closes_on_time(daemon: UsbGuardDaemon, control: UsbControl, tmp_path: Path) -> None:
    apply(control, policy_with(), daemon)
    stick = daemon.plug(STICK)
    assert daemon.settled_target(stick.port) == "block"
    until = time.time() + 5
    temporary = [{"request": 12, "vid": "0781", "pid": "5567", "serial": "4C530001234", "until": until}]
    apply(control, policy_with(version=2, temporary=temporary), daemon)
    wait_until(lambda: daemon.target(stick.port) == "allow", 10, "temporary access to open")
    assert time.time() < until
    # A re-plug during the window is allowed by the rule, not just the one-off decision.
    daemon.unplug(stick)
    again = daemon.plug(STICK)
    assert daemon.settled_target(again.port) == "allow"
    wait_until(lambda: daemon.target(again.port) == "block", 15, "temporary access to close")
    assert time.time() >= until
    assert daemon.rules() == control.applied_rules
    assert not any("4C530001234" in rule for rule in daemon.rules())
    events = usb_events(tmp_path / "spool.sqlite3")
    start = [e for e in events if e["action"] == "temporary_start"]
    end = [e for e in events if e["action"] == "temporary_end"]
    assert len(start) == 1
    assert len(end) == 1
    assert (start[0]["request"], start[0]["vid"], start[0]["serial"]) == (12, "0781", "4C530001234")
    assert end[0]["time"] == pytest.approx(until)


def test_offline_codes(daemon: UsbGuardDaemon, control: UsbControl, tmp_path: Path) -> None:
    apply(control, policy_with(), daemon)
    stick = daemon.plug(STICK)
    assert daemon.settled_target(stick.port) == "block"
    sock = str(tmp_path / "usb.sock")
    minute = int(time.time() // 60) + 2

    def unlock(code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "glasshouse_agent", "usb-unlock", code, "--usb-socket", sock],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    # A code for a device that is not plugged in.
    out = unlock(make_code(KEY, minute, "18d1", "4ee1", "PHONE1"))
    assert out.returncode == 1
    assert "not plugged in" in out.stderr
    # Expired.
    out = unlock(make_code(KEY, int(time.time() // 60) - 1, "0781", "5567", "4C530001234"))
    assert out.returncode == 1
    assert "expired" in out.stderr
    # Tampered: a later end with the old mac; a wrong key.
    good = make_code(KEY, minute, "0781", "5567", "4C530001234")
    _until_text, ids, tag = good.split("-")
    from glasshouse_agent.usb.offline import base36

    assert unlock(f"{base36(minute + 600)}-{ids}-{tag}").returncode == 1
    assert unlock(make_code(b"another device's key", minute, "0781", "5567", "4C530001234")).returncode == 1
    # For another serial of the same model.
    assert unlock(make_code(KEY, minute, "0781", "5567", "SOMEONE-ELSE")).returncode == 1
    assert daemon.target(stick.port) == "block"
    # The right one (typed in lower case), for this serial.
    out = unlock(good.lower())
    assert out.returncode == 0, out.stderr
    assert "0781:5567 serial 4C530001234 allowed until" in out.stdout
    wait_until(lambda: daemon.target(stick.port) == "allow", 10, "offline access")
    events = usb_events(tmp_path / "spool.sqlite3")
    (start,) = [e for e in events if e["action"] == "temporary_start"]
    assert start["offline"] is True
    assert start["until"] == minute * 60
    # A code for any serial of the model (serial "") also works for this plugged device.
    assert unlock(make_code(KEY, minute, "0781", "5567", "")).returncode == 0


def test_offline_codes_are_rate_limited(daemon: UsbGuardDaemon, control: UsbControl, tmp_path: Path) -> None:
    from glasshouse_agent.usb.client import ask

    apply(control, policy_with(), daemon)
    daemon.plug(STICK)
    sock = str(tmp_path / "usb.sock")
    for _ in range(5):
        assert not ask(sock, {"type": "usb-unlock", "code": "zzzz-07815567-AAAAAAAAAA"})["ok"]
    good = make_code(KEY, int(time.time() // 60) + 2, "0781", "5567", "4C530001234")
    answer = ask(sock, {"type": "usb-unlock", "code": good})
    assert answer == {"ok": False, "error": "too many wrong codes; wait a minute"}


def test_bad_policy_is_refused_and_the_old_rules_stay(daemon: UsbGuardDaemon, control: UsbControl) -> None:
    apply(control, policy_with(block_unknown_keyboards=True), daemon)
    before = daemon.rules()
    control.set_policy(policy_with(version=2, allow=[{"vid": "781", "pid": "5567"}]))
    wait_until(lambda: control.last_error is not None, 10, "the refusal")
    assert "usb.allow[0].vid" in str(control.last_error)
    assert daemon.rules() == before
    stick = daemon.plug(STICK)
    assert daemon.settled_target(stick.port) == "block"


def test_enforcement_stays_when_the_agent_stops(daemon: UsbGuardDaemon, tmp_path: Path) -> None:
    ctl = UsbControl(
        UsbOptions(socket_path=str(tmp_path / "usb.sock"), backend="usbguard"),
        spool_path=str(tmp_path / "spool.sqlite3"),
    )
    ctl.start()
    apply(ctl, policy_with(classes={"storage": "block"}), daemon)
    rules = ctl.applied_rules
    ctl.stop()
    stick = daemon.plug(STICK)
    assert daemon.settled_target(stick.port) == "block"
    # The rules are in the daemon's RuleFile, so a daemon restart keeps them too.
    assert daemon.rule_file.read_text().split("\n")[: len(rules or [])] == rules
    daemon.unplug(stick)


def test_the_rules_survive_a_daemon_restart(daemon: UsbGuardDaemon, control: UsbControl) -> None:
    apply(control, policy_with(classes={"storage": "block"}), daemon)
    rules = daemon.rules()
    daemon.stop()
    daemon.start()
    assert daemon.rules() == rules
    stick = daemon.plug(STICK)
    assert daemon.settled_target(stick.port) == "block"


class _RequestServer:
    """The two usb-requests endpoints of docs/agent-protocol.md, nothing else."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                assert self.headers["Authorization"] == "Device dev:key"
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                self._send(201, {"request": 12, "status": "pending"})

            def do_GET(self) -> None:
                if self.path.endswith("/usb-requests/12"):
                    self._send(200, {"status": "approved", "until": 1764165600, "note": "ok for today"})
                else:
                    self._send(404, {"detail": "no such request"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def test_usb_request_goes_to_the_server(daemon: UsbGuardDaemon, tmp_path: Path) -> None:
    server = _RequestServer()
    ctl = UsbControl(
        UsbOptions(socket_path=str(tmp_path / "usb.sock"), backend="usbguard", sysfs_root=daemon.testbed_sysfs()),
        spool_path=str(tmp_path / "spool.sqlite3"),
        uplink=Uplink(server.url, "dev", "key"),
    )
    ctl.start()
    try:
        apply(ctl, policy_with(), daemon)
        daemon.plug(STICK)
        wait_until(lambda: any(d.vid == "0781" for d in ctl._known.values()), 10, "the stick to be known")
        cmd = [sys.executable, "-m", "glasshouse_agent", "usb-request", "--usb-socket", str(tmp_path / "usb.sock")]
        out = subprocess.run(
            [*cmd, "--vid", "0781", "--pid", "5567", "--reason", "quarterly report", "--minutes", "30"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "request 12 sent to IT: pending" in out.stdout
        assert "glasshouse-agent usb-request --status 12" in out.stdout
        assert server.bodies == [
            {
                "vid": "0781",
                "pid": "5567",
                "serial": "",
                "vendor": "SanDisk",
                "product": "Cruzer Blade",
                "reason": "quarterly report",
                "minutes": 30,
            }
        ]
        out = subprocess.run([*cmd, "--status", "12"], capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        assert "request 12: approved until 1764165600" in out.stdout
        assert "ok for today" in out.stdout
        short = subprocess.run(
            [*cmd, "--vid", "0781", "--pid", "5567", "--reason", "short", "--minutes", "30"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert short.returncode == 1
        assert "10 to 500" in short.stderr
        assert len(server.bodies) == 1
    finally:
        ctl.stop()
        server.httpd.shutdown()


def test_device_rules_from_the_daemon_parse(daemon: UsbGuardDaemon) -> None:
    lines = daemon.list_devices()
    assert lines
    for line in lines:
        number, rule = line.split(": ", 1)
        device = parse_device_rule(rule, int(number))
        assert device.vid
        assert device.pid
        assert device.interfaces
    assert os.path.exists(daemon.rule_file)
