"""The X11 collectors against a real X server (Xvfb), a real window manager (openbox) and real
xterm windows, focused and retitled with xdotool."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest
from Xlib import X, Xatom
from Xlib import display as xdisplay

from glasshouse_agent.collectors import Collector
from glasshouse_agent.collectors.x11 import X11WindowCollector, x11_idle_collector
from glasshouse_agent.model import Sample
from tests.desktop import Desktop, require_tools

pytestmark = pytest.mark.x11


def pump(collector: Collector, until: Callable[[list[Sample]], bool], timeout: float = 10.0) -> list[Sample]:
    """Drive a collector the way the session helper does (select on its fd until its wakeup)
    until the samples so far satisfy `until`."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.time()
        wait = max(0.0, min(collector.next_wakeup() - now, deadline - time.monotonic(), 0.5))
        fd = collector.fileno()
        if fd is not None:
            select.select([fd], [], [], wait)
        else:
            time.sleep(wait)
        samples += collector.poll(time.time())
        if until(samples):
            return samples
    raise AssertionError(f"timed out; samples so far: {samples}")


def last_window(samples: list[Sample]) -> dict[str, str | int]:
    windows = [s for s in samples if s.kind == "window"]
    return windows[-1].attrs if windows else {}


XTERM = os.path.realpath(shutil.which("xterm") or "/usr/bin/xterm")


@pytest.fixture(scope="module")
def xterms(desktop: Desktop) -> dict[str, int]:
    a = desktop.xterm("GhAlpha", "Alpha start")
    b = desktop.xterm("GhBeta", "Beta start")
    return {"GhAlpha": a.pid, "GhBeta": b.pid}


def test_focus_switch_reports_class_title_pid_and_exe(desktop: Desktop, xterms: dict[str, int]) -> None:
    c = X11WindowCollector(desktop.display, titles=True, heartbeat=60)
    try:
        desktop.activate("GhAlpha")
        pump(c, lambda s: last_window(s).get("app") == "GhAlpha")
        desktop.activate("GhBeta")
        samples = pump(c, lambda s: last_window(s).get("app") == "GhBeta")
        assert last_window(samples) == {"app": "GhBeta", "title": "Beta start", "pid": xterms["GhBeta"], "exe": XTERM}
        desktop.activate("GhAlpha")
        samples = pump(c, lambda s: last_window(s).get("app") == "GhAlpha")
        assert last_window(samples)["pid"] == xterms["GhAlpha"]
    finally:
        c.close()


def test_retitle_of_the_active_window_is_seen(desktop: Desktop, xterms: dict[str, int]) -> None:
    c = X11WindowCollector(desktop.display, titles=True, heartbeat=60)
    try:
        desktop.activate("GhBeta")
        pump(c, lambda s: last_window(s).get("app") == "GhBeta")
        desktop.retitle("GhBeta", "Budget 2026 \u2013 draft")
        samples = pump(c, lambda s: last_window(s).get("title") == "Budget 2026 \u2013 draft")
        assert last_window(samples)["app"] == "GhBeta"
    finally:
        c.close()


def test_with_titles_off_no_title_is_read_or_reported(
    desktop: Desktop, xterms: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(self: X11WindowCollector, win: object) -> str:
        raise AssertionError("the title was read although the policy forbids titles")

    monkeypatch.setattr(X11WindowCollector, "_title", forbidden)
    c = X11WindowCollector(desktop.display, titles=False, heartbeat=60)
    try:
        desktop.activate("GhAlpha")
        pump(c, lambda s: last_window(s).get("app") == "GhAlpha")
        desktop.retitle("GhAlpha", "Secret project")
        desktop.activate("GhBeta")
        samples = pump(c, lambda s: last_window(s).get("app") == "GhBeta")
        assert all("title" not in s.attrs for s in samples)
        assert last_window(samples) == {"app": "GhBeta", "pid": xterms["GhBeta"], "exe": XTERM}
    finally:
        c.close()


def test_pid_falls_back_to_the_x_resource_extension(desktop: Desktop, xterms: dict[str, int]) -> None:
    require_tools("xprop")
    wid = desktop.window_of("GhAlpha")
    assert wid is not None
    subprocess.run(["xprop", "-id", str(wid), "-remove", "_NET_WM_PID"], env=desktop.env, check=True)
    c = X11WindowCollector(desktop.display, titles=False, heartbeat=60)
    try:
        desktop.activate("GhBeta")
        desktop.activate("GhAlpha")
        samples = pump(c, lambda s: last_window(s).get("app") == "GhAlpha")
        assert last_window(samples)["pid"] == xterms["GhAlpha"]
        assert last_window(samples)["exe"] == XTERM
    finally:
        c.close()


def _set_active(display: str, wid: int) -> None:
    d = xdisplay.Display(display)
    root = d.screen().root
    root.change_property(d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [wid], X.PropModeReplace)
    d.sync()
    d.close()


def test_window_zero_during_a_switch_is_debounced(desktop: Desktop, xterms: dict[str, int]) -> None:
    desktop.activate("GhAlpha")
    wid = desktop.window_of("GhAlpha")
    assert wid is not None
    c = X11WindowCollector(desktop.display, titles=False, heartbeat=60, debounce=1.0)
    try:
        pump(c, lambda s: last_window(s).get("app") == "GhAlpha")
        _set_active(desktop.display, 0)
        select.select([c.fileno()], [], [], 2)
        assert c.poll(time.time()) == []  # saw window 0, but does not believe it yet
        _set_active(desktop.display, wid)
        time.sleep(1.2)  # past the debounce
        select.select([c.fileno()], [], [], 1)
        samples = c.poll(time.time())
        assert all(s.attrs for s in samples)  # no "nothing focused" blip
        _set_active(desktop.display, 0)  # and now it stays at 0
        samples = pump(c, lambda s: any(not x.attrs for x in s), timeout=5)
        assert samples[-1].attrs == {}
    finally:
        c.close()
        desktop.activate("GhAlpha")


def test_no_busy_poll_when_nothing_happens(desktop: Desktop, xterms: dict[str, int]) -> None:
    c = X11WindowCollector(desktop.display, titles=True, heartbeat=120)
    try:
        pump(c, lambda s: bool(s))
        assert c.next_wakeup() > time.time() + 100  # sleeps until the heartbeat
        readable, _, _ = select.select([c.fileno()], [], [], 0.5)
        assert readable == []  # and nothing wakes it
    finally:
        c.close()


def test_idle_reaches_the_threshold_then_input_makes_it_active(desktop: Desktop) -> None:
    c = x11_idle_collector(desktop.display, threshold=1.0, heartbeat=60, idle_check=0.2)
    try:
        desktop.xdotool("mousemove", "100", "100")
        samples = pump(c, lambda s: bool(s) and s[-1].attrs == {"state": "idle"}, timeout=10)
        idle_at = next(s.time for s in samples if s.attrs == {"state": "idle"})
        desktop.xdotool("mousemove", "200", "200")
        moved = time.time()
        samples = pump(c, lambda s: bool(s) and s[-1].attrs == {"state": "active"}, timeout=5)
        active = next(s for s in samples if s.attrs == {"state": "active"})
        assert idle_at < active.time <= moved + 0.5
    finally:
        c.close()
