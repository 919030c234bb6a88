"""Collectors that cannot run for real here: the Windows and macOS backends driven by fakes of
their OS calls (written from the API documentation), plus the shared idle/polling logic and
the utmp reader on written utmp files."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from glasshouse_agent.collectors import IdleCollector, PollingWindowCollector
from glasshouse_agent.collectors.macos import MacApi, macos_idle_collector, macos_window_collector
from glasshouse_agent.collectors.utmp import DEAD_PROCESS, USER_PROCESS, UtmpCollector, UtmpRecord, pack_utmp, read_utmp
from glasshouse_agent.collectors.win32 import LASTINPUTINFO, Win32Api, win32_idle_collector, win32_window_collector
from glasshouse_agent.model import Sample

# -- Windows --------------------------------------------------------------------------------


class FakeUser32:
    """user32 as documented: GetWindowThreadProcessId writes the pid through its pointer,
    GetWindowTextW copies at most nMaxCount-1 characters plus a NUL into the buffer."""

    def __init__(self) -> None:
        self.hwnd = 0x1234
        self.windows = {0x1234: (4321, "Quarterly report.xlsx - Excel")}
        self.last_input_tick = 0
        self.text_reads = 0

    def GetForegroundWindow(self) -> int:
        return self.hwnd

    def GetWindowThreadProcessId(self, hwnd: int, pid_ptr: Any) -> int:
        pid_ptr.contents.value = self.windows[hwnd][0]
        return 99

    def GetWindowTextLengthW(self, hwnd: int) -> int:
        return len(self.windows[hwnd][1])

    def GetWindowTextW(self, hwnd: int, buf: Any, n: int) -> int:
        self.text_reads += 1
        text = self.windows[hwnd][1][: n - 1]
        buf.value = text
        return len(text)

    def GetLastInputInfo(self, info_ptr: Any) -> int:
        assert info_ptr.contents.cbSize == ctypes.sizeof(LASTINPUTINFO)
        info_ptr.contents.dwTime = self.last_input_tick
        return 1


class FakeKernel32:
    def __init__(self) -> None:
        self.tick = 0

    def GetTickCount(self) -> int:
        return self.tick


def win_api() -> tuple[Win32Api, FakeUser32, FakeKernel32]:
    user32, kernel32 = FakeUser32(), FakeKernel32()
    exes = {4321: "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE"}
    return Win32Api(user32, kernel32, exe_of=exes.get), user32, kernel32


def test_win32_foreground_window_with_title() -> None:
    api, _, _ = win_api()
    assert api.foreground(titles=True) == {
        "app": "EXCEL",
        "exe": "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE",
        "pid": 4321,
        "title": "Quarterly report.xlsx - Excel",
    }


def test_win32_title_is_never_read_when_policy_forbids_it() -> None:
    api, user32, _ = win_api()
    attrs = api.foreground(titles=False)
    assert attrs is not None
    assert "title" not in attrs
    assert user32.text_reads == 0


def test_win32_no_foreground_window() -> None:
    api, user32, _ = win_api()
    user32.hwnd = 0
    assert api.foreground(titles=True) is None


def test_win32_idle_survives_the_49_day_tick_wrap() -> None:
    api, user32, kernel32 = win_api()
    user32.last_input_tick = 0xFFFFFFFF - 999  # 1 s before the wrap
    kernel32.tick = 2000  # 2 s after it
    assert api.idle_seconds() == pytest.approx(3.0)


def test_win32_collectors_follow_focus_and_idle() -> None:
    api, user32, kernel32 = win_api()
    window = win32_window_collector(api, titles=False, heartbeat=4)
    assert window.poll(0)[0].attrs["app"] == "EXCEL"
    user32.windows[0x9] = (4321, "Other")
    user32.hwnd = 0x9
    assert window.poll(1) == []  # same app, titles off: the same state
    idle = win32_idle_collector(api, threshold=60, heartbeat=4)
    kernel32.tick = 120_000
    assert idle.poll(0)[0].attrs == {"state": "idle"}


# -- macOS ----------------------------------------------------------------------------------


class FakeObjC:
    """NSWorkspace / NSRunningApplication / NSURL / NSString as ids in a table."""

    def __init__(self) -> None:
        self.objects: dict[int, dict[str, Any]] = {
            1: {"sharedWorkspace": 2},
            2: {"frontmostApplication": 3},
            3: {"processIdentifier": 777, "localizedName": 4, "executableURL": 5},
            4: {"UTF8String": b"Safari"},
            5: {"path": 6},
            6: {"UTF8String": b"/Applications/Safari.app/Contents/MacOS/Safari"},
        }
        self.idle = 12.5
        self.selectors: list[str] = []

    def get_class(self, name: str) -> int:
        assert name == "NSWorkspace"
        return 1

    def send(self, obj: int, selector: str, restype: Any = ctypes.c_void_p) -> Any:
        self.selectors.append(selector)
        return self.objects[obj][selector]

    def seconds_since_input(self) -> float:
        return self.idle


def test_macos_frontmost_application_and_idle() -> None:
    rt = FakeObjC()
    api = MacApi(rt)
    assert api.frontmost() == {"app": "Safari", "exe": "/Applications/Safari.app/Contents/MacOS/Safari", "pid": 777}
    assert not any("title" in s.lower() or "window" in s.lower() for s in rt.selectors)
    assert macos_window_collector(api, heartbeat=4).poll(0)[0].attrs["app"] == "Safari"
    assert macos_idle_collector(api, threshold=10, heartbeat=4).poll(0)[0].attrs == {"state": "idle"}


def test_macos_no_frontmost_application() -> None:
    rt = FakeObjC()
    rt.objects[2]["frontmostApplication"] = 0
    assert MacApi(rt).frontmost() is None


# -- shared collector logic -----------------------------------------------------------------


def test_idle_collector_dates_transitions_and_sleeps_until_the_threshold() -> None:
    idle = [0.0]
    c = IdleCollector(lambda: idle[0], threshold=60, heartbeat=4, idle_check=1)
    assert c.poll(100) == [Sample("idle", 100, {"state": "active"})]
    assert c.next_wakeup() == 104  # heartbeat before the threshold could be crossed
    idle[0] = 3.0
    assert c.poll(104) == [Sample("idle", 104, {"state": "active"})]
    idle[0] = 58.0
    c.poll(159)
    assert c.next_wakeup() == 161  # threshold crossed in 2 s: wake then, not before
    idle[0] = 65.0
    # Idle began when the threshold was crossed, 5 s ago.
    assert c.poll(166) == [Sample("idle", 161, {"state": "idle"}), Sample("idle", 166, {"state": "idle"})]
    assert c.next_wakeup() == 167  # while idle, look each second for input
    idle[0] = 0.4
    assert c.poll(170) == [Sample("idle", 169.6, {"state": "active"}), Sample("idle", 170, {"state": "active"})]


def test_polling_window_collector_emits_changes_at_once_and_heartbeats() -> None:
    state: list[dict[str, str | int] | None] = [{"app": "a"}]
    c = PollingWindowCollector(lambda: state[0], heartbeat=4, interval=1)
    assert c.poll(0) == [Sample("window", 0, {"app": "a"})]
    assert c.poll(1) == []
    assert c.poll(4) == [Sample("window", 4, {"app": "a"})]
    state[0] = {"app": "b"}
    assert c.poll(5) == [Sample("window", 5, {"app": "b"})]
    state[0] = None
    assert c.poll(6) == [Sample("window", 6, {})]  # nothing focused: close the span
    assert c.poll(20) == []


# -- utmp -----------------------------------------------------------------------------------


def write_utmp(path: Path, records: list[UtmpRecord]) -> None:
    path.write_bytes(b"".join(pack_utmp(r) for r in records))


def test_utmp_logins_and_logouts_from_a_written_file(tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    alice = UtmpRecord(USER_PROCESS, 100, "pts/1", "alice", "10.0.0.5", 1000.5)
    bob = UtmpRecord(USER_PROCESS, 200, "tty2", "bob", "", 1100.0)
    write_utmp(path, [alice])
    known: list[list[str]] = []
    c = UtmpCollector(str(path), on_known_change=known.append)
    assert c.poll(2000) == [Sample("session", 1000.5, {"event": "login", "user": "alice"})]
    assert c.poll(2001) == []  # unchanged file: not even parsed again
    write_utmp(path, [UtmpRecord(DEAD_PROCESS, 100, "pts/1", "", "", 1500.0), bob])
    os.utime(path, ns=(0, 10**18))
    assert c.poll(2002) == [
        Sample("session", 1100.0, {"event": "login", "user": "bob"}),
        Sample("session", 1500.0, {"event": "logout", "user": "alice"}),
    ]
    # A restart with the persisted set reports only what changed meanwhile.
    again = UtmpCollector(str(path), known=known[-1])
    assert again.poll(3000) == []


def test_utmp_layout_matches_glibc_as_read_by_psutil(tmp_path: Path) -> None:
    """psutil.users() reads the system utmp through glibc; on a machine without one, write it,
    compare, and remove it again."""
    system = "/var/run/utmp"
    if os.path.exists(system) or os.geteuid() != 0:
        pytest.skip("needs root and no system utmp in use (cross-check writes /var/run/utmp)")
    records = [
        UtmpRecord(USER_PROCESS, 4242, "pts/7", "alice", "10.0.0.5", 1764162000.25),
        UtmpRecord(DEAD_PROCESS, 4243, "pts/8", "", "", 1764162001.0),
    ]
    try:
        write_utmp(Path(system), records)
        users = psutil.users()
        assert list(read_utmp(system)) == records
    finally:
        os.unlink(system)
    seen: list[tuple[object, ...]] = [(u.name, u.terminal, u.host, u.pid, u.started) for u in users]
    assert seen == [("alice", "pts/7", "10.0.0.5", 4242, 1764162000.0)]
