"""Logins, logouts and screen locks from logind, for real over D-Bus: a private dbus-daemon (never
this machine's system bus) and a fake `org.freedesktop.login1` on it, written with the same
library as the collector (jeepney), that answers ListSessions and Properties.GetAll and emits
SessionNew, SessionRemoved, Lock, Unlock and LockedHint changes. Also the service: its own
agent-start/agent-stop events, logind taking precedence over utmp, and the policy switch."""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jeepney import (
    DBusAddress,
    DBusNameFlags,
    HeaderFields,
    MessageType,
    message_bus,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

from glasshouse_agent.collectors.logind import (
    LOGIN1,
    MANAGER_IFACE,
    MANAGER_PATH,
    PROPERTIES_IFACE,
    SESSION_IFACE,
    SESSION_PATHS,
    LogindCollector,
)
from glasshouse_agent.collectors.utmp import USER_PROCESS, UtmpRecord, pack_utmp
from glasshouse_agent.model import Sample
from glasshouse_agent.policy import Policy
from glasshouse_agent.service import Service
from glasshouse_agent.spool import Spool
from glasshouse_agent.uplink import Uplink
from tests.conftest import make_policy, policy_doc
from tests.desktop import require_tools, wait_for
from tests.fakeserver import FakeServer

# -- a private bus and a fake logind ---------------------------------------------------------


@dataclass
class PrivateBus:
    address: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    require_tools("dbus-daemon")
    # A short directory: a Unix socket path must fit in 108 bytes.
    tmp = tempfile.mkdtemp(prefix="ghbus-", dir="/tmp")
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address", f"--address=unix:path={tmp}/bus"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "dbus-daemon did not print its address"
        address = proc.stdout.readline().decode().strip()
        assert address.startswith("unix:"), address
        yield PrivateBus(address, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def session_path(session_id: str) -> str:
    """logind's object path for a session id (sd_bus_path_encode: a leading digit and anything
    not alphanumeric become _XX)."""
    out = []
    for i, ch in enumerate(session_id):
        ok = ch.isascii() and (ch.isalpha() or (ch.isdigit() and i > 0))
        out.append(ch if ok else f"_{ord(ch):02x}")
    return f"{SESSION_PATHS}/{''.join(out)}"


class FakeLogind:
    """Enough of org.freedesktop.login1 for the collector, served from a thread. Every change
    runs on that thread (the connection is not thread-safe) and returns once it was sent."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sessions: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self._todo: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def add(
        self, session_id: str, user: str, *, cls: str = "user", stamp: float | None = None, locked: bool = False
    ) -> None:
        """A session that exists before anyone listens (no signal)."""
        self.sessions[session_id] = {
            "Id": ("s", session_id),
            "Name": ("s", user),
            "User": ("(uo)", (1000, "/org/freedesktop/login1/user/_1000")),
            "Class": ("s", cls),
            "Type": ("s", "x11"),
            "Remote": ("b", False),
            "Timestamp": ("t", int((time.time() if stamp is None else stamp) * 1e6)),
            "LockedHint": ("b", locked),
        }

    def start(self) -> FakeLogind:
        self._conn = open_dbus_connection(self.address)
        reply = self._conn.send_and_get_reply(message_bus.RequestName(LOGIN1, DBusNameFlags.do_not_queue), timeout=5)
        assert unwrap_msg(reply) == (1,)  # the primary owner
        self._thread = threading.Thread(target=self._serve, name="fake-logind", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """logind leaves the bus (its connection closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # What logind does, as seen on the bus.

    def new_session(self, session_id: str, user: str, **kw: Any) -> None:
        def run() -> None:
            self.add(session_id, user, **kw)
            self._signal(MANAGER_PATH, MANAGER_IFACE, "SessionNew", "so", (session_id, session_path(session_id)))

        self._do(run)

    def remove_session(self, session_id: str) -> None:
        def run() -> None:
            del self.sessions[session_id]
            self._signal(MANAGER_PATH, MANAGER_IFACE, "SessionRemoved", "so", (session_id, session_path(session_id)))

        self._do(run)

    def lock(self, session_id: str) -> None:
        self._do(lambda: self._signal(session_path(session_id), SESSION_IFACE, "Lock"))

    def unlock(self, session_id: str) -> None:
        self._do(lambda: self._signal(session_path(session_id), SESSION_IFACE, "Unlock"))

    def set_locked_hint(self, session_id: str, locked: bool) -> None:
        def run() -> None:
            self.sessions[session_id]["LockedHint"] = ("b", locked)
            body: tuple[Any, ...] = (SESSION_IFACE, {"LockedHint": ("b", locked)}, [])
            self._signal(session_path(session_id), PROPERTIES_IFACE, "PropertiesChanged", "sa{sv}as", body)

        self._do(run)

    # The service side.

    def _do(self, fn: Callable[[], None]) -> None:
        done = threading.Event()
        self._todo.put((fn, done))
        assert done.wait(10), "the fake logind did not run the change"

    def _signal(
        self, path: str, interface: str, member: str, signature: str | None = None, body: tuple[Any, ...] = ()
    ) -> None:
        self._conn.send(new_signal(DBusAddress(path, interface=interface), member, signature, body))

    def _serve(self) -> None:
        while not self._stop.is_set():
            while True:
                try:
                    fn, done = self._todo.get_nowait()
                except queue.Empty:
                    break
                fn()
                done.set()
            try:
                message = self._conn.receive(timeout=0.02)
            except TimeoutError:
                continue
            except OSError:
                return  # the bus went away
            if message.header.message_type == MessageType.method_call:
                self._conn.send(self._answer(message))

    def _answer(self, message: Any) -> Any:
        fields = message.header.fields
        path, interface, member = (
            fields.get(HeaderFields.path),
            fields.get(HeaderFields.interface),
            fields.get(HeaderFields.member),
        )
        self.calls.append(f"{interface}.{member} {path}")
        if path == MANAGER_PATH and interface == MANAGER_IFACE and member == "ListSessions":
            rows = [
                (sid, props["User"][1][0], props["Name"][1], "seat0", session_path(sid))
                for sid, props in self.sessions.items()
            ]
            return new_method_return(message, "a(susso)", (rows,))
        if interface == PROPERTIES_IFACE and member == "GetAll" and message.body == (SESSION_IFACE,):
            for sid, props in self.sessions.items():
                if session_path(sid) == path:
                    return new_method_return(message, "a{sv}", (props,))
            return new_error(message, "org.freedesktop.DBus.Error.UnknownObject", "s", (f"no object {path}",))
        return new_error(message, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no method {member}",))


@pytest.fixture
def logind(bus: PrivateBus) -> Iterator[FakeLogind]:
    fake = FakeLogind(bus.address)
    yield fake
    fake.stop()


# -- driving a collector ---------------------------------------------------------------------


def events(samples: list[Sample]) -> list[tuple[object, object]]:
    return [(s.attrs["event"], s.attrs.get("user")) for s in samples]


def collect(collector: LogindCollector, until: Callable[[list[Sample]], bool], timeout: float = 10.0) -> list[Sample]:
    """Run the collector the way the service does (select on its socket, then poll) until
    `until(everything so far)` holds."""
    out: list[Sample] = []
    deadline = time.monotonic() + timeout
    while True:
        out += collector.poll(time.time())
        if until(out):
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; collected {events(out)}")
        fd = collector.fileno()
        if fd is not None:
            select.select([fd], [], [], 0.1)
        else:
            time.sleep(0.05)


def quiet(collector: LogindCollector, seconds: float = 0.3) -> list[Sample]:
    out: list[Sample] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += collector.poll(time.time())
        fd = collector.fileno()
        if fd is not None:
            select.select([fd], [], [], 0.05)
    return out


def has(n: int) -> Callable[[list[Sample]], bool]:
    return lambda out: len(out) >= n


# -- the collector ---------------------------------------------------------------------------


def test_logins_locks_and_logouts_come_from_logind(logind: FakeLogind) -> None:
    hour_ago = time.time() - 3600
    logind.add("1", "alice", stamp=hour_ago)
    logind.add("c1", "lightdm", cls="greeter")  # the login screen is nobody's session
    logind.start()
    saved: list[dict[str, dict[str, object]]] = []
    collector = LogindCollector(logind.address, on_known_change=saved.append)
    try:
        (first,) = collect(collector, has(1))
        assert collector.available
        assert first.attrs == {"event": "login", "user": "alice", "session": "1"}
        assert first.time == pytest.approx(hour_ago, abs=1e-3)  # when the session began, not when we looked

        started = time.time()
        # Each step waits for the collector: a session that is gone before it can be asked
        # about (GetAll) cannot be attributed to anyone, and is not reported.
        logind.new_session("2", "bob")
        out = collect(collector, has(1))
        logind.new_session("c2", "lightdm", cls="greeter")
        logind.lock("2")  # loginctl lock-session: logind asks the locker...
        logind.set_locked_hint("2", True)  # ...and the locker confirms: one lock, not two
        logind.set_locked_hint("2", False)  # the person unlocked
        out += collect(collector, has(2))
        logind.set_locked_hint("2", True)  # a locker that only sets the hint
        logind.unlock("2")  # loginctl unlock-session
        out += collect(collector, has(2))
        logind.remove_session("2")
        out += collect(collector, has(1))
        assert events(out) == [
            ("login", "bob"),
            ("lock", "bob"),
            ("unlock", "bob"),
            ("lock", "bob"),
            ("unlock", "bob"),
            ("logout", "bob"),
        ]
        assert all(s.attrs["session"] == "2" and s.kind == "session" for s in out)
        assert all(started - 1 <= s.time <= time.time() for s in out)
        assert quiet(collector) == []
        assert list(saved[-1]) == [f"1@{int(hour_ago * 1e6)}"]
    finally:
        collector.close()


def test_a_restart_reports_only_what_changed_meanwhile(logind: FakeLogind) -> None:
    logind.add("1", "alice", stamp=time.time() - 7200)
    logind.add("2", "bob", stamp=time.time() - 3600)
    logind.start()
    saved: list[dict[str, dict[str, object]]] = []
    first = LogindCollector(logind.address, on_known_change=saved.append)
    assert events(collect(first, has(2))) == [("login", "alice"), ("login", "bob")]
    first.close()

    # While the agent is away: alice logs out and (after a reboot) gets session id "1" again,
    # bob locks his screen, carol logs in.
    logind.remove_session("1")
    logind.new_session("1", "alice", stamp=time.time() - 5)
    logind.set_locked_hint("2", True)
    logind.new_session("3", "carol", stamp=time.time() - 10)

    second = LogindCollector(logind.address, known=json.loads(json.dumps(saved[-1])), on_known_change=saved.append)
    out = collect(second, has(4))
    assert sorted(events(out)) == [("lock", "bob"), ("login", "alice"), ("login", "carol"), ("logout", "alice")]
    assert quiet(second) == []
    second.close()

    third = LogindCollector(logind.address, known=saved[-1])
    assert quiet(third) == []  # nothing changed: nothing to say
    assert third.available
    third.close()


def test_only_logind_itself_is_believed(bus: PrivateBus, logind: FakeLogind) -> None:
    logind.add("1", "alice")
    logind.start()
    collector = LogindCollector(bus.address)
    spoofer = open_dbus_connection(bus.address)
    try:
        collect(collector, has(1))
        target = collector._conn.unique_name  # the collector's own connection, to reach it directly
        manager = DBusAddress(MANAGER_PATH, interface=MANAGER_IFACE)
        for destination in (None, target):
            for message in (
                new_signal(manager, "SessionNew", "so", ("66", session_path("66"))),
                new_signal(manager, "SessionRemoved", "so", ("1", session_path("1"))),
                new_signal(DBusAddress(session_path("1"), interface=SESSION_IFACE), "Lock"),
            ):
                if destination is not None:
                    message.header.fields[HeaderFields.destination] = destination
                spoofer.send(message)
        # A round trip through the bus: everything the spoofer sent has been routed by now.
        spoofer.send_and_get_reply(message_bus.GetId(), timeout=5)
        logind.set_locked_hint("1", True)
        out = collect(collector, has(1))
        assert events(out) == [("lock", "alice")]
        assert "GetAll /org/freedesktop/login1/session/_366" not in " ".join(logind.calls)
    finally:
        spoofer.close()
        collector.close()


def test_no_system_bus_means_unavailable_and_no_crash() -> None:
    for address in ("unix:path=/nonexistent/glasshouse/bus", "tcp:host=127.0.0.1,port=1", "nonsense"):
        collector = LogindCollector(address, retry=30)
        now = time.time()
        assert collector.poll(now) == []
        assert not collector.available
        assert collector.fileno() is None
        assert collector.next_wakeup() == pytest.approx(now + 30)
        assert collector.poll(now + 1) == []  # no retry before it is due
        collector.close()


def test_logind_appearing_leaving_and_coming_back(bus: PrivateBus) -> None:
    collector = LogindCollector(bus.address)
    first = FakeLogind(bus.address)
    second = FakeLogind(bus.address)
    try:
        assert collector.poll(time.time()) == []
        assert not collector.available  # a bus but no logind: wait for it on the bus
        assert collector.fileno() is not None

        first.add("1", "alice", stamp=time.time() - 60)
        first.start()
        assert events(collect(collector, has(1))) == [("login", "alice")]
        assert collector.available

        first.stop()  # logind restarts: its sessions survive it, except alice's
        collect(collector, lambda _: not collector.available)
        second.add("2", "bob")
        second.start()
        out = collect(collector, has(2))
        assert sorted(events(out)) == [("login", "bob"), ("logout", "alice")]
        assert collector.available
    finally:
        collector.close()
        first.stop()
        second.stop()


def test_a_bus_that_goes_away_is_retried(bus: PrivateBus, logind: FakeLogind) -> None:
    logind.add("1", "alice")
    logind.start()
    collector = LogindCollector(bus.address, retry=0.2)
    try:
        collect(collector, has(1))
        bus.proc.kill()
        bus.proc.wait(10)
        collect(collector, lambda _: collector.fileno() is None)
        assert not collector.available
        assert quiet(collector, 0.5) == []  # retries quietly, never raises
    finally:
        collector.close()


# -- the service -----------------------------------------------------------------------------


@pytest.fixture
def sockdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="ghl-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_service(tmp_path: Path, sockdir: str, policy: Policy, **kw: Any) -> tuple[Service, threading.Thread]:
    spool_path = str(tmp_path / "spool.sqlite3")
    spool = Spool(spool_path)
    spool.set("policy", policy.dumps())
    spool.close()
    service = Service(
        spool_path=spool_path,
        socket_path=os.path.join(sockdir, "session.sock"),
        uplink=None,
        checkpoint_seconds=0.2,
        **kw,
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    assert service.ready.wait(10)
    return service, thread


def stop_service(service: Service, thread: threading.Thread) -> None:
    service.stop()  # what the SIGTERM handler does
    thread.join(10)
    assert not thread.is_alive()


def sessions(tmp_path: Path) -> list[dict[str, object]]:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    rows = spool._db.execute("SELECT attrs FROM spans WHERE kind = 'session' ORDER BY id").fetchall()
    spool.close()
    return [json.loads(a) for (a,) in rows]


def write_utmp(path: Path, user: str) -> None:
    path.write_bytes(pack_utmp(UtmpRecord(USER_PROCESS, 4242, "pts/7", user, "10.0.0.9", time.time() - 30)))


def test_service_records_its_start_logind_events_and_its_stop(
    tmp_path: Path, sockdir: str, bus: PrivateBus, logind: FakeLogind
) -> None:
    logind.add("1", "alice", stamp=time.time() - 600)
    logind.start()
    write_utmp(tmp_path / "utmp", "alice")  # the same login in utmp: reported once, by logind
    service, thread = start_service(
        tmp_path, sockdir, make_policy(), system_bus=bus.address, utmp_path=str(tmp_path / "utmp")
    )
    try:
        wait_for(lambda: len(sessions(tmp_path)) >= 2)
        logind.lock("1")
        wait_for(lambda: len(sessions(tmp_path)) >= 3)
    finally:
        stop_service(service, thread)
    assert sessions(tmp_path) == [
        {"event": "agent-start"},
        {"event": "login", "user": "alice", "session": "1"},
        {"event": "lock", "user": "alice", "session": "1"},
        {"event": "agent-stop"},
    ]
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    try:
        assert list(json.loads(spool.get("logind_known") or "{}")) == [f"1@{logind.sessions['1']['Timestamp'][1]}"]
    finally:
        spool.close()


def test_without_logind_logins_come_from_utmp(tmp_path: Path, sockdir: str) -> None:
    write_utmp(tmp_path / "utmp", "dave")
    # No system bus at all (the test environment points it at nothing).
    service, thread = start_service(tmp_path, sockdir, make_policy(), utmp_path=str(tmp_path / "utmp"))
    try:
        wait_for(lambda: len(sessions(tmp_path)) >= 2)
    finally:
        stop_service(service, thread)
    assert sessions(tmp_path) == [{"event": "agent-start"}, {"event": "login", "user": "dave"}, {"event": "agent-stop"}]


def test_sessions_off_in_the_policy_means_nothing_at_all(
    tmp_path: Path, sockdir: str, bus: PrivateBus, logind: FakeLogind
) -> None:
    logind.add("1", "alice")
    logind.start()
    write_utmp(tmp_path / "utmp", "alice")
    policy = make_policy(collect={"sessions": False})
    service, thread = start_service(tmp_path, sockdir, policy, system_bus=bus.address, utmp_path=str(tmp_path / "utmp"))
    try:
        logind.lock("1")
        time.sleep(1.0)  # several checkpoints
    finally:
        stop_service(service, thread)
    assert sessions(tmp_path) == []  # not even the agent's own start and stop
    assert logind.calls == []  # logind was never asked


def test_switching_sessions_off_disconnects_from_logind(
    tmp_path: Path, sockdir: str, bus: PrivateBus, logind: FakeLogind
) -> None:
    server = FakeServer().start()
    try:
        device_id, key = server.add_device()
        server.set_policy(policy_doc())
        logind.add("1", "alice")
        logind.start()
        spool = Spool(str(tmp_path / "spool.sqlite3"))
        spool.set("policy", make_policy().dumps())  # the policy of the last run, until the server's arrives
        spool.close()
        service = Service(
            spool_path=str(tmp_path / "spool.sqlite3"),
            socket_path=os.path.join(sockdir, "session.sock"),
            uplink=Uplink(server.url, device_id, key, timeout=5),
            utmp_path=str(tmp_path / "no-utmp"),
            system_bus=bus.address,
            policy_interval=0.2,
            checkpoint_seconds=0.2,
        )
        thread = threading.Thread(target=service.serve, daemon=True)
        thread.start()
        try:
            wait_for(lambda: {"event": "login", "user": "alice", "session": "1"} in sessions(tmp_path))
            server.set_policy(policy_doc(collect={"sessions": False}))
            wait_for(lambda: connections(bus.address) == 2)  # logind and the probe: the agent has gone
            logind.lock("1")
            time.sleep(0.5)
        finally:
            stop_service(service, thread)
    finally:
        server.stop()
    assert [s["event"] for s in sessions(tmp_path)] == ["agent-start", "login"]  # no lock, no agent-stop


def connections(address: str) -> int:
    """How many clients the bus has, counting the probe that asks."""
    conn = open_dbus_connection(address)
    try:
        (names,) = unwrap_msg(conn.send_and_get_reply(message_bus.ListNames(), timeout=5))
        return len([n for n in names if n.startswith(":")])
    finally:
        conn.close()
