"""The command-line side of `usb-unlock` and `usb-request`: one JSON line to the service's USB
socket, one JSON line back. The user may be unprivileged; the service learns who asks from
the kernel (SO_PEERCRED), and only the service holds the device key and the offline key."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

USB_SOCKET_ENV = "GLASSHOUSE_AGENT_USB_SOCKET"
USB_SOCKET_NAME = "usb.sock"


def usb_socket_path(session_socket: str, explicit: str | None = None) -> str:
    """Beside the session socket unless told otherwise."""
    return (
        explicit
        or os.environ.get(USB_SOCKET_ENV)
        or os.path.join(os.path.dirname(os.path.abspath(session_socket)), USB_SOCKET_NAME)
    )


def ask(path: str, request: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data) if data.strip() else None
    if not isinstance(answer, dict):
        raise ValueError("the service gave no answer")
    return answer
