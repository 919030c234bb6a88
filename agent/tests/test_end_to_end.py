"""The whole agent as installed: `glasshouse-agent run` and `glasshouse-agent session` as real
processes, a real X desktop, and the in-test server. Focus and titles changed with xdotool end
up as spans on the server; a policy change switches titles off on the fly; kill -9 of the
service mid-upload plus a server outage lose and duplicate nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasshouse_agent.model import Span
from glasshouse_agent.spool import Spool
from tests.agentproc import AgentEnv
from tests.conftest import policy_doc
from tests.desktop import Desktop, wait_for
from tests.fakeserver import FakeServer


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentEnv]:
    sockdir = tempfile.mkdtemp(prefix="gha-", dir="/tmp")
    yield AgentEnv(tmp_path, sockdir)
    shutil.rmtree(sockdir, ignore_errors=True)


def enroll(agent: AgentEnv, server: FakeServer) -> None:
    server.add_token("tok")
    out = agent.run("enroll", "--server", server.url, "--token", "tok")
    assert out.returncode == 0, out.stderr


def stop(proc: subprocess.Popen[bytes], agent: AgentEnv) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"did not stop on SIGTERM\n{agent.log_text()}") from None
    assert code == 0, agent.log_text()


def window_spans(server: FakeServer) -> list[dict[str, object]]:
    return [s for s in server.state.spans() if s["kind"] == "window"]


@pytest.mark.x11
def test_focus_and_titles_reach_the_server_as_spans(desktop: Desktop, server: FakeServer, agent: AgentEnv) -> None:
    xterm_a = desktop.xterm("GhEndA", "Inbox")
    xterm_b = desktop.xterm("GhEndB", "Build log")
    quick = {"pulse_seconds": 1, "upload": {"max_batch_spans": 1000, "max_batch_seconds": 1}}
    server.set_policy(policy_doc(**quick))
    enroll(agent, server)
    service = agent.start("run", "--policy-interval", "0.5", "--utmp", str(agent.root / "utmp"))
    session = agent.start("session", DISPLAY=desktop.display)
    try:
        desktop.activate("GhEndA")
        time.sleep(2.5)
        desktop.activate("GhEndB")
        time.sleep(1.5)
        desktop.retitle("GhEndB", "Build log \u2013 failed")
        time.sleep(1.5)
        desktop.activate("GhEndA")  # closes the last B span
        wait_for(lambda: any(s.get("title") == "Build log \u2013 failed" for s in window_spans(server)), timeout=20)

        spans = window_spans(server)
        a = [s for s in spans if s["app"] == "GhEndA"]
        b = [s for s in spans if s["app"] == "GhEndB"]
        assert a[0]["title"] == "Inbox"
        assert a[0]["pid"] == xterm_a.pid
        # One merged span (the helper may start a moment after the focus change), not samples.
        assert a[0]["end"] - a[0]["start"] >= 1  # type: ignore[operator]
        assert [s["title"] for s in b] == ["Build log", "Build log \u2013 failed"]
        assert b[0]["end"] == b[1]["start"]  # the retitle split the span exactly there
        assert all(s["pid"] == xterm_b.pid for s in b)

        # While both run, status shows the agent's own footprint.
        status = agent.status()
        roles = {p["role"].split(" ")[0]: p for p in status["processes"]}
        assert roles["service"]["running"]
        assert roles["session"]["running"]
        assert 0 < roles["session"]["rss_bytes"] < 200e6

        # The server switches titles off: new spans carry none, and the helper stops reading.
        asked = len(server.state.policy_requests)
        server.set_policy(policy_doc(collect={"titles": False}, **quick))
        wait_for(lambda: any(s[1] == 200 for s in server.state.policy_requests[asked:]), timeout=10)
        time.sleep(1.5)  # the service pushes it to the helper, which rebuilds its collectors
        changed = time.time()
        desktop.retitle("GhEndA", "Confidential merger")
        desktop.activate("GhEndB")
        time.sleep(1.5)
        desktop.activate("GhEndA")
        time.sleep(1.5)
        desktop.activate("GhEndB")  # closes the A span that began after the change

        def later() -> list[dict[str, object]]:
            return [s for s in window_spans(server) if s["start"] >= changed]  # type: ignore[operator]

        wait_for(lambda: len(later()) >= 2, timeout=20)
        assert all("title" not in s for s in later())
        assert all("Confidential" not in str(s) for s in server.state.spans())
    finally:
        stop(session, agent)
        stop(service, agent)


@pytest.mark.parametrize("restart_server", [True])
def test_kill_9_mid_upload_and_a_server_outage_deliver_every_span_exactly_once(
    server: FakeServer, agent: AgentEnv, restart_server: bool
) -> None:
    server.set_policy(policy_doc(upload={"max_batch_spans": 100, "max_batch_seconds": 0.5}))
    enroll(agent, server)
    spool = Spool(str(agent.state / "spool.sqlite3"))
    base = time.time() - 3600  # recent: the age cap must not drop them
    spool.add([Span("idle", base + n, base + n + 1, {"state": "active", "n": n}) for n in range(1000)])
    spool.close()
    server.state.delay = 0.5  # every batch is in flight for half a second
    service = agent.start("run", "--policy-interval", "0.5", "--backoff-base", "0.2", "--utmp", "/nonexistent")
    assert server.batch_received.wait(20), agent.log_text()
    os.kill(service.pid, signal.SIGKILL)  # mid-upload: the server has the body, the agent no answer
    service.wait()

    # The server goes away too, and comes back on the same port with what it had stored.
    port, state = server.port, server.state
    server.stop()
    service = agent.start("run", "--policy-interval", "0.5", "--backoff-base", "0.2", "--utmp", "/nonexistent")
    time.sleep(1.5)  # the agent meets a refused connection and backs off
    assert service.poll() is None, agent.log_text()
    state.delay = 0.0
    revived = FakeServer(port=port, state=state).start()
    try:
        try:
            wait_for(lambda: len({s["n"] for s in revived.state.spans() if "n" in s}) == 1000, timeout=60)
            wait_for(lambda: agent.status()["spool"]["in_flight"] == 0, timeout=20)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; posts {revived.state.posts}\n{agent.log_text()}") from None
    finally:
        stop(service, agent)
        revived.stop()
    ns = [s["n"] for s in revived.state.spans() if s["kind"] == "idle"]
    assert sorted(ns) == list(range(1000))  # every span, exactly once
    # ...besides the agent's own start/stop events.
    assert {s.get("event") for s in revived.state.spans() if s["kind"] == "session"} <= {"agent-start", "agent-stop"}
    posts = [seq for _, seq, _ in revived.state.posts]
    assert len(posts) > len(set(posts))  # at least one batch really was sent twice
