"""Logins, logouts and screen locks from systemd-logind (`org.freedesktop.login1`) on the system
bus: the Manager's SessionNew/SessionRemoved signals, each session's Lock/Unlock signals and
changes of its LockedHint property.

Why jeepney's blocking connection and not dbus-next/dbus-fast: the service is one select()
loop. dbus-next and dbus-fast do their I/O only through asyncio (or GLib), which would mean a
second thread running an event loop, a hand-off queue between it and the loop, and about 7 MB
more resident memory (asyncio plus dbus-fast's compiled modules) for a few signals a day.
jeepney is pure Python with no dependencies and speaks the wire protocol over a socket we own:
the service selects on that socket (fileno()) and poll() parses and handles what arrived. The
few method calls (at connect, and one per new session) block the loop for at most `timeout`
seconds; on a healthy bus they take well under a millisecond.

Degrading: no system bus, no logind, or a connection that breaks makes the collector
*unavailable* (the service then takes logins from utmp); it retries the bus every `retry`
seconds and notices logind (re)appearing at once through NameOwnerChanged. Whatever changed
meanwhile is reconciled against the sessions it last knew (kept by the owner, like utmp's), so
a restart or a gap reports logins, logouts and lock changes once, not again and not never.

Only messages from the connection that owns `org.freedesktop.login1` are believed: any process
may put a signal on the bus, but the bus daemon stamps each message with its true sender."""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from glasshouse_agent.model import Sample

try:
    from jeepney import (
        DBusAddress,
        DBusErrorResponse,
        HeaderFields,
        MatchRule,
        MessageType,
        message_bus,
        new_method_call,
    )
    from jeepney.io.blocking import open_dbus_connection
    from jeepney.wrappers import unwrap_msg
except ImportError:  # a Linux-only dependency, as logind is Linux-only
    open_dbus_connection = None

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
SESSION_PATHS = "/org/freedesktop/login1/session"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
BUS_NAME = "org.freedesktop.DBus"
NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner"

log = logging.getLogger(__name__)


def is_person(session_class: str) -> bool:
    """A session of a person: "user" and systemd 256+'s "user-early", "user-incomplete",
    "user-light". Not the display manager's "greeter", "lock-screen", "background" (cron-like
    jobs) or "manager" (each user's service manager)."""
    return session_class in ("", "user") or session_class.startswith("user-")


@dataclass
class _Session:
    id: str
    path: str
    user: str
    stamp: int  # logind's Timestamp: CLOCK_REALTIME microseconds when the session began (0: unknown)
    locked: bool

    @property
    def key(self) -> str:
        # Session ids restart after a reboot ("2" today is not yesterday's "2"); with the start
        # time they name one session for good.
        return f"{self.id}@{self.stamp}"


@dataclass
class _Known:
    user: str
    locked: bool


