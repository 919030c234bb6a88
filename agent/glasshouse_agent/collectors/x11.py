"""X11 backends for the session helper: the active window (class, title, pid, executable) and
idle time. Event-driven: we ask the X server for PropertyNotify on the root window (focus
changes move _NET_ACTIVE_WINDOW) and on the active window (retitles), and the owner select()s
on the connection, so an idle desktop costs nothing but a heartbeat.

Only window properties and the screen saver's idle counter are read. No input is observed:
no input-recording extension, no raw input events, no keyboard grabs."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psutil
from Xlib import X, Xatom, display, error
from Xlib.ext import res
from Xlib.xobject.drawable import Window

from glasshouse_agent.collectors import DisplayGone, IdleCollector
from glasshouse_agent.model import MAX_TITLE_CHARS, Attrs, Sample

log = logging.getLogger(__name__)


def _log_x_error(err: error.XError, request: Any) -> None:
    # Windows vanish between an event and our request all the time; that is not worth stderr.
    log.debug("X error %s for %s", err, request)


def open_display(name: str | None) -> display.Display:
    d = display.Display(name)
    d.set_error_handler(_log_x_error)
    return d


class X11WindowCollector:
    def __init__(
        self,
        display_name: str | None = None,
        *,
        titles: bool,
        heartbeat: float,
        debounce: float = 0.3,
    ) -> None:
        self.titles = titles
        self._heartbeat = heartbeat
        self._debounce = debounce
        self._d = open_display(display_name)
        self._root = self._d.screen().root
        atom = self._d.intern_atom
        self._a_active = atom("_NET_ACTIVE_WINDOW")
        self._a_net_name = atom("_NET_WM_NAME")
        self._a_pid = atom("_NET_WM_PID")
        self._a_utf8 = atom("UTF8_STRING")
        self._has_xres = self._d.has_extension("X-Resource")
        # Which property changes on the active window can change what we report. With titles
        # off, retitles are not even looked at.
        self._watched = {Xatom.WM_CLASS, self._a_pid}
        if titles:
            self._watched |= {Xatom.WM_NAME, self._a_net_name}
        self._root.change_attributes(event_mask=X.PropertyChangeMask)
        self._active: int = 0
        self._state: Attrs | None = None
        self._dirty_focus = True
        self._dirty_props = False
        self._zero_since: float | None = None
        self._last_emit = float("-inf")
        self._last_state: Attrs | None = None
        self._d.flush()

    def fileno(self) -> int:
        return int(self._d.fileno())

    def next_wakeup(self) -> float:
        wake = self._last_emit + self._heartbeat
        if self._zero_since is not None:
            wake = min(wake, self._zero_since + self._debounce)
        if self._dirty_focus or self._dirty_props:
            return float("-inf")
        return wake

    def poll(self, now: float) -> list[Sample]:
        try:
            return self._poll(now)
        except error.ConnectionClosedError as exc:
            raise DisplayGone(str(exc)) from exc

    def _poll(self, now: float) -> list[Sample]:
        # Reading properties is a round trip during which new events can queue up inside
        # python-xlib (not visible on the socket), so drain until nothing is left.
        for _ in range(10):
            self._drain_events()
            if not (self._dirty_focus or self._dirty_props):
                break
            self._refresh(now)
        if self._zero_since is not None and now - self._zero_since >= self._debounce:
            # Focus has really left every window (e.g. the desktop was clicked).
            self._zero_since = None
            self._state = None
            return self._emit(now, {})
        due = self._state != self._last_state or now - self._last_emit >= self._heartbeat
        if self._state is not None and self._zero_since is None and due:
            return self._emit(now, self._state)
        return []

    def _emit(self, now: float, attrs: Attrs) -> list[Sample]:
        self._last_emit = now
        self._last_state = dict(attrs) if attrs else None
        return [Sample("window", now, dict(attrs))]

    def _drain_events(self) -> None:
        while self._d.pending_events():
            ev = self._d.next_event()
            if ev.type != X.PropertyNotify:
                continue
            if ev.window.id == self._root.id and ev.atom == self._a_active:
                self._dirty_focus = True
            elif ev.window.id == self._active and ev.atom in self._watched:
                self._dirty_props = True

    def _refresh(self, now: float) -> None:
        if self._dirty_focus:
            self._dirty_focus = False
            wid = self._active_window_id()
            if wid == 0:
                # Window managers report "no window" for an instant during a switch: wait for
                # the debounce before believing it.
                if self._zero_since is None:
                    self._zero_since = now
                return
            self._zero_since = None
            if wid != self._active:
                self._active = wid
                self._dirty_props = True
                win = self._d.create_resource_object("window", wid)
                # Our own event mask on someone else's window; harmless if it is gone already.
                win.change_attributes(event_mask=X.PropertyChangeMask, onerror=error.CatchError())
        if self._dirty_props:
            self._dirty_props = False
            self._state = self._read_state(self._active)

    def _active_window_id(self) -> int:
        prop = self._root.get_full_property(self._a_active, X.AnyPropertyType)
        if prop is None or not len(prop.value):
            return 0
        return int(prop.value[0])

    def _read_state(self, wid: int) -> Attrs | None:
        win = self._d.create_resource_object("window", wid)
        try:
            attrs: Attrs = {}
            wm_class = win.get_wm_class()
            pid = self._pid(win)
            exe = _exe(pid) if pid else None
            app = (wm_class[1] or wm_class[0]) if wm_class else None
            if not app and exe:
                app = exe.rsplit("/", 1)[-1]
            attrs["app"] = app or "unknown"
            if exe:
                attrs["exe"] = exe
            if pid:
                attrs["pid"] = pid
            if self.titles:
                title = self._title(win)
                if title is not None:
                    attrs["title"] = title
            return attrs
        except (error.BadWindow, error.BadDrawable, error.BadValue):
            return None  # closed while we looked; the next focus event tells us what came next

    def _pid(self, win: Window) -> int | None:
        prop = win.get_full_property(self._a_pid, Xatom.CARDINAL)
        if prop is not None and len(prop.value):
            return int(prop.value[0])
        if not self._has_xres:
            return None
        # Clients that do not set _NET_WM_PID: ask the X server which local process owns the
        # connection that created the window.
        reply = self._d.res_query_client_ids([{"client": win.id, "mask": res.LocalClientPIDMask}])
        for cid in reply.ids:
            if cid.spec.mask == res.LocalClientPIDMask and cid.value:
                return int(cid.value[0])
        return None

    def _title(self, win: Window) -> str | None:
        """Only ever called when the policy allows titles."""
        prop = win.get_full_property(self._a_net_name, X.AnyPropertyType)
        if prop is None or not prop.value:
            # xterm sets only WM_NAME; xdotool writes it as STRING.
            prop = win.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
        if prop is None:
            return None
        value = prop.value
        if isinstance(value, str):
            text = value
        else:
            raw = bytes(value)
            # STRING is latin-1 by the book, but many clients (xdotool among them) put UTF-8
            # there; bytes that decode as UTF-8 almost never were meant as latin-1.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8" if prop.property_type == self._a_utf8 else "latin-1", errors="replace")
        return text[:MAX_TITLE_CHARS]

    def close(self) -> None:
        with contextlib.suppress(error.ConnectionClosedError, OSError):
            self._d.close()


def _exe(pid: int) -> str | None:
    try:
        return psutil.Process(pid).exe() or None
    except (psutil.Error, OSError):
        return None  # another user's process, or gone already


def x11_idle_collector(
    display_name: str | None = None, *, threshold: float, heartbeat: float, idle_check: float = 1.0
) -> IdleCollector:
    """Idle time from the MIT-SCREEN-SAVER extension: milliseconds since the last input event,
    as a number. Nothing about the input itself is visible through it."""
    d = open_display(display_name)
    if not d.has_extension("MIT-SCREEN-SAVER"):
        d.close()
        raise RuntimeError("the X server lacks the MIT-SCREEN-SAVER extension; idle time is unavailable")
    root = d.screen().root

    def read() -> float:
        try:
            return float(root.screensaver_query_info().idle) / 1000.0
        except error.ConnectionClosedError as exc:
            raise DisplayGone(str(exc)) from exc

    def close() -> None:
        with contextlib.suppress(error.ConnectionClosedError, OSError):  # the display may be gone
            d.close()

    return IdleCollector(read, threshold=threshold, heartbeat=heartbeat, idle_check=idle_check, on_close=close)
