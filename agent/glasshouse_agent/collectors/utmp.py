"""Logins and logouts from the utmp file, read directly so its path is configurable (psutil
reads only the system's default). The service polls the file's stat() and parses it only when
it changed; the set of sessions already reported is handed back to the owner to persist, so a
restart reports only what changed meanwhile."""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from glasshouse_agent.model import Sample

# glibc's struct utmp on Linux (the same layout on x86_64, aarch64 and i386: ut_tv and the
# session are 32-bit there for compatibility). 384 bytes.
UTMP_FORMAT = "<h2xi32s4s32s256shhi2i4i20x"
UTMP_SIZE = struct.calcsize(UTMP_FORMAT)
USER_PROCESS = 7
DEAD_PROCESS = 8
DEFAULT_UTMP = "/var/run/utmp"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UtmpRecord:
    type: int
    pid: int
    line: str
    user: str
    host: str
    time: float

    @property
    def key(self) -> str:
        return "\0".join((self.line, self.user, str(self.pid), repr(self.time)))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def read_utmp(path: str) -> Iterator[UtmpRecord]:
    with open(path, "rb") as f:
        data = f.read()
    for offset in range(0, len(data) - UTMP_SIZE + 1, UTMP_SIZE):
        ut_type, pid, line, _id, user, host, _term, _exit, _session, sec, usec, *_addr = struct.unpack_from(
            UTMP_FORMAT, data, offset
        )
        yield UtmpRecord(ut_type, pid, _text(line), _text(user), _text(host), sec + usec / 1e6)


def pack_utmp(record: UtmpRecord) -> bytes:
    """The inverse of read_utmp, for tests and tools that need a utmp file."""
    sec = int(record.time)
    return struct.pack(
        UTMP_FORMAT,
        record.type,
        record.pid,
        record.line.encode(),
        record.line[-4:].encode(),
        record.user.encode(),
        record.host.encode(),
        0,
        0,
        0,
        sec,
        round((record.time - sec) * 1e6),
        0,
        0,
        0,
        0,
    )


class UtmpCollector:
    def __init__(
        self,
        path: str = DEFAULT_UTMP,
        *,
        known: Iterable[str] | None = None,
        on_known_change: Callable[[list[str]], None] | None = None,
        interval: float = 5.0,
    ) -> None:
        self.path = path
        self._known: set[str] = set(known or ())
        self._on_known_change = on_known_change
        self._interval = interval
        self._last_check = float("-inf")
        self._last_stat: tuple[int, int, int] | None = None

    def fileno(self) -> int | None:
        return None

    def next_wakeup(self) -> float:
        return self._last_check + self._interval

    def poll(self, now: float) -> list[Sample]:
        self._last_check = now
        try:
            st = os.stat(self.path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            if sig == self._last_stat:
                return []
            records = list(read_utmp(self.path))
        except OSError as exc:
            # Missing (containers, some minimal systems) or unreadable: no logins to report,
            # and no reason to stop the service over it.
            if self._last_stat != (0, 0, 0):
                log.warning("cannot read %s: %s", self.path, exc)
                self._last_stat = (0, 0, 0)
            return []
        self._last_stat = sig
        current = {r.key: r for r in records if r.type == USER_PROCESS and r.user}
        # When a session ends, init/login rewrites its slot as DEAD_PROCESS with the logout time.
        dead = {r.line: r.time for r in records if r.type == DEAD_PROCESS}
        out: list[Sample] = []
        for key in sorted(set(current) - self._known):
            r = current[key]
            out.append(Sample("session", r.time, {"event": "login", "user": r.user}))
        for key in sorted(self._known - set(current)):
            line, user, _pid, started = key.split("\0")
            ended = dead.get(line)
            when = ended if ended is not None and ended >= float(started) else now
            out.append(Sample("session", when, {"event": "logout", "user": user}))
        if set(current) != self._known:
            self._known = set(current)
            if self._on_known_change is not None:
                self._on_known_change(sorted(self._known))
        return sorted(out, key=lambda s: s.time)

    def close(self) -> None:
        pass
