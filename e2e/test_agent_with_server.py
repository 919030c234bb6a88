"""The real agent against the real server: `glasshouse-agent enroll`, `run` and `session`
(installed in agent/.venv) on an Xvfb desktop, talking HTTP to Glasshouse served by the test's
live server. Focus changes and retitles made with xdotool end up as stored spans with the
right class, title and pid; when IT switches titles off in the policy, no title is stored."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from django.utils import timezone

from conftest import Personas
from e2e.conftest import AGENT
from glasshouse.activity.models import IngestBatch, Span, SpanKind
from glasshouse.devices import actions as device_actions
from glasshouse.devices.models import Device
from glasshouse.devices.policy import default_policy

pytestmark = [pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[1]


def _desktop_module() -> ModuleType:
    # The agent's own desktop harness (stdlib + pytest), loaded by path: one harness for both.
    spec = importlib.util.spec_from_file_location("agent_desktop", ROOT / "agent" / "tests" / "desktop.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


desktop_harness = _desktop_module()


@pytest.fixture
def desktop(installed_agent: None) -> Iterator[object]:
    with desktop_harness.running_desktop() as desk:
        yield desk


class Agent:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sockdir = tempfile.mkdtemp(prefix="gh-e2e-", dir="/tmp")
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "GLASSHOUSE_AGENT_CONFIG": str(self.root / "config.json"),
            "GLASSHOUSE_AGENT_STATE_DIR": str(self.root / "state"),
            "GLASSHOUSE_AGENT_SOCKET": os.path.join(self.sockdir, "session.sock"),
            **extra,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AGENT), *args], env=self.env(), capture_output=True, text=True, timeout=60)

    def start(self, *args: str, **extra: str) -> None:
        log = open(self.root / f"{args[0]}.log", "wb")  # noqa: SIM115  (closed with the process)
        self.procs.append(subprocess.Popen([str(AGENT), *args], env=self.env(**extra), stdout=log, stderr=log))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.root.glob("*.log"))


def set_default_policy(personas: Personas, **changes: object) -> None:
    """Change the org default policy the way the policy page does: every field, through the action."""
    values = device_actions.policy_snapshot(default_policy())
    device_actions.do_update_policy(personas.it_admin, None, {**values, **changes})


def stored_windows(device: Device) -> list[Span]:
    return list(Span.objects.filter(device=device, kind=SpanKind.WINDOW).select_related("app", "title"))


def test_agent_spans_reach_the_server(personas: Personas, live_server: object, desktop: object, tmp_path: Path) -> None:
    employee = personas.person("employee")
    set_default_policy(personas, collect_titles=True, pulse_seconds=1, max_batch_seconds=1)
    token = device_actions.do_create_token(
        personas.it_admin,
        label="e2e laptop",
        expires_at=timezone.now() + dt.timedelta(hours=1),
        max_uses=1,
        person=employee,
    )
    agent = Agent(tmp_path)
    enrolled = agent.run("enroll", "--server", str(live_server), "--token", token.secret)
    assert enrolled.returncode == 0, enrolled.stderr
    device = Device.objects.get(token=token.token)
    assert device.person == employee

    xterm_a = desktop.xterm("GhMailer", "Inbox (3)")  # type: ignore[attr-defined]
    desktop.xterm("GhBuilder", "Build log")  # type: ignore[attr-defined]
    agent.start("run", "--policy-interval", "0.5", "--utmp", str(tmp_path / "utmp"))
    agent.start("session", DISPLAY=desktop.display)  # type: ignore[attr-defined]
    try:
        desktop.activate("GhMailer")  # type: ignore[attr-defined]
        time.sleep(2.5)
        desktop.activate("GhBuilder")  # type: ignore[attr-defined]
        time.sleep(1.5)
        desktop.retitle("GhBuilder", "Build log - failed")  # type: ignore[attr-defined]
        time.sleep(1.5)
        desktop.activate("GhMailer")  # type: ignore[attr-defined]

        def has_retitled_span() -> bool:
            return any(s.title and s.title.value == "Build log - failed" for s in stored_windows(device))

        desktop_harness.wait_for(has_retitled_span, timeout=30)
        spans = stored_windows(device)
        mailer = [s for s in spans if s.app and s.app.value == "GhMailer"]
        builder = [s for s in spans if s.app and s.app.value == "GhBuilder"]
        assert mailer[0].title is not None
        assert mailer[0].title.value == "Inbox (3)"
        assert mailer[0].pid == xterm_a.pid
        assert mailer[0].person_id == employee.pk
        assert (mailer[0].end - mailer[0].start).total_seconds() >= 1  # merged on the agent, not samples
        assert [s.title.value for s in builder if s.title] == ["Build log", "Build log - failed"]
        # Every batch carries the spool's identity, one for this agent's one spool.
        spool_ids = set(IngestBatch.objects.filter(device=device).values_list("spool_id", flat=True))
        assert len(spool_ids) == 1
        assert re.fullmatch(r"[0-9a-f]{32}", spool_ids.pop())

        # IT switches titles off: the agent picks up the new policy and stops sending titles.
        set_default_policy(personas, collect_titles=False)
        time.sleep(2)
        before = {s.pk for s in stored_windows(device)}
        desktop.activate("GhBuilder")  # type: ignore[attr-defined]
        time.sleep(1.5)
        desktop.activate("GhMailer")  # type: ignore[attr-defined]

        def new_spans() -> list[Span]:
            return [s for s in stored_windows(device) if s.pk not in before]

        desktop_harness.wait_for(lambda: any(s.app and s.app.value == "GhBuilder" for s in new_spans()), timeout=30)
        assert new_spans()
        assert all(s.title is None for s in new_spans())
    except AssertionError:
        print(agent.logs())
        raise
    finally:
        agent.stop()


@pytest.mark.usefixtures("installed_agent")
def test_revoked_device_is_refused(personas: Personas, live_server: object, tmp_path: Path) -> None:
    """The credential the real agent received works until IT revokes the device, then gets 401."""
    token = device_actions.do_create_token(
        personas.it_admin, label="to revoke", expires_at=timezone.now() + dt.timedelta(hours=1), max_uses=1
    )
    agent = Agent(tmp_path)
    assert agent.run("enroll", "--server", str(live_server), "--token", token.secret).returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    device = Device.objects.get(token=token.token)
    assert config["device_id"] == str(device.pk)

    def policy_status() -> int:
        request = urllib.request.Request(
            f"{live_server}/api/agent/v1/policy",
            headers={"Authorization": f"Device {config['device_id']}:{config['device_key']}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert policy_status() == 200
    device_actions.do_revoke_device(personas.it_admin, device)
    assert policy_status() == 401
