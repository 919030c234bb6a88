"""USB control wired into the service: the policy fetched from the (in-test) server reaches the
USB thread, `usb` events travel to the server in batches, and session helpers, which any local
user can run, never receive the device's offline key. Enforcement here is the sysfs fallback
on a temporary tree (the USBGuard path is covered in test_usb_usbguard.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glasshouse_agent.service import Service
from glasshouse_agent.uplink import Uplink
from glasshouse_agent.usb import UsbOptions
from tests.conftest import policy_doc
from tests.fakeserver import FakeServer
from tests.usbmock import MOUSE, STICK, add_sysfs_device, make_sysfs_tree, wait_until

KEY_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def sockdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="gha-usb-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_usb_policy_from_the_server_is_enforced_and_events_are_uploaded(
    tmp_path: Path, sockdir: str, server: FakeServer
) -> None:
    root = make_sysfs_tree(tmp_path / "sys", {"1-2": STICK})
    usb = {
        "version": 9,
        "classes": {
            "storage": "block",
            "mtp": "allow",
            "printer": "allow",
            "network": "allow",
            "hid": "allow",
            "other": "allow",
        },
        "block_unknown_keyboards": False,
        "allow": [],
        "temporary": [],
        "offline_key": KEY_B32,
    }
    server.set_policy(policy_doc(usb=usb, upload={"max_batch_spans": 1000, "max_batch_seconds": 0.2}))
    device_id, key = server.add_device()
    service = Service(
        spool_path=str(tmp_path / "spool.sqlite3"),
        socket_path=os.path.join(sockdir, "session.sock"),
        uplink=Uplink(server.url, device_id, key),
        utmp_path=str(tmp_path / "no-utmp"),
        policy_interval=0.2,
        checkpoint_seconds=0.2,
        usb=UsbOptions(
            socket_path=os.path.join(sockdir, "usb.sock"), backend="sysfs", sysfs_root=str(root), poll_seconds=0.2
        ),
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    try:
        assert service.ready.wait(10)
        stick = root / "bus" / "usb" / "devices" / "1-2" / "authorized"
        wait_until(lambda: stick.read_text().strip() == "0", 15, "the stick to be blocked")
        add_sysfs_device(root, "1-3", MOUSE)

        def uploaded() -> list[dict[str, object]]:
            with server.lock:
                batches = list(server.state.batches.values())
            return [e for b in batches for e in b.get("events", []) if e.get("kind") == "usb"]

        wait_until(lambda: any(e.get("action") == "insert" for e in uploaded()), 20, "the insert event upload")
        events = uploaded()
        assert {k: v for k, v in events[0].items() if k != "time"} == {"kind": "usb", "action": "policy", "version": 9}
        insert = next(e for e in events if e.get("action") == "insert")
        assert (insert["port"], insert["verdict"], insert["class"]) == ("1-3", "allowed", "hid")

        # A session helper (any local user may connect) gets the policy without the offline key.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as helper:
            helper.settimeout(10)
            helper.connect(os.path.join(sockdir, "session.sock"))
            data = b""
            while b"\n" not in data:
                data += helper.recv(65536)
        sent = json.loads(data.split(b"\n")[0])
        assert sent["type"] == "policy"
        assert sent["policy"]["usb"]["version"] == 9
        assert "offline_key" not in sent["policy"]["usb"]
        assert KEY_B32 not in data.decode()
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert not os.path.exists(os.path.join(sockdir, "usb.sock"))
