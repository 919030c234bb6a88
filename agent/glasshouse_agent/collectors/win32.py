"""Windows backend, written against the documented user32/kernel32 APIs through ctypes:
GetForegroundWindow, GetWindowThreadProcessId, GetWindowTextLengthW/GetWindowTextW and
GetLastInputInfo with GetTickCount. NOT exercised on real Windows: the tests drive this code
with fake DLL objects that behave as the documentation says. Nothing here hooks input
(no input hooks, no key-state polling); GetLastInputInfo yields only a timestamp."""

from __future__ import annotations

import ctypes
import ntpath
from collections.abc import Callable
from typing import Any

import psutil

from glasshouse_agent.collectors import IdleCollector, PollingWindowCollector
from glasshouse_agent.model import MAX_TITLE_CHARS, Attrs

DWORD = ctypes.c_uint32


class LASTINPUTINFO(ctypes.Structure):
    _fields_ = [("cbSize", ctypes.c_uint32), ("dwTime", DWORD)]


def _exe_of(pid: int) -> str | None:
    try:
        return psutil.Process(pid).exe() or None
    except (psutil.Error, OSError):
        return None


class Win32Api:
    def __init__(self, user32: Any, kernel32: Any, *, exe_of: Callable[[int], str | None] = _exe_of) -> None:
        self.user32 = user32
        self.kernel32 = kernel32
        self.exe_of = exe_of

    @classmethod
    def load(cls) -> Win32Api:
        windll: Any = ctypes.WinDLL  # type: ignore[attr-defined,unused-ignore]
        user32, kernel32 = windll("user32", use_last_error=True), windll("kernel32", use_last_error=True)
        user32.GetForegroundWindow.restype = ctypes.c_void_p
        user32.GetForegroundWindow.argtypes = []
        user32.GetWindowThreadProcessId.restype = DWORD
        user32.GetWindowThreadProcessId.argtypes = [ctypes.c_void_p, ctypes.POINTER(DWORD)]
        user32.GetWindowTextLengthW.restype = ctypes.c_int
        user32.GetWindowTextLengthW.argtypes = [ctypes.c_void_p]
        user32.GetWindowTextW.restype = ctypes.c_int
        user32.GetWindowTextW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p, ctypes.c_int]
        user32.GetLastInputInfo.restype = ctypes.c_int
        user32.GetLastInputInfo.argtypes = [ctypes.POINTER(LASTINPUTINFO)]
        kernel32.GetTickCount.restype = DWORD
        kernel32.GetTickCount.argtypes = []
        return cls(user32, kernel32)

    def foreground(self, *, titles: bool) -> Attrs | None:
        hwnd = self.user32.GetForegroundWindow()
        if not hwnd:
            return None  # the desktop, a UAC prompt or a locked workstation
        pid = DWORD(0)
        self.user32.GetWindowThreadProcessId(hwnd, ctypes.pointer(pid))
        attrs: Attrs = {}
        exe = self.exe_of(pid.value) if pid.value else None
        attrs["app"] = ntpath.basename(exe).removesuffix(".exe").removesuffix(".EXE") if exe else "unknown"
        if exe:
            attrs["exe"] = exe
        if pid.value:
            attrs["pid"] = pid.value
        if titles:
            length = min(int(self.user32.GetWindowTextLengthW(hwnd)), MAX_TITLE_CHARS)
            if length > 0:
                buf = ctypes.create_unicode_buffer(length + 1)
                if self.user32.GetWindowTextW(hwnd, buf, length + 1) > 0:
                    attrs["title"] = buf.value
        return attrs

    def idle_seconds(self) -> float:
        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(LASTINPUTINFO)
        if not self.user32.GetLastInputInfo(ctypes.pointer(info)):
            raise OSError("GetLastInputInfo failed")
        # Both are 32-bit millisecond tick counts that wrap every 49.7 days; unsigned
        # subtraction modulo 2**32 stays right across the wrap.
        now = int(self.kernel32.GetTickCount())
        return ((now - int(info.dwTime)) & 0xFFFFFFFF) / 1000.0


def win32_window_collector(api: Win32Api, *, titles: bool, heartbeat: float) -> PollingWindowCollector:
    return PollingWindowCollector(lambda: api.foreground(titles=titles), heartbeat=heartbeat)


def win32_idle_collector(api: Win32Api, *, threshold: float, heartbeat: float) -> IdleCollector:
    return IdleCollector(api.idle_seconds, threshold=threshold, heartbeat=heartbeat)