class LogindCollector:
    """Session point events ("session" samples with `event` login/logout/lock/unlock, `user` and
    logind's `session` id). `known`/`on_known_change` carry the sessions already reported
    across restarts, as JSON-ready dicts; `on_known_change` is called from poll()."""

    def __init__(
        self,
        address: str | None = None,
        *,
        known: Mapping[str, Any] | None = None,
        on_known_change: Callable[[dict[str, dict[str, object]]], None] | None = None,
        retry: float = 30.0,
        timeout: float = 2.0,
    ) -> None:
        self.address = address  # None: the system bus ($DBUS_SYSTEM_BUS_ADDRESS or the standard socket)
        self.retry = retry
        self.timeout = timeout
        self._on_known_change = on_known_change
        self._known: dict[str, _Known] = {}
        for key, value in (known if isinstance(known, Mapping) else {}).items():
            if isinstance(value, dict) and isinstance(value.get("user"), str):
                self._known[str(key)] = _Known(value["user"], bool(value.get("locked")))
        self._known_dirty = False
        self._conn: Any = None  # jeepney.io.blocking.DBusConnection
        self._queue: deque[Any] = deque()  # messages received but not yet handled
        self._owner: str | None = None  # the unique bus name of logind, when it is there
        self._sessions: dict[str, _Session] = {}
        self._out: list[Sample] = []
        self._retry_at = -math.inf
        self._reason: str | None = None
        self.available = False

    # -- Collector -----------------------------------------------------------------------

    def fileno(self) -> int | None:
        return int(self._conn.sock.fileno()) if self._conn is not None else None

    def next_wakeup(self) -> float:
        # Connected, everything arrives through fileno(); otherwise the next reconnect.
        return math.inf if self._conn is not None else self._retry_at

    def poll(self, now: float) -> list[Sample]:
        if self._conn is None:
            if now >= self._retry_at:
                self._connect(now)
        else:
            try:
                self._pump(now)
            except Exception as exc:  # any bus failure: reconnect later, never stop the service
                self._lost(now, f"lost the system bus connection: {exc!r}")
        if self._known_dirty:
            self._known_dirty = False
            if self._on_known_change is not None:
                self._on_known_change({k: {"user": v.user, "locked": v.locked} for k, v in sorted(self._known.items())})
        out, self._out = self._out, []
        return sorted(out, key=lambda s: s.time)

    def close(self) -> None:
        self._disconnect()
        self._set_unavailable("closed", quiet=True)

    # -- connection ----------------------------------------------------------------------

    def _connect(self, now: float) -> None:
        try:
            if open_dbus_connection is None:
                raise RuntimeError("jeepney is not installed")
            # Connecting and authenticating are bounded by `timeout`; the Hello that follows
            # is not (jeepney has no limit there), but a bus that has just authenticated us answers it.
            self._conn = open_dbus_connection(bus=self.address or "SYSTEM", auth_timeout=self.timeout)
        except Exception as exc:  # no bus, refused, not authenticated, jeepney missing
            self._conn = None
            self._retry_at = now + self.retry
            self._set_unavailable(f"no system bus ({exc})")
            return
        try:
            # Everything that is not the reply a call is waiting for lands in the queue, so a
            # signal that arrives during a call is handled afterwards, not lost.
            self._conn.filter(MatchRule(), queue=self._queue)
            signal = MessageType.signal
            owner_changed = MatchRule(type=signal, sender=BUS_NAME, interface=BUS_NAME, member="NameOwnerChanged")
            owner_changed.add_arg_condition(0, LOGIN1)
            changed = MatchRule(
                type=signal,
                sender=LOGIN1,
                interface=PROPERTIES_IFACE,
                member="PropertiesChanged",
                path_namespace=SESSION_PATHS,
            )
            changed.add_arg_condition(0, SESSION_IFACE)
            rules = [
                owner_changed,
                MatchRule(type=signal, sender=LOGIN1, interface=MANAGER_IFACE, path=MANAGER_PATH),
                MatchRule(type=signal, sender=LOGIN1, interface=SESSION_IFACE, path_namespace=SESSION_PATHS),
                changed,
            ]
            # Subscribe first, then look: a change between the two is seen twice, never missed.
            for rule in rules:
                self._call(message_bus.AddMatch(rule))
            self._owner = self._name_owner()
            if self._owner is None:
                self._set_unavailable("systemd-logind is not on the system bus")
            else:
                self._sync(now)
            self._pump(now)
        except Exception as exc:  # as in poll()
            self._lost(now, f"system bus error: {exc!r}")

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None
        self._owner = None
        self._sessions = {}
        self._queue.clear()

    def _lost(self, now: float, reason: str) -> None:
        self._disconnect()
        self._retry_at = now + self.retry
        self._set_unavailable(reason)

    def _set_unavailable(self, reason: str, *, quiet: bool = False) -> None:
        self.available = False
        if reason != self._reason and not quiet:
            log.warning("logind unavailable, logins come from utmp: %s", reason)
        self._reason = reason

    def _call(self, message: Any) -> tuple[Any, ...]:
        reply = self._conn.send_and_get_reply(message, timeout=self.timeout)
        return tuple(unwrap_msg(reply))

    def _name_owner(self) -> str | None:
        try:
            (owner,) = self._call(message_bus.GetNameOwner(LOGIN1))
        except DBusErrorResponse as exc:
            if exc.name == NO_OWNER:
                return None
            raise
        return str(owner)

    def _pump(self, now: float) -> None:
        """Handle everything that has arrived, including what arrives while handling it."""
        while self._conn is not None:
            try:
                while True:
                    self._conn.recv_messages(timeout=0)
            except TimeoutError:
                pass
            if not self._queue:
                return
            while self._queue and self._conn is not None:
                message = self._queue.popleft()
                try:
                    self._handle(message, now)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    log.debug("ignoring a malformed D-Bus message: %r", exc)

    # -- logind --------------------------------------------------------------------------

    def _handle(self, message: Any, now: float) -> None:
        header = message.header
        if header.message_type != MessageType.signal:
            return  # late replies to calls that timed out; nobody calls us
        fields = header.fields
        sender = fields.get(HeaderFields.sender)
        interface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member)
        path = fields.get(HeaderFields.path)
        body = message.body
        if sender == BUS_NAME and interface == BUS_NAME and member == "NameOwnerChanged":
            name, _old, new = body
            if name != LOGIN1:
                return
            self._owner = str(new) or None
            self._sessions = {}
            if self._owner is None:
                self._set_unavailable("systemd-logind left the system bus")
            else:
                log.info("systemd-logind is on the system bus")
                self._sync(now)
            return
        if self._owner is None or sender != self._owner:
            return  # not logind: anyone can send a signal, only logind's count
        if interface == MANAGER_IFACE and path == MANAGER_PATH:
            if member == "SessionNew":
                session_id, session_path = body
                self._session_new(str(session_id), str(session_path), now)
            elif member == "SessionRemoved":
                session_id, _ = body
                self._session_removed(str(session_id), now)
        elif interface == SESSION_IFACE and member in ("Lock", "Unlock"):
            # Lock/Unlock ask the session's screen locker to act; LockedHint is what the locker
            # then reports. Whichever comes first records the change, the other finds it done.
            self._set_locked(str(path), member == "Lock", now)
        elif interface == PROPERTIES_IFACE and member == "PropertiesChanged":
            iface, changed, _invalidated = body
            if iface == SESSION_IFACE and "LockedHint" in changed:
                _signature, value = changed["LockedHint"]
                self._set_locked(str(path), bool(value), now)

    def _read_session(self, session_id: str, path: str) -> _Session | None:
        try:
            (props,) = self._call(
                new_method_call(DBusAddress(path, LOGIN1, PROPERTIES_IFACE), "GetAll", "s", (SESSION_IFACE,))
            )
        except DBusErrorResponse:
            return None  # gone again before we asked

        def prop(name: str, default: object) -> object:
            value = props.get(name)
            return value[1] if isinstance(value, tuple) and len(value) == 2 else default

        user = prop("Name", "")
        if not is_person(str(prop("Class", ""))) or not isinstance(user, str) or not user:
            return None
        stamp = prop("Timestamp", 0)
        return _Session(session_id, path, user, stamp if isinstance(stamp, int) else 0, bool(prop("LockedHint", False)))

    def _sync(self, now: float) -> None:
        """Read every session and reconcile with what was last reported."""
        (rows,) = self._call(new_method_call(DBusAddress(MANAGER_PATH, LOGIN1, MANAGER_IFACE), "ListSessions"))
        sessions: dict[str, _Session] = {}
        for session_id, _uid, _user, _seat, path in rows:
            session = self._read_session(str(session_id), str(path))
            if session is not None:
                sessions[session.id] = session
        self._sessions = sessions
        current = {s.key: s for s in sessions.values()}
        for key, session in current.items():
            old = self._known.get(key)
            if old is None:
                self._remember(session)
                self._emit(self._started(session, now), "login", session.user, session.id)
                if session.locked:
                    self._emit(now, "lock", session.user, session.id)
            elif old.locked != session.locked:
                self._remember(session)
                self._emit(now, "lock" if session.locked else "unlock", session.user, session.id)
        for key in sorted(set(self._known) - set(current)):
            old = self._known.pop(key)
            self._known_dirty = True
            self._emit(now, "logout", old.user, key.rsplit("@", 1)[0])
        if not self.available:
            log.info("logind available: %d session(s)", len(sessions))
        self.available = True
        self._reason = None

    def _session_new(self, session_id: str, path: str, now: float) -> None:
        if session_id in self._sessions:
            return
        session = self._read_session(session_id, path)
        if session is None:
            return
        self._sessions[session_id] = session
        if session.key in self._known:
            return  # already reported (seen by a resync that raced this signal)
        self._remember(session)
        self._emit(self._started(session, now), "login", session.user, session_id)
        if session.locked:
            self._emit(now, "lock", session.user, session_id)

    def _session_removed(self, session_id: str, now: float) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if self._known.pop(session.key, None) is not None:
            self._known_dirty = True
        self._emit(now, "logout", session.user, session_id)

    def _set_locked(self, path: str, locked: bool, now: float) -> None:
        session = next((s for s in self._sessions.values() if s.path == path), None)
        if session is None or session.locked == locked:
            return
        session.locked = locked
        self._remember(session)
        self._emit(now, "lock" if locked else "unlock", session.user, session.id)

    def _remember(self, session: _Session) -> None:
        self._known[session.key] = _Known(session.user, session.locked)
        self._known_dirty = True

    @staticmethod
    def _started(session: _Session, now: float) -> float:
        started = session.stamp / 1e6
        return started if 0 < started <= now else now

    def _emit(self, when: float, event: str, user: str, session_id: str) -> None:
        self._out.append(Sample("session", when, {"event": event, "user": user, "session": session_id}))
