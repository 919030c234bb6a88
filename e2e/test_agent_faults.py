"""Faults, for real (issue 3): the installed agent (`agent/.venv/bin/glasshouse-agent run`) uploads
a known backlog to the real Glasshouse server (`manage.py runserver --noreload`, a separate OS
process with its own fresh SQLite database), and both are killed and restarted under it. Every
span must arrive exactly once.

The agent reaches the server through a small TCP relay in this test, on a port the test owns for
its whole life, so the server can come back on a new free port (never a fixed one) and the test
can see each exchange. The relay passes bytes on unchanged; all it adds is the power to withhold
one acknowledgement: the server has stored the batch and answered 200, the agent waits for that
answer, and the test kills a process right then. That is the moment at which a crash turns into
a resend, so it is hit on purpose rather than by luck.

The story (`test_kill_9_of_agent_and_server_mid_upload_delivers_every_span_exactly_once`):
  1. 6,000 spans, each identified by its start time (window spans also carry pid = their
     number), go into the agent's spool through the agent's own Spool API; the policy sends
     batches of 200.
  2. kill -9 of the agent twice while an ack is withheld (the batch is on the server and still
     in the spool), and once the instant an ack has been delivered; a restart after each.
  3. SIGTERM and restart of the agent mid-stream.
  4. kill -9 of the server while an ack is withheld; it stays down while the agent retries with
     backoff (`--backoff-base 0.1`); the agent is stopped too, the server comes back on another
     port, the agent starts again and drains its spool.
  5. The server's database holds each span exactly once and each (device, spool_id, seq) batch
     once, although the server answered more batch uploads than it stored.
The second test runs `glasshouse-agent status` (which opens the spool from another process)
while the service uploads, then kills the machine's agent: nothing acknowledged may come back. It
caught a real bug: every Spool() used to open and close the database file, which dropped the
service's own SQLite locks, so `status` closing its connection deleted the WAL under the service.

SQLite only: the server gets a SQLite file of its own. The exactly-once key is the same unique
constraint on PostgreSQL, where `glasshouse/ingest/tests` cover it in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import AGENT

ROOT = Path(__file__).resolve().parents[1]
AGENT_PYTHON = ROOT / "agent" / ".venv" / "bin" / "python"

BATCH_SPANS = 200
# Span n starts at base + 2n + 0.125, the last one an hour ago or earlier: in the past as the
# server requires, inside the spool's age cap. The fraction checks that times survive the trip.
SPAN_STEP = 2.0
SPAN_OFFSET = 0.125
MY_KINDS = ("window", "idle")  # the agent adds session events of its own (e.g. its start and stop)

# Run with the server's interpreter: migrate the fresh database, have batches go at 200 spans or
# after a second, and make a one-use enrolment token. Prints the token's secret.
SERVER_SETUP = """
import datetime as dt
import sys

import django

django.setup()
from django.core.management import call_command
from django.utils import timezone

call_command("migrate", verbosity=0, interactive=False)

from glasshouse.devices import actions
from glasshouse.devices.policy import default_policy

values = actions.policy_snapshot(default_policy())
values.update(collect_window=True, collect_idle=True, schedule_mode="always", max_batch_spans=int(sys.argv[1]))
values.update(max_batch_seconds=1)
actions.do_update_policy(None, None, values)
token = actions.do_create_token(None, label="faults", expires_at=timezone.now() + dt.timedelta(hours=1), max_uses=1)
print(token.secret)
"""

# Run with the agent's interpreter: put the spans in the spool through the agent's own API.
# Prints the spool's id.
SPOOL_PREFILL = """
import sys

from glasshouse_agent.model import Span
from glasshouse_agent.spool import Spool

path, count = sys.argv[1], int(sys.argv[3])
base, step, offset = float(sys.argv[2]), float(sys.argv[4]), float(sys.argv[5])
spans = []
for n in range(count):
    start = base + step * n + offset
    if n % 2:
        spans.append(Span("window", start, start + 1.5, {"app": "FaultApp", "exe": "/usr/bin/faultapp", "pid": n}))
    else:
        spans.append(Span("idle", start, start + 1.5, {"state": "active"}))
