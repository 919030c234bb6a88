"""A STAND-IN for ActivityWatch's watchers, used only by tools/footprint.py. NOT ActivityWatch's code.

aw-watcher-window and aw-watcher-afk are not installable here (not on PyPI, not in Debian), so
the footprint benchmark feeds aw-server the heartbeats they would send for the same desktop,
from this script, with ActivityWatch's own client library (aw-client, from PyPI) doing the
queueing, pre-merging and HTTP exactly as it does for the real watchers:

* `window`: every --poll seconds (aw-watcher-window's default: 1 s) read _NET_ACTIVE_WINDOW,
  then that window's WM_CLASS (the class part) and _NET_WM_NAME / WM_NAME with python-xlib,
  and send `heartbeat(bucket, {"app", "title"}, pulsetime=poll + 1, queued=True)`.
* `afk`: every --poll seconds (aw-watcher-afk's default: 5 s) read the seconds since the last
  input and send `heartbeat(bucket, {"status": "afk" | "not-afk"}, pulsetime=timeout + poll,
  queued=True)`, two heartbeats at a change of state. The real watcher learns the last input
  on X11 from pynput's input listeners (the RECORD extension, woken by every input event);
  this stand-in asks the MIT-SCREEN-SAVER idle counter instead (no pynput here), which is
  what Glasshouse's helper reads too. So it does not show the cost of watching every input
  event.

Runs in the aw-server virtualenv (aw-client, aw-core, python-xlib), one process per watcher as
ActivityWatch runs them:  /tmp/aw-venv/bin/python tools/aw_standin.py window --port 5666
Stops on SIGTERM."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import socket
import threading
from typing import Any

from aw_client import ActivityWatchClient  # type: ignore[import-not-found]  # only in the aw venv
from aw_core.models import Event  # type: ignore[import-not-found]  # only in the aw venv
from Xlib import X, Xatom, display, error

STOP = threading.Event()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _X:
    def __init__(self) -> None:
        self.d = display.Display()
        self.root = self.d.screen().root
        self.active = self.d.intern_atom("_NET_ACTIVE_WINDOW")
        self.net_name = self.d.intern_atom("_NET_WM_NAME")
        self.utf8 = self.d.intern_atom("UTF8_STRING")

    def current_window(self) -> dict[str, str] | None:
        prop = self.root.get_full_property(self.active, X.AnyPropertyType)
        if prop is None or not prop.value or int(prop.value[0]) == 0:
            return None
        win = self.d.create_resource_object("window", int(prop.value[0]))
        try:
            cls = win.get_wm_class()
            name = win.get_full_property(self.net_name, self.utf8)
            if name is not None and name.format == 8:
                title = bytes(name.value).decode("utf8", "replace")
            else:
                old = win.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
                title = bytes(old.value).decode("latin1") if old is not None else ""
        except error.XError:
            return None
        return {"app": cls[1] if cls else "unknown", "title": title}

    def seconds_since_input(self) -> float:
        return float(self.root.screensaver_query_info().idle) / 1000.0


def watch_window(client: Any, bucket: str, x: _X, poll: float) -> None:
    while not STOP.is_set():
        data = x.current_window()
        if data is not None:
            client.heartbeat(bucket, Event(timestamp=_now(), data=data), pulsetime=poll + 1.0, queued=True)
        STOP.wait(poll)


def watch_afk(client: Any, bucket: str, x: _X, poll: float, timeout: float) -> None:
    afk = False

    def ping(is_afk: bool, at: dt.datetime, duration: float = 0.0) -> None:
        event = Event(timestamp=at, duration=duration, data={"status": "afk" if is_afk else "not-afk"})
        client.heartbeat(bucket, event, pulsetime=timeout + poll, queued=True)

    while not STOP.is_set():
        now = _now()
        idle = x.seconds_since_input()
        last_input = now - dt.timedelta(seconds=idle)
        if afk != (idle >= timeout):
            # A change of state: close the old state at the last input, open the new one there.
            ping(afk, last_input)
            afk = not afk
            ping(afk, last_input, idle if afk else 0.0)
        else:
            ping(afk, last_input, idle if afk else 0.0)
        STOP.wait(poll)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("watcher", choices=["window", "afk"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poll", type=float, help="seconds between polls (default: the real watcher's)")
    parser.add_argument("--timeout", type=float, default=180.0, help="afk: seconds without input before AFK")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())

    name = f"aw-watcher-{args.watcher}"
    client = ActivityWatchClient(name, host=args.host, port=args.port)
    bucket = f"{name}_{socket.gethostname()}"
    x = _X()
    if args.watcher == "afk" and not x.d.has_extension("MIT-SCREEN-SAVER"):
        raise SystemExit("the X server lacks MIT-SCREEN-SAVER")
    client.create_bucket(bucket, "currentwindow" if args.watcher == "window" else "afkstatus", queued=True)
    client.wait_for_start()
    with client:
        if args.watcher == "window":
            watch_window(client, bucket, x, args.poll or 1.0)
        else:
            watch_afk(client, bucket, x, args.poll or 5.0, args.timeout)


if __name__ == "__main__":
    main()
