"""The command line as an administrator uses it: enroll, status, flush."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from glasshouse_agent.model import Span
from glasshouse_agent.spool import Spool
from tests.agentproc import AgentEnv
from tests.conftest import policy_doc
from tests.fakeserver import FakeServer


def test_enroll_stores_a_private_credential_and_refuses_to_overwrite(tmp_path: Path, server: FakeServer) -> None:
    agent = AgentEnv(tmp_path, str(tmp_path))
    server.add_token("tok", uses=2)
    out = agent.run("enroll", "--server", server.url, "--token", "tok", "--username", "alice")
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(os.stat(agent.config).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(agent.config.parent).st_mode) == 0o700
    text = agent.config.read_text()
    (device_id,) = server.state.devices
    assert device_id in text
    assert server.state.enrolments[0]["username"] == "alice"
    assert server.state.enrolments[0]["os"] == "linux"
    again = agent.run("enroll", "--server", server.url, "--token", "tok")
    assert again.returncode == 2
    assert "already enrolled" in again.stderr
    assert agent.config.read_text() == text


def test_enroll_with_a_bad_token_says_why(tmp_path: Path, server: FakeServer) -> None:
    agent = AgentEnv(tmp_path, str(tmp_path))
    out = agent.run("enroll", "--server", server.url, "--token", "nope")
    assert out.returncode == 1
    assert "403" in out.stderr
    assert "expired or used up" in out.stderr
    assert not agent.config.exists()


def test_status_before_enrolment_and_without_a_service(tmp_path: Path) -> None:
    agent = AgentEnv(tmp_path, str(tmp_path))
    out = agent.run("status")
    assert out.returncode == 1
    assert "enrolled:     no" in out.stdout
    assert "spool:        none yet" in out.stdout


def test_flush_uploads_the_spool_and_status_reports_it(tmp_path: Path, server: FakeServer) -> None:
    agent = AgentEnv(tmp_path, str(tmp_path))
    server.add_token("tok")
    server.set_policy(policy_doc(collect={"titles": False}))
    assert agent.run("enroll", "--server", server.url, "--token", "tok").returncode == 0
    spool = Spool(str(agent.state / "spool.sqlite3"))
    spool.add([Span("idle", 10.0 + i, 11.0 + i, {"state": "active"}) for i in range(1500)])
    spool.close()
    out = agent.run("flush")
    assert out.returncode == 0, out.stderr
    assert len(server.state.spans()) == 1500
    text = agent.run("status").stdout
    assert "last acknowledged batch 2" in text
    assert "0 queued" in text
    assert "collects window, idle, sessions" in text
    assert "the service is not running" in text
