"""Glasshouse never records keystroke content: no input-capturing API may appear in the agent."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glasshouse_agent"
# X11 input recording, Windows keyboard hooks and key-state polling, macOS event taps, pynput.
FORBIDDEN = re.compile(
    r"XRecord|record_create_context|XInput|XIGrab|SetWindowsHookEx|GetAsyncKeyState|GetKeyState|"
    r"CGEventTapCreate|NSEvent\.addGlobalMonitor|pynput|keyboard\.Listener|on_press"
)


def test_agent_source_uses_no_input_capture_api() -> None:
    hits = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert hits == []


def test_the_check_catches_a_keyboard_hook() -> None:
    assert FORBIDDEN.search("user32.SetWindowsHookExW(WH_KEYBOARD_LL, proc, None, 0)")
    assert FORBIDDEN.search("from Xlib.ext import record; d.record_create_context(0, ...)")
