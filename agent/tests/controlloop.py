"""Driving a service control (removable media, app blocking) the way the service's select()
loop does, in tests: wait on its descriptor until its next wakeup, poll, collect its events."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any, Protocol


class Control(Protocol):
    def fileno(self) -> int: ...

    def next_wakeup(self) -> float: ...

    def poll(self, now: float) -> list[dict[str, Any]]: ...


def pump(control: Control, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
    """Drive `control` until `until(events)` holds; the events it produced on the way."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        wait = max(0.0, min(control.next_wakeup() - time.time(), 0.1))
        select.select([control.fileno()], [], [], wait)
        events += control.poll(time.time())
        if until(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; events: {events}")


def settle(control: Control, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Drive `control` for `seconds`; the events it produced."""
    end = time.monotonic() + seconds
    return pump(control, lambda _: time.monotonic() > end, timeout=seconds + 5)