spool = Spool(path)
spool.add(spans)
print(spool.spool_id)
spool.close()
"""


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=20)) as conn:
        return conn.execute(sql, args).fetchall()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in a session of its own, and anything it started."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"== {path.name}\n" + "\n".join(text.splitlines()[-lines:])


def hang_up(sock: socket.socket) -> None:
    # shutdown() first: close() alone neither wakes a thread blocked in recv() on the socket nor
    # sends the FIN while that thread still holds it, and the agent would wait for its timeout.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class Relay:
    """127.0.0.1:port -> the server's current port, a thread pair per connection (urllib sends one
    request per connection). While the server is down a connection is accepted and closed at
    once, which the agent treats like a refused connection: retry with backoff."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.upstream: int | None = None
        self._lock = threading.Lock()
        self._withhold = False
        self.held = threading.Event()  # an ack is being withheld from the agent
        self._release = threading.Event()
        self.delivered = threading.Event()  # an ack was passed on to the agent in full
        self.delivered_count = 0
        self.batch_acks = 0  # batch uploads the server answered 200, delivered or withheld
        self.unreachable = 0  # connections the agent made while the server was down
        self.active = 0  # connections open now
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def withhold_next_ack(self) -> None:
        with self._lock:
            self.held.clear()
            self._release.clear()
            self._withhold = True

    def release(self) -> None:
        """Drop the withheld ack: its connection closes without an answer."""
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            hang_up(sock)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with self._lock:
            self.active += 1
        try:
            self._pipe(client)
        finally:
            with self._lock:
                self.active -= 1

    def _pipe(self, client: socket.socket) -> None:
        self._track(client)
        port = self.upstream
        try:
            if port is None:
                raise ConnectionRefusedError
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            with self._lock:
                self.unreachable += 1
            hang_up(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        request = bytearray()

        def forward_request() -> None:
            with suppress(OSError):
                while data := client.recv(65536):
                    if len(request) < 64:
                        request.extend(data[:64])
                    upstream.sendall(data)

        threading.Thread(target=forward_request, daemon=True).start()
        is_ack = False
        try:
            first = True
            while data := upstream.recv(65536):
                if first:
                    first = False
                    # The server answers only once the request is in, so its first bytes are here.
                    is_ack = request.startswith(b"POST /api/agent/v1/batches ") and bool(
                        re.match(rb"HTTP/1\.[01] 200 ", data)
                    )
                    if is_ack:
                        with self._lock:
                            self.batch_acks += 1
                            withhold, self._withhold = self._withhold, False
                        if withhold:
                            self.held.set()
                            self._release.wait(60)
                            return
                client.sendall(data)
            if is_ack:
                with self._lock:
                    self.delivered_count += 1
                self.delivered.set()
        except OSError:
            pass
        finally:
            hang_up(client)
            hang_up(upstream)


class Server:
    """`manage.py runserver --noreload` on a fresh free port at each start, on the test's SQLite file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "server.sqlite3"
        self.log = root / "server.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "glasshouse.config.settings.development",
            "GLASSHOUSE_VAR_DIR": str(root),
            "DATABASE_URL": f"sqlite:///{self.db}",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def setup(self) -> str:
        """Migrate the database, set the policy; returns a one-use enrolment token."""
        out = subprocess.run(
            [sys.executable, "-c", SERVER_SETUP, str(BATCH_SPANS)],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    def start(self) -> int:
        for _ in range(3):  # another program may take the free port before runserver binds it
            self.port = free_port()
            with open(self.log, "ab") as log:
                log.write(f"\n== runserver on port {self.port}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._answers(self.proc):
                return self.port
            kill_group(self.proc)
        raise AssertionError(f"the server did not start\n{log_tail(self.log)}")

    def _answers(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/agent/v1/policy", timeout=5)
            except urllib.error.HTTPError as exc:
                return exc.code == 401 and proc.poll() is None  # up, and refusing an unknown device
            except OSError:
                time.sleep(0.05)
                continue
            return False
        return False

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)


class Agent:
    """The installed agent, every path under the test's directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sockdir = tempfile.mkdtemp(prefix="gh-faults-", dir="/tmp")  # short: a Unix socket path
        self.spool = root / "state" / "spool.sqlite3"
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.env = {
            **os.environ,
            "GLASSHOUSE_AGENT_CONFIG": str(root / "config.json"),
            "GLASSHOUSE_AGENT_STATE_DIR": str(root / "state"),
            "GLASSHOUSE_AGENT_SOCKET": os.path.join(self.sockdir, "session.sock"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AGENT), *args], env=self.env, capture_output=True, text=True, timeout=60)

    def prefill(self, base: float, count: int) -> str:
        args = [str(self.spool), repr(base), str(count), repr(SPAN_STEP), repr(SPAN_OFFSET)]
        out = subprocess.run(
            [str(AGENT_PYTHON), "-c", SPOOL_PREFILL, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def start(self) -> None:
        assert not self.running()
        log = self.root / f"agent-run-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(AGENT), "run", "--backoff-base", "0.1", "--utmp", str(self.root / "utmp")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log_text()  # running, not dead of its own accord
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=40) == 0, self.log_text()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # The spool is read directly only while the agent is not running (see the second test).

    def oldest_unacked(self) -> int | None:
        assert not self.running()
        (seq,) = query(self.spool, "SELECT min(seq) FROM batches")[0]
        return None if seq is None else int(seq)

    def my_spans_left(self) -> int:
        assert not self.running()
        return int(query(self.spool, "SELECT count(*) FROM spans WHERE kind IN (?, ?)", *MY_KINDS)[0][0])

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def log_text(self) -> str:
        return "\n".join(log_tail(p) for p in self.logs)


@dataclass
class Rig:
    server: Server
    agent: Agent
    relay: Relay
    device: str = ""  # the device's id as the server's SQLite stores it (32 hex digits)
    spool_id: str = ""
    base: float = 0.0

    def begin(self, count: int) -> None:
        """Fresh server, enrolled agent, `count` spans in its spool, the agent running."""
        token = self.server.setup()
        self.relay.upstream = self.server.start()
        enrolled = self.agent.run("enroll", "--server", f"http://127.0.0.1:{self.relay.port}", "--token", token)
        assert enrolled.returncode == 0, enrolled.stderr
        config = json.loads((self.agent.root / "config.json").read_text())
        self.device = uuid.UUID(config["device_id"]).hex
        self.base = float(int(time.time()) - 3600 - int(SPAN_STEP * count))
        self.spool_id = self.agent.prefill(self.base, count)
        assert re.fullmatch(r"[0-9a-f]{32}", self.spool_id)
        self.agent.start()

    def stored_batches(self) -> int:
        sql = "SELECT count(*) FROM activity_ingestbatch WHERE device_id = ?"
        return int(query(self.server.db, sql, self.device)[0][0])

    def newest_stored_seq(self) -> int | None:
        sql = "SELECT max(seq) FROM activity_ingestbatch WHERE device_id = ?"
        (seq,) = query(self.server.db, sql, self.device)[0]
        return None if seq is None else int(seq)

    def my_spans_stored(self) -> int:
        """How many of the test's spans the server holds, counting a duplicate once."""
        sql = "SELECT count(DISTINCT start) FROM activity_span WHERE device_id = ? AND kind IN (1, 2)"  # window, idle
        return int(query(self.server.db, sql, self.device)[0][0])

    def logs(self) -> str:
        return f"{self.agent.log_text()}\n{log_tail(self.server.log, 60)}"


@pytest.fixture
def rig(installed_agent: None, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(Server(tmp_path), Agent(tmp_path / "agent"), Relay())
    try:
        yield rig
    finally:
        # Every child dies, pass or fail; the logs go to the output pytest shows on failure.
        rig.relay.close()
        rig.agent.stop()
        rig.server.stop()
        print(rig.logs())


def test_kill_9_of_agent_and_server_mid_upload_delivers_every_span_exactly_once(rig: Rig) -> None:
    spans = 6000
    server, agent, relay = rig.server, rig.agent, rig.relay
    rig.begin(spans)

    def crash_agent() -> None:
        agent.kill9()
        relay.release()
        # The dead agent's last exchanges are over, so whatever the relay sees next is the new one's.
        wait_for(lambda: relay.active == 0, 30, "the dead agent's connections closed")

    # 1. kill -9 while the server has stored a batch and the agent waits for its ack, twice. The
    #    batch is on the server and still in the spool: the restarted agent resends it first.
    held: list[int] = []
    for _ in range(2):
        relay.withhold_next_ack()
        wait_for(relay.held.is_set, 30, "a batch acknowledged by the server")
        crash_agent()
        stored = rig.newest_stored_seq()
        assert stored is not None
        assert agent.oldest_unacked() == stored  # stored on the server, unacknowledged in the spool
        held.append(stored)
        relay.delivered.clear()
        agent.start()
        wait_for(relay.delivered.is_set, 30, "the resent batch acknowledged")
    assert held[0] < held[1]  # two different batches

    # 2. kill -9 the instant an ack has reached the agent (it is recording it, or already on to
    #    the next batch).
    relay.delivered.clear()
    wait_for(relay.delivered.is_set, 30, "an ack delivered to the agent")
    crash_agent()
    relay.delivered.clear()
    agent.start()

    # 3. A clean restart mid-stream: SIGTERM, exit 0, start again.
    wait_for(relay.delivered.is_set, 30, "the restarted agent uploading")
    agent.terminate()
    agent.start()

    # 4. kill -9 of the server with an ack on its way; it stays down while the agent retries.
    relay.withhold_next_ack()
    wait_for(relay.held.is_set, 30, "a batch acknowledged by the server")
    server.kill9()
    relay.upstream = None
    relay.release()
    down_since = time.monotonic()
    wait_for(lambda: relay.unreachable >= 3, 30, "the agent retrying while the server is down")
    time.sleep(max(0.0, 2.0 - (time.monotonic() - down_since)))  # down a couple of seconds at least
    assert agent.running(), agent.log_text()
    agent.terminate()  # both are down now
    lost_ack = rig.newest_stored_seq()
    assert lost_ack is not None
    assert agent.oldest_unacked() == lost_ack  # its ack was lost with the server; nothing moved on
    assert 0 < agent.my_spans_left() < spans
    relay.upstream = server.start()  # back on another port, with what it had stored
    agent.start()
    wait_for(lambda: rig.my_spans_stored() >= spans, 60, "every span on the server")
    agent.terminate()  # finishes the upload in hand, records its ack, exits 0

    # The spool has let go of everything, and only after the server acknowledged it.
    assert agent.my_spans_left() == 0
    status = json.loads(agent.run("status", "--json", "--sample", "0").stdout)
    assert status["spool"]["in_flight"] == 0
    assert status["spool"]["pending_batches"] == 0
    assert status["spool"]["quarantined"] == 0
    assert query(agent.spool, "PRAGMA integrity_check") == [("ok",)]

    # Each batch once per (device, spool_id, seq), one spool, numbered without holes.
    db = server.db
    batches = query(
        db,
        "SELECT spool_id, seq, count(*), sum(span_count) FROM activity_ingestbatch WHERE device_id = ? "
        "GROUP BY spool_id, seq ORDER BY seq",
        rig.device,
    )
    assert [b for b in batches if b[2] != 1] == []
    assert {b[0] for b in batches} == {rig.spool_id}
    assert [b[1] for b in batches] == list(range(1, len(batches) + 1))
    all_spans = query(db, "SELECT kind, start, state, pid FROM activity_span WHERE device_id = ?", rig.device)
    assert sum(b[3] for b in batches) == len(all_spans)
    # The faults were real: the server answered more batch uploads than it stored batches.
    assert relay.batch_acks > len(batches)

    # Every span exactly once: ours by their start time (window spans by pid too); the agent's
    # own session events (its starts and stops) once each as well.
    assert [k for k, n in Counter((s[0], s[1], s[2]) for s in all_spans).items() if n != 1] == []
    numbers: Counter[int] = Counter()
    for kind, start, _, pid in all_spans:
        if kind not in (1, 2):
            continue
        at = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()
        n = round((at - rig.base - SPAN_OFFSET) / SPAN_STEP)
        assert abs(at - (rig.base + SPAN_STEP * n + SPAN_OFFSET)) < 1e-6, start
        assert (kind, pid) == ((1, n) if n % 2 else (2, None)), (kind, start, pid)
        numbers[n] += 1
    assert [n for n, count in numbers.items() if count != 1] == []
    assert sorted(numbers) == list(range(spans))


def test_status_while_the_service_runs_leaves_its_spool_intact(rig: Rig) -> None:
    """An administrator runs `glasshouse-agent status` while the service uploads; then the machine
    crashes. Batches the server acknowledged after that must be gone from the spool; at most the
    one whose ack was in flight at the crash may be resent."""
    spans = 2000
    agent, relay = rig.agent, rig.relay
    relay.withhold_next_ack()
    rig.begin(spans)
    wait_for(relay.held.is_set, 30, "a batch acknowledged by the server")
    # The service is up, with its main and sync threads' connections open and one upload waiting.
    status = agent.run("status", "--json", "--sample", "0")
    assert status.returncode == 0, status.stderr
    relay.release()  # the agent retries that batch and goes on with the rest
    wait_for(lambda: rig.my_spans_stored() >= spans, 30, "every span on the server")
    wait_for(lambda: relay.delivered_count >= rig.stored_batches(), 30, "every ack delivered")
    agent.kill9()
    assert agent.my_spans_left() <= BATCH_SPANS
