"""Device control end to end (issue 4): the checks a new user would make.

1. In the browser, an IT admin edits a team's USB policy (block mass storage, allow one stick by
   VID:PID and serial) and sees the new version; a malformed VID:PID is refused with the fields
   named and the version in force stays as it was; a web rule whose schedule ends before it
   starts, and one that contradicts a rule in force, are refused; a valid one is saved. An HR
   partner gets 403 on the same pages and cannot post to them either.
2. The real agent (`agent/.venv/bin/glasshouse-agent enroll` and `run`) against the real server
   (the test's live server) and a real USBGuard daemon (Debian's `usbguard-daemon` with its
   umockdev backend, in a temporary directory, started by the agent tests' own harness
   `agent/tests/usbmock.py`): the policy IT set is enforced by the daemon (the allow-listed
   stick is allowed, another stick of the same model is blocked), the `usb` events arrive in the
   server's database with those verdicts and show on the IT events page; `glasshouse-agent
   usb-request` lands in the IT inbox, IT approves it in the browser, and at the agent's next
   policy check the daemon allows the blocked stick and `temporary_start` reaches the server.

The `usbguard` command finds a daemon through USBGuard's machine-wide IPC name, so the agent's
`usbguard` calls reach the test daemon without any setting; `--sysfs-root` points the agent at
the umockdev testbed's sysfs (vendor names). The machine's /etc/usbguard, /sys and browser
policy directories are never touched: the daemon's config and rules, the agent's state, sockets
and managed browser policy root all live in temporary directories, and every process the test
starts is killed (by process group) in teardown.

Without usbguard/umockdev (or not as root) the agent test is skipped with the reason on a
developer's machine and fails under CI=true, like the agent's own USBGuard tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from conftest import Personas
from e2e.conftest import AGENT, SignIn
from glasshouse.activity.models import DeviceEvent, EventKind
from glasshouse.controls import actions as control_actions
from glasshouse.controls import validation as v
from glasshouse.controls.models import RequestStatus, UsbAccessRequest, UsbPolicy, UsbPolicyVersion, WebPolicy
from glasshouse.devices import actions as device_actions
from glasshouse.devices.models import Device
from glasshouse.devices.policy import default_policy

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]

# The personas' Sales team has no USB or web policy of its own: it follows the default.
STICK_VID, STICK_PID = "0781", "5567"
ALLOWED_SERIAL = "4C530001234"  # usbmock.STICK
OTHER_SERIAL = "4C530009999"  # usbmock.OTHER_STICK: the same model, not on the allow list
CLASSES = {"storage": "block", "mtp": "allow", "printer": "allow", "network": "allow", "hid": "allow", "other": "allow"}


def _load(name: str, path: Path) -> ModuleType:
    # The agent's own USBGuard harness (stdlib + pytest), loaded by path: one harness for both.
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


usbmock = _load("agent_usbmock", ROOT / "agent" / "tests" / "usbmock.py")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s")


# --- 1. the IT pages in the browser ----------------------------------------------------------


def current_usb(personas: Personas) -> tuple[int, list[tuple[str, str, str, str]]]:
    policy = UsbPolicy.objects.get(team=personas.sales_team)
    return policy.version, [(e.vid, e.pid, e.serial, e.label) for e in policy.entries.order_by("id")]


@pytest.mark.browser
def test_it_admin_edits_usb_and_web_policies_and_bad_input_changes_nothing(
    personas: Personas, sign_in: SignIn, live_server: object
) -> None:
    sales = personas.sales_team
    usb_url = f"{live_server}/controls/usb/{sales.pk}/"
    web_url = f"{live_server}/controls/web/{sales.pk}/"
    page = sign_in("it@example.test")

    # Block mass storage for Sales: the team gets a USB policy of its own, with a new version.
    page.goto(usb_url)
    expect(page.locator("main")).to_contain_text("Sales has no USB policy of its own")
    page.get_by_label("Mass storage (sticks, disks)").select_option("block")
    page.get_by_role("button", name="Save", exact=True).click()
    version, entries = current_usb(personas)
    assert UsbPolicy.objects.get(team=sales).storage == "block"
    expect(page.get_by_role("status")).to_contain_text(f"Saved. USB policy version {version} is in force")
    expect(page.locator("main")).to_contain_text(f"Version {version} is in force")
    expect(page.get_by_label("Mass storage (sticks, disks)")).to_have_value("block")

    # Allow one stick by VID:PID and serial, with a label.
    page.get_by_label("Vendor id (VID)").fill(STICK_VID)
    page.get_by_label("Product id (PID)").fill(STICK_PID)
    page.get_by_label("Serial:", exact=True).fill(ALLOWED_SERIAL)
    page.get_by_label("Label:", exact=True).fill("Finance stick")
    page.get_by_role("button", name="Add to the allow list").click()
    expect(page.get_by_role("status")).to_contain_text(f"Allowed {STICK_VID}:{STICK_PID}")
    new_version, entries = current_usb(personas)
    assert new_version > version
    assert entries == [(STICK_VID, STICK_PID, ALLOWED_SERIAL, "Finance stick")]
    expect(page.get_by_role("status")).to_contain_text(f"USB policy version {new_version}")
    expect(page.locator("main")).to_contain_text(f"Version {new_version} is in force")
    row = page.locator("tr", has_text=f"{STICK_VID}:{STICK_PID}")
    expect(row).to_contain_text(ALLOWED_SERIAL)
    expect(row).to_contain_text("Finance stick")
    versions_before = UsbPolicyVersion.objects.count()

    # A malformed VID:PID ("78:1") is refused with both fields named; nothing changes.
    page.get_by_label("Vendor id (VID)").fill("78")
    page.get_by_label("Product id (PID)").fill("1")
    page.get_by_label("Serial:", exact=True).fill("")
    page.get_by_label("Label:", exact=True).fill("Typo")
    page.get_by_role("button", name="Add to the allow list").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved; the policy in force is unchanged")
    expect(page.locator("#id_vid_error")).to_contain_text("VID must be 4 hex digits (0-9, a-f), e.g. 0781; got '78'")
    expect(page.locator("#id_pid_error")).to_contain_text("PID must be 4 hex digits (0-9, a-f), e.g. 0781; got '1'")
    expect(page.get_by_label("Vendor id (VID)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Product id (PID)")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("main")).to_contain_text(f"Version {new_version} is in force")
    assert current_usb(personas) == (new_version, entries)
    assert UsbPolicyVersion.objects.count() == versions_before

    # Web filtering: a schedule that ends before it starts is refused, with the field named.
    page.goto(web_url)
    expect(page.locator("main")).to_contain_text("Sales has no web rules of its own")

    def add_rule(action: str, value: str, days: list[str], start: str, end: str) -> None:
        page.get_by_label("Action:", exact=True).select_option(action)
        page.get_by_label("Kind:", exact=True).select_option("domain")
        page.get_by_label("Value:", exact=True).fill(value)
        for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
            page.get_by_label(day, exact=True).set_checked(day in days)
        page.get_by_label("Start:", exact=True).fill(start)
        page.get_by_label("End:", exact=True).fill(end)
        page.get_by_role("button", name="Add rule").click()

    weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    add_rule("block", "facebook.com", weekdays, "17:00", "09:00")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved; the rules in force are unchanged")
    expect(page.locator("#id_end_error")).to_contain_text("The schedule ends at 09:00, not after it starts at 17:00")
    assert not WebPolicy.objects.filter(team=sales).exists()

    # A valid rule is saved and listed.
    add_rule("block", "facebook.com", weekdays, "09:00", "17:00")
    expect(page.get_by_role("status")).to_contain_text("Added: block domain facebook.com.")
    rule_row = page.locator("tr", has_text="facebook.com")
    expect(rule_row).to_contain_text("mon, tue, wed, thu, fri 09:00\u201317:00")  # an en dash
    policy = WebPolicy.objects.get(team=sales)
    rules = [(r.action, r.value, r.days, f"{r.start:%H:%M}", f"{r.end:%H:%M}") for r in policy.rules.all()]
    assert rules == [("block", "facebook.com", "mon,tue,wed,thu,fri", "09:00", "17:00")]

    # Allowing the same site at overlapping times contradicts it: refused, the rules stay.
    add_rule("allow", "facebook.com", ["Wed"], "12:00", "13:00")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.locator("#id_value_error")).to_contain_text("would be both blocked and allowed at the same time")
    assert [(r.action, r.value) for r in WebPolicy.objects.get(team=sales).rules.all()] == [("block", "facebook.com")]

    # An HR partner is refused the same pages, and a form post with a valid CSRF token too.
    page.get_by_role("button", name="Log out").click()
    page = sign_in("hr@example.test")
    for url in (usb_url, web_url, f"{live_server}/controls/usb-requests/", f"{live_server}/controls/events/"):
        response = page.goto(url)
        assert response is not None
        assert response.status == 403, url
        expect(page.get_by_test_id("forbidden-reason")).to_contain_text("This page is for: ")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(
        f"{live_server}/controls/usb/{sales.pk}/allow/",
        form={"csrfmiddlewaretoken": token, "vid": "1234", "pid": "5678", "serial": "", "label": "HR stick"},
    )
    assert refused.status == 403
    assert "This page is for: IT admin" in refused.text()  # the role check, not a CSRF failure
    assert current_usb(personas) == (new_version, entries)


# --- 2. the real agent, the real server, a real USBGuard daemon -----------------------------


class AgentProcess:
    """The installed agent with everything it owns in temporary directories."""

    def __init__(self, root: Path, server: str, sysfs_root: str) -> None:
        self.root = root
        self.server = server
        self.sysfs_root = sysfs_root
        # Unix socket paths are short (108 bytes): not under pytest's long tmp_path.
        self.sockdir = tempfile.mkdtemp(prefix="gh-e2e-dc-", dir="/tmp")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "run.log"

    def env(self) -> dict[str, str]:
        env = {k: val for k, val in os.environ.items() if not k.startswith("GLASSHOUSE_AGENT_")}
        return {
            **env,
            "GLASSHOUSE_AGENT_CONFIG": str(self.root / "config.json"),
            "GLASSHOUSE_AGENT_STATE_DIR": str(self.root / "state"),
            "GLASSHOUSE_AGENT_SOCKET": os.path.join(self.sockdir, "session.sock"),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AGENT), *args], env=self.env(), capture_output=True, text=True, timeout=60, check=False
        )

    def start(self) -> None:
        (self.root / "web").mkdir()
        args = [
            "run",
            "--usb",
            "usbguard",
            "--sysfs-root",
            self.sysfs_root,  # the umockdev testbed: vendor names of the simulated devices
            "--web-root",
            str(self.root / "web"),  # managed browser policy goes here, never under /etc
            "--utmp",
            str(self.root / "utmp"),
            "--policy-interval",
            "0.5",
            "--backoff-base",
            "0.1",
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(AGENT), *args], env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL to the whole group (its `usbguard watch` too)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""


@pytest.fixture
def daemon(installed_agent: None) -> Iterator[Any]:
    """A real usbguard-daemon (umockdev backend) in a temporary directory; skipped (failed under
    CI=true) when usbguard/umockdev are missing, we are not root, or another daemon runs."""
    with usbmock.usbguard_daemon() as d:
        yield d


def usb_events(device: Device) -> list[dict[str, Any]]:
    rows = DeviceEvent.objects.filter(device=device, kind=EventKind.USB).order_by("time", "id")
    return [dict(e.data) for e in rows]


def find(events: list[dict[str, Any]], **match: object) -> list[dict[str, Any]]:
    return [e for e in events if all(e.get(k) == val for k, val in match.items())]


@pytest.mark.browser
def test_agent_enforces_it_policy_through_usbguard_and_temporary_access_is_approved_in_the_inbox(
    personas: Personas, live_server: object, sign_in: SignIn, daemon: Any, tmp_path: Path
) -> None:
    # IT's settings, made through the actions the pages use: uploads within a second, and for
    # Sales mass storage blocked except the finance stick (by serial).
    values = device_actions.policy_snapshot(default_policy())
    values.update(schedule_mode="always", pulse_seconds=1, max_batch_seconds=1)
    device_actions.do_update_policy(personas.it_admin, None, values)
    usb_policy = control_actions.do_save_usb_policy(
        personas.it_admin,
        personas.sales_team,
        v.UsbSettings(
            classes=dict(CLASSES),
            allow=(v.AllowEntry(STICK_VID, STICK_PID, ALLOWED_SERIAL, "Finance stick"),),
        ),
    )
    employee = personas.person("employee")  # in Sales
    token = device_actions.do_create_token(
        personas.it_admin,
        label="e2e device control",
        expires_at=timezone.now() + dt.timedelta(hours=1),
        max_uses=1,
        person=employee,
    )

    agent = AgentProcess(tmp_path, str(live_server), daemon.testbed_sysfs())
    try:
        enrolled = agent.cli("enroll", "--server", str(live_server), "--token", token.secret)
        assert enrolled.returncode == 0, enrolled.stderr
        device = Device.objects.get(token=token.token)
        assert device.person == employee
        agent.start()

        # The agent fetched the policy and gave the daemon its rules; it says so to the server.
        wait_for(lambda: any(ALLOWED_SERIAL in rule for rule in daemon.rules()), 30, "the agent's USBGuard rules")
        wait_for(
            lambda: find(usb_events(device), action="policy", version=usb_policy.version),
            20,
            f"the 'policy' event for USB policy version {usb_policy.version} on the server",
        )

        other = daemon.plug(usbmock.OTHER_STICK)
        finance = daemon.plug(usbmock.STICK)
        assert daemon.settled_target(other.port) == "block"
        assert daemon.settled_target(finance.port) == "allow"

        def inserts() -> dict[str, dict[str, Any]]:
            return {e["port"]: e for e in find(usb_events(device), action="insert")}

        wait_for(lambda: {other.port, finance.port} <= set(inserts()), 20, "both insert events on the server")
        blocked, allowed = inserts()[other.port], inserts()[finance.port]
        common = {"action": "insert", "vid": STICK_VID, "pid": STICK_PID, "vendor": "SanDisk", "class": "storage"}
        assert {k: blocked[k] for k in (*common, "product")} == {**common, "product": "Cruzer Blade"}
        assert (blocked["serial"], blocked["verdict"]) == (OTHER_SERIAL, "blocked")
        assert {k: allowed[k] for k in common} == common
        assert (allowed["serial"], allowed["verdict"]) == (ALLOWED_SERIAL, "allowed")
        stored = DeviceEvent.objects.filter(device=device, kind=EventKind.USB)
        assert {e.person_id for e in stored} == {employee.pk}

        # IT sees both on the device events page.
        page: Page = sign_in("it@example.test")
        page.goto(f"{live_server}/controls/events/?kind=usb")
        table = page.locator("main table")
        expect(table).to_contain_text(
            f"insert {STICK_VID}:{STICK_PID} serial {OTHER_SERIAL} SanDisk Cruzer Blade [storage] → blocked"
        )
        expect(table).to_contain_text(
            f"insert {STICK_VID}:{STICK_PID} serial {ALLOWED_SERIAL} SanDisk Cruzer Blade [storage] → allowed"
        )
        expect(table).to_contain_text(f"applied USB policy version {usb_policy.version}")
        expect(table).to_contain_text(device.hostname)

        # The user asks for the blocked stick from the agent's command line.
        reason = "Quarterly figures for the auditors"
        asked = agent.cli(
            "usb-request",
            "--vid",
            STICK_VID,
            "--pid",
            STICK_PID,
            "--serial",
            OTHER_SERIAL,
            "--reason",
            reason,
            "--minutes",
            "5",
        )
        assert asked.returncode == 0, asked.stderr
        access = UsbAccessRequest.objects.get(device=device)
        assert f"request {access.pk} sent to IT: pending" in asked.stdout
        assert (access.status, access.serial, access.minutes, access.person_id) == (
            RequestStatus.PENDING,
            OTHER_SERIAL,
            5,
            employee.pk,
        )
        assert (access.vendor, access.product) == ("SanDisk", "Cruzer Blade")
        assert daemon.target(other.port) == "block"

        # It is in IT's inbox; IT approves it there.
        page.goto(f"{live_server}/controls/usb-requests/")
        row = page.locator("tr", has_text=reason)
        expect(row).to_contain_text(f"{STICK_VID}:{STICK_PID}")
        expect(row).to_contain_text(OTHER_SERIAL)
        expect(row).to_contain_text(device.hostname)
        expect(row).to_contain_text(employee.full_name)
        row.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("status")).to_contain_text(f"Approved {STICK_VID}:{STICK_PID} on {device.hostname}")
        access.refresh_from_db()
        assert access.status == RequestStatus.APPROVED
        assert access.until is not None

        # At its next policy check the agent lets the daemon allow the blocked stick, and says so.
        wait_for(lambda: daemon.target(other.port) == "allow", 20, "the daemon to allow the approved stick")
        assert daemon.target(finance.port) == "allow"
        wait_for(
            lambda: find(usb_events(device), action="temporary_start", request=access.pk),
            20,
            "the temporary_start event on the server",
        )
        (start,) = find(usb_events(device), action="temporary_start")
        assert (start["vid"], start["pid"], start["serial"]) == (STICK_VID, STICK_PID, OTHER_SERIAL)
        assert start["until"] == int(access.until.timestamp())
        status = agent.cli("usb-request", "--status", str(access.pk))
        assert status.returncode == 0, status.stderr
        assert f"request {access.pk}: approved until {int(access.until.timestamp())}" in status.stdout
    except AssertionError:
        print(f"== agent log\n{agent.logs()}\n== daemon log\n{daemon.log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        agent.stop()
