"""The service and the session helper together over the real Unix socket: the kernel-reported
uid is recorded, the service enforces the policy again, policy changes reach the helper and
rebuild its collectors, and a helper that disappears has its spans closed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasshouse_agent.ipc import LineReader, encode
from glasshouse_agent.model import Kind, Sample
from glasshouse_agent.policy import Policy
from glasshouse_agent.service import Service
from glasshouse_agent.session import SessionHelper
from glasshouse_agent.spool import Spool
from glasshouse_agent.uplink import Uplink
from tests.conftest import make_policy, policy_doc
from tests.desktop import wait_for
from tests.fakeserver import FakeServer


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Under /tmp with 0755 so an unprivileged peer can reach the socket; short enough for
    # the 108-byte sun_path limit.
    path = tempfile.mkdtemp(prefix="gha-", dir="/tmp")
    os.chmod(path, 0o755)  # noqa: S103 - a socket directory for an unprivileged peer
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_service(tmp_path: Path, sockdir: str, policy: Policy | None, uplink: Uplink | None = None) -> Service:
    spool_path = str(tmp_path / "spool.sqlite3")
    if policy is not None:
        spool = Spool(spool_path)
        spool.set("policy", policy.dumps())
        spool.close()
    service = Service(
        spool_path=spool_path,
        socket_path=os.path.join(sockdir, "session.sock"),
        uplink=uplink,
        utmp_path=str(tmp_path / "no-utmp"),
        policy_interval=0.2,
        checkpoint_seconds=0.2,
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    assert service.ready.wait(10)
    service._thread = thread  # type: ignore[attr-defined]
    return service


def stop_service(service: Service) -> None:
    service.stop()
    service._thread.join(10)  # type: ignore[attr-defined]
    assert not service._thread.is_alive()  # type: ignore[attr-defined]


def stored(tmp_path: Path) -> list[tuple[str, dict[str, object], int | None]]:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    rows = spool._db.execute("SELECT kind, attrs, uid FROM spans ORDER BY id").fetchall()
    spool.close()
    return [(k, json.loads(a), u) for k, a, u in rows]


def open_spans(tmp_path: Path) -> int:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    try:
        return spool.stats().open_spans
    finally:
        spool.close()


class Client:
    """A hand-driven helper, to send exactly what a test wants."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(5)
        self.reader = LineReader()

    def policy(self) -> object:
        while True:
            for message in self.reader.feed(self.sock.recv(4096)):
                if message.get("type") == "policy":
                    return message["policy"]

    def send(self, sample: Sample) -> None:
        self.sock.sendall(encode({"type": "sample", "sample": sample.to_json()}))


def test_service_stores_spans_with_the_peer_uid_and_enforces_the_policy(tmp_path: Path, sockdir: str) -> None:
    import time

    service = start_service(tmp_path, sockdir, make_policy(collect={"titles": False}))
    try:
        client = Client(service.socket_path)
        assert client.policy()["collect"]["titles"] is False  # type: ignore[index]
        now = time.time()
        client.send(Sample("window", now, {"app": "xterm", "title": "leaked title", "pid": 1}))
        client.send(Sample("window", now + 1, {"app": "firefox", "pid": 2}))
        client.send(Sample("session", now, {"event": "login", "user": "mallory"}))  # not a helper's to say
        client.send(Sample("window", now - 7200, {"app": "from the past"}))
        client.sock.sendall(b'{"type": "sample", "sample": {"kind": "window", "time": "soon"}}\n')
        wait_for(lambda: any(kind != "session" for kind, _, _ in stored(tmp_path)))
        client.sock.close()
    finally:
        stop_service(service)
    rows = stored(tmp_path)
    assert [r for r in rows if r[0] != "session"] == [
        ("window", {"app": "xterm", "pid": 1}, os.getuid()),
        ("window", {"app": "firefox", "pid": 2}, os.getuid()),
    ]
    # The service's own start and stop; the login the helper claimed is not there.
    assert [(a, u) for k, a, u in rows if k == "session"] == [
        ({"event": "agent-start"}, None),
        ({"event": "agent-stop"}, None),
    ]


