"""Collectors: one small interface for every source of samples, so the session helper and the
service drive X11, Windows, macOS and utmp the same way.

A collector is driven by its owner's select() loop: the owner waits on `fileno()` (if any)
until `next_wakeup()`, then calls `poll(now)`, which returns the samples due now: a changed
state at once, the unchanged state again every heartbeat so spans can be extended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from glasshouse_agent.model import Attrs, Sample

# Collectors repeat an unchanged state this often relative to the policy's pulse, so that the
# merger (which joins samples no more than one pulse apart) sees an unbroken span despite
# scheduling jitter.
HEARTBEAT_FRACTION = 0.8


class DisplayGone(Exception):
    """The display a collector watches has gone away (the user logged out)."""


class Collector(Protocol):
    def fileno(self) -> int | None:
        """A descriptor that becomes readable when there is news, or None for pure polling."""
        ...

    def next_wakeup(self) -> float:
        """Epoch time by which poll() must run again even if fileno() stays quiet."""
        ...

    def poll(self, now: float) -> list[Sample]: ...

    def close(self) -> None: ...


class PollingWindowCollector:
    """Active window by polling a reader (Windows, macOS: their documented APIs offer no
    foreground-change notification without a message/run loop we do not otherwise need)."""

    def __init__(self, read: Callable[[], Attrs | None], *, heartbeat: float, interval: float = 1.0) -> None:
        self._read = read
        self._heartbeat = heartbeat
        self._interval = interval
        self._state: Attrs | None = None
        self._last_emit = float("-inf")
        self._last_poll = float("-inf")

    def fileno(self) -> int | None:
        return None

    def next_wakeup(self) -> float:
        return self._last_poll + self._interval

    def poll(self, now: float) -> list[Sample]:
        self._last_poll = now
        state = self._read()
        if state == self._state and now - self._last_emit < self._heartbeat:
            return []
        changed = state != self._state
        self._state = state
        if state is None and not changed:
            return []
        self._last_emit = now
        # An empty attrs sample tells the merger "nothing is active": close, open nothing.
        return [Sample("window", now, dict(state) if state else {})]

    def close(self) -> None:
        pass


class IdleCollector:
    """Active/idle from "seconds since the last input" (X11 screen saver, GetLastInputInfo,
    CGEventSource). Only the time since input is read, never what the input was."""

    def __init__(
        self,
        read_idle_seconds: Callable[[], float],
        *,
        threshold: float,
        heartbeat: float,
        idle_check: float = 1.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._read = read_idle_seconds
        self._threshold = threshold
        self._heartbeat = heartbeat
        self._idle_check = idle_check
        self._on_close = on_close
        self._state: str | None = None
        self._last_emit = float("-inf")
        self._wake = float("-inf")

    def fileno(self) -> int | None:
        return None

    def next_wakeup(self) -> float:
        return self._wake

    def poll(self, now: float) -> list[Sample]:
        idle = max(0.0, self._read())
        state = "idle" if idle >= self._threshold else "active"
        out: list[Sample] = []
        if state != self._state:
            # Date the change when it happened, not when we noticed: idle began when the
            # threshold was crossed, activity resumed at the last input. Never before the last
            # sample we sent, so spans stay ordered.
            if self._state is None:
                when = now  # the first reading: we did not observe what came before
            else:
                when = now - idle + self._threshold if state == "idle" else now - idle
                when = min(now, max(when, self._last_emit))
            out.append(Sample("idle", when, {"state": state}))
            if when < now:
                # ...and confirm it now, so the new span already reaches the present.
                out.append(Sample("idle", now, {"state": state}))
            self._state, self._last_emit = state, now
        elif now - self._last_emit >= self._heartbeat:
            out.append(Sample("idle", now, {"state": state}))
            self._last_emit = now
        if state == "active":
            # Sleep until the threshold could be crossed or a heartbeat is due: no busy poll.
            self._wake = min(now + (self._threshold - idle), self._last_emit + self._heartbeat)
        else:
            # Only polling notices input (we do not hook input), so check often while idle.
            self._wake = min(now + self._idle_check, self._last_emit + self._heartbeat)
        return out

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
