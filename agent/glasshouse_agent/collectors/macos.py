"""macOS backend, written against documented APIs through ctypes (no PyObjC dependency):
NSWorkspace.sharedWorkspace.frontmostApplication (pid, name, executable URL) via the
Objective-C runtime, and CGEventSourceSecondsSinceLastEventType for idle time. NOT exercised on
a real Mac: the tests drive it with a fake Objective-C runtime.

Known limits, stated in the README: window titles are not collected on macOS (they need the
Accessibility or Screen Recording permission), and NSWorkspace refreshes frontmostApplication
from the run loop, which a plain helper process does not spin; a real port should observe
NSWorkspaceDidActivateApplicationNotification on a run loop instead of polling."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, Protocol

from glasshouse_agent.collectors import IdleCollector, PollingWindowCollector
from glasshouse_agent.model import Attrs

# CGEventSourceStateID.hidSystemState and kCGAnyInputEventType (~0): time since any input.
K_CG_HID_SYSTEM_STATE = 1
K_CG_ANY_INPUT_EVENT_TYPE = 0xFFFFFFFF


class ObjCRuntime(Protocol):
    def get_class(self, name: str) -> int: ...

    def send(self, obj: int, selector: str, restype: Any = ctypes.c_void_p) -> Any: ...

    def seconds_since_input(self) -> float: ...


class CtypesObjC:
    """The real runtime: libobjc's objc_msgSend cast to the exact prototype of each call (on
    arm64 calling it as a variadic function is wrong)."""

    def __init__(self) -> None:
        objc_path = ctypes.util.find_library("objc")
        if objc_path is None:
            raise OSError("libobjc not found: this backend needs macOS")
        self._objc = ctypes.cdll.LoadLibrary(objc_path)
        ctypes.cdll.LoadLibrary("/System/Library/Frameworks/AppKit.framework/AppKit")
        self._cg = ctypes.cdll.LoadLibrary("/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics")
        self._objc.objc_getClass.restype = ctypes.c_void_p
        self._objc.objc_getClass.argtypes = [ctypes.c_char_p]
        self._objc.sel_registerName.restype = ctypes.c_void_p
        self._objc.sel_registerName.argtypes = [ctypes.c_char_p]
        self._cg.CGEventSourceSecondsSinceLastEventType.restype = ctypes.c_double
        self._cg.CGEventSourceSecondsSinceLastEventType.argtypes = [ctypes.c_int32, ctypes.c_uint32]

    def get_class(self, name: str) -> int:
        return int(self._objc.objc_getClass(name.encode()) or 0)

    def send(self, obj: int, selector: str, restype: Any = ctypes.c_void_p) -> Any:
        proto = ctypes.CFUNCTYPE(restype, ctypes.c_void_p, ctypes.c_void_p)
        fn = proto(ctypes.cast(self._objc.objc_msgSend, ctypes.c_void_p).value or 0)
        return fn(obj, self._objc.sel_registerName(selector.encode()))

    def seconds_since_input(self) -> float:
        return float(self._cg.CGEventSourceSecondsSinceLastEventType(K_CG_HID_SYSTEM_STATE, K_CG_ANY_INPUT_EVENT_TYPE))


class MacApi:
    def __init__(self, runtime: ObjCRuntime) -> None:
        self.rt = runtime

    def _string(self, nsstring: int | None) -> str | None:
        if not nsstring:
            return None
        raw = self.rt.send(nsstring, "UTF8String", ctypes.c_char_p)
        return raw.decode("utf-8", errors="replace") if raw else None

    def frontmost(self) -> Attrs | None:
        """The frontmost application. Titles are never read on this backend."""
        workspace = self.rt.send(self.rt.get_class("NSWorkspace"), "sharedWorkspace")
        app = self.rt.send(workspace, "frontmostApplication") if workspace else None
        if not app:
            return None
        pid = int(self.rt.send(app, "processIdentifier", ctypes.c_int))
        name = self._string(self.rt.send(app, "localizedName"))
        url = self.rt.send(app, "executableURL")
        exe = self._string(self.rt.send(url, "path")) if url else None
        attrs: Attrs = {"app": name or (os.path.basename(exe) if exe else "unknown")}
        if exe:
            attrs["exe"] = exe
        if pid > 0:
            attrs["pid"] = pid
        return attrs

    def idle_seconds(self) -> float:
        return self.rt.seconds_since_input()


def macos_window_collector(api: MacApi, *, heartbeat: float) -> PollingWindowCollector:
    return PollingWindowCollector(api.frontmost, heartbeat=heartbeat)


def macos_idle_collector(api: MacApi, *, threshold: float, heartbeat: float) -> IdleCollector:
    return IdleCollector(api.idle_seconds, threshold=threshold, heartbeat=heartbeat)
