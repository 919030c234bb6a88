"""The fallback without USBGuard: kernel USB authorisation through sysfs (`authorized_default`
per bus, `authorized` per device), here on a sysfs-like tree in a temporary directory (the
layout of the kernel and of the umockdev testbed). Simulated: the kernel's side of it (a file
write has no effect on a real device here, and a "new" device is a directory we create)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.usb import UsbControl, UsbOptions
from tests.conftest import make_policy
from tests.usbmock import KEYBOARD, MOUSE, STICK, add_sysfs_device, make_sysfs_tree, remove_sysfs_device, wait_until

USB1 = Path("devices/pci0000:00/0000:00:14.0/usb1")


def events(spool: Path) -> list[dict[str, Any]]:
    if not spool.exists():
        return []
    db = sqlite3.connect(spool)
    try:
        return [json.loads(a) for (a,) in db.execute("SELECT attrs FROM spans WHERE kind = 'usb' ORDER BY id")]
    finally:
        db.close()


def attr(root: Path, port: str, name: str) -> str:
    return (root / "bus" / "usb" / "devices" / port / name).read_text().strip()


@pytest.fixture
def sysfs(tmp_path: Path) -> Iterator[tuple[Path, UsbControl, Path]]:
    root = make_sysfs_tree(tmp_path / "sys", {"1-1": KEYBOARD, "1-2": STICK})
    spool = tmp_path / "spool.sqlite3"
    ctl = UsbControl(
        UsbOptions(socket_path=str(tmp_path / "usb.sock"), backend="sysfs", sysfs_root=str(root), poll_seconds=0.2),
        spool_path=str(spool),
    )
    ctl.start()
    yield root, ctl, spool
    ctl.stop()


def test_sysfs_fallback_authorises_per_device(sysfs: tuple[Path, UsbControl, Path]) -> None:
    root, ctl, spool = sysfs
    usb: dict[str, Any] = {
        "version": 4,
        "classes": {
            "storage": "block",
            "mtp": "allow",
            "printer": "allow",
            "network": "allow",
            "hid": "allow",
            "other": "allow",
        },
        "block_unknown_keyboards": True,
        "allow": [],
        "temporary": [],
        "offline_key": "",
    }
    ctl.set_policy(make_policy(usb=usb))
    wait_until(lambda: attr(root, "1-2", "authorized") == "0", 10, "the stick to be deauthorised")
    assert attr(root, "1-1", "authorized") == "0"  # an unknown keyboard
    assert attr(root, "usb1", "authorized_default") == "0"  # new devices wait for the agent
    assert attr(root, "usb1", "authorized") == "1"
    # A new device arrives unauthorised (authorized_default 0) and the agent decides.
    add_sysfs_device(root, "1-3", MOUSE)
    assert attr(root, "1-3", "authorized") == "0"
    wait_until(lambda: attr(root, "1-3", "authorized") == "1", 10, "the mouse to be authorised")
    remove_sysfs_device(root, "1-3")
    wait_until(lambda: any(e["action"] == "remove" for e in events(spool)), 10, "the remove event")
    got = [(e["action"], e.get("port"), e.get("verdict")) for e in events(spool)]
    assert ("policy", None, None) in got
    assert ("insert", "1-3", "allowed") in got
    assert ("remove", "1-3", "allowed") in got
    mouse = next(e for e in events(spool) if e["action"] == "insert")
    assert (mouse["vendor"], mouse["product"], mouse["class"]) == ("Logitech", "USB Optical Mouse", "hid")
    # Allowing storage again re-authorises the present stick.
    ctl.set_policy(make_policy(usb={**usb, "version": 5, "classes": {**usb["classes"], "storage": "allow"}}))
    wait_until(lambda: attr(root, "1-2", "authorized") == "1", 10, "the stick to be authorised")
    assert attr(root, "1-1", "authorized") == "0"