def test_the_uid_comes_from_the_kernel_not_the_peer(tmp_path: Path, sockdir: str) -> None:
    python = "/usr/bin/python3"
    if os.geteuid() != 0 or not os.path.exists(python):
        pytest.skip("needs root and /usr/bin/python3 to run a peer as another user")
    service = start_service(tmp_path, sockdir, make_policy())
    script = textwrap.dedent(
        """
        import json, socket, sys, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[1])
        s.recv(4096)
        sample = {"kind": "idle", "time": time.time(), "attrs": {"state": "active", "uid": 0}}
        s.sendall((json.dumps({"type": "sample", "sample": sample}) + "\\n").encode())
        time.sleep(0.5)
        """
    )
    try:
        subprocess.run([python, "-c", script, service.socket_path], user=65534, group=65534, check=True, timeout=20)
        wait_for(lambda: any(kind != "session" for kind, _, _ in stored(tmp_path)))
    finally:
        stop_service(service)
    ((kind, _attrs, uid),) = [r for r in stored(tmp_path) if r[0] != "session"]
    assert (kind, uid) == ("idle", 65534)


class FakeCollector:
    def __init__(self, kind: Kind, policy: Policy, log: list[tuple[Kind, bool]]) -> None:
        self.kind = kind
        self.titles = policy.titles
        log.append((kind, policy.titles))
        self.closed = False
        self._next = 0.0

    def fileno(self) -> int | None:
        return None

    def next_wakeup(self) -> float:
        return self._next

    def poll(self, now: float) -> list[Sample]:
        self._next = now + 0.1
        if self.kind == "window":
            attrs: dict[str, str | int] = {"app": "fake", "pid": 7}
            if self.titles:
                attrs["title"] = "T"
            return [Sample("window", now, attrs)]
        return [Sample("idle", now, {"state": "active"})]

    def close(self) -> None:
        self.closed = True


def test_policy_changes_reach_the_helper_and_rebuild_its_collectors(
    tmp_path: Path, sockdir: str, server: FakeServer
) -> None:
    device_id, key = server.add_device()
    server.set_policy(policy_doc(collect={"idle": False}, pulse_seconds=1))
    service = start_service(tmp_path, sockdir, None, Uplink(server.url, device_id, key, timeout=5))
    built: list[tuple[Kind, bool]] = []
    helper = SessionHelper(service.socket_path, lambda kind, policy: FakeCollector(kind, policy, built))
    thread = threading.Thread(target=helper.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: built == [("window", True)])
        server.set_policy(policy_doc(collect={"titles": False}, pulse_seconds=1))
        wait_for(lambda: ("window", False) in built and ("idle", False) in built)
        server.set_policy(policy_doc(collect={"window": False, "idle": False}, pulse_seconds=1))
        wait_for(lambda: not helper.collectors and len(built) == 3)
    finally:
        helper.stop()
        thread.join(10)
        stop_service(service)
    rows = stored(tmp_path)
    titled = [a for k, a, _ in rows if k == "window" and "title" in a]
    untitled = [a for k, a, _ in rows if k == "window" and "title" not in a]
    assert titled
    assert untitled
    assert all(k in ("window", "idle") or a.get("event") in ("agent-start", "agent-stop") for k, a, _ in rows)


def test_helper_reconnects_when_the_service_restarts(tmp_path: Path, sockdir: str) -> None:
    service = start_service(tmp_path, sockdir, make_policy(collect={"idle": False}))
    built: list[tuple[Kind, bool]] = []
    helper = SessionHelper(service.socket_path, lambda kind, policy: FakeCollector(kind, policy, built))
    helper.reconnect_max = 0.5
    thread = threading.Thread(target=helper.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(built) == 1)
        stop_service(service)
        wait_for(lambda: not helper.collectors)  # nothing runs without a service to obey
        service = start_service(tmp_path, sockdir, None)
        wait_for(lambda: len(built) == 2)
    finally:
        helper.stop()
        thread.join(10)
        stop_service(service)


@pytest.mark.x11
def test_the_helper_exits_when_its_display_goes_away(tmp_path: Path, sockdir: str) -> None:
    from tests.agentproc import AgentEnv
    from tests.desktop import X_TOOLS, _start_xvfb, require_tools

    require_tools(*X_TOOLS)
    xvfb, display = _start_xvfb()
    service = start_service(tmp_path, sockdir, make_policy(collect={"titles": False}))
    agent = AgentEnv(tmp_path, sockdir)
    helper = agent.start("session", DISPLAY=display)
    try:
        wait_for(lambda: open_spans(tmp_path) > 0 or helper.poll() is not None, timeout=20)
        assert helper.poll() is None, agent.log_text()
        xvfb.terminate()
        xvfb.wait(10)
        assert helper.wait(timeout=15) == 0, agent.log_text()
        assert "session ended" in agent.log_text()
    finally:
        if helper.poll() is None:
            helper.kill()
        if xvfb.poll() is None:
            xvfb.kill()
        stop_service(service)
