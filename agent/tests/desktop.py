"""A real X desktop for tests: Xvfb on a display it picks itself, openbox, xterms driven by
xdotool. Standard library and pytest only, so the server's end-to-end tests (e2e/) can use the
same harness from the server's virtualenv. Missing tools skip with the reason, except under
CI=true where they fail: CI installs them (scripts/setup-agent-test-deps.sh)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

X_TOOLS = ("Xvfb", "openbox", "xdotool", "xterm", "xprop")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    reason = f"missing {', '.join(missing)} (run scripts/setup-agent-test-deps.sh as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class Desktop:
    """A real X display with a window manager; spawn xterms and drive them with xdotool."""

    display: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    def xdotool(self, *args: str) -> str:
        out = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, timeout=10, check=False)
        return out.stdout.decode()

    def window_of(self, cls: str) -> int | None:
        ids = self.xdotool("search", "--class", cls).split()
        return int(ids[0]) if ids else None

    def xterm(self, cls: str, title: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["xterm", "-class", cls, "-title", title, "-e", "sleep", "600"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        wait_for(lambda: self.window_of(cls) is not None, timeout=15)
        return proc

    def activate(self, cls: str) -> None:
        self.xdotool("search", "--class", cls, "windowactivate", "--sync")

    def retitle(self, cls: str, title: str) -> None:
        self.xdotool("search", "--class", cls, "set_window", "--name", title)


def _start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    # -displayfd: the server picks a free display and tells us; never a fixed number.
    r, w = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    data = b""
    deadline = time.monotonic() + 20
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        chunk = os.read(r, 16)
        if not chunk:
            break
        data += chunk
    os.close(r)
    if not data.strip():
        proc.kill()
        raise RuntimeError("Xvfb did not report a display")
    return proc, ":" + data.decode().strip()


def _wm_ready(display: str) -> bool:
    """openbox has taken over once the root window names a supporting window manager."""
    out = subprocess.run(
        ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        timeout=10,
        check=False,
    )
    return b"window id" in out.stdout


@contextlib.contextmanager
def running_desktop() -> Iterator[Desktop]:
    require_tools(*X_TOOLS)
    xvfb, display = _start_xvfb()
    desk = Desktop(display)
    try:
        wm = subprocess.Popen(["openbox"], env=desk.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        desk.procs.append(wm)
        wait_for(lambda: _wm_ready(display), timeout=15)
        yield desk
    finally:
        for proc in reversed(desk.procs):
            proc.terminate()
        for proc in desk.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        xvfb.terminate()
        xvfb.wait(timeout=10)
