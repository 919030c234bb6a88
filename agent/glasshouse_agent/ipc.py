"""The local channel between the per-user session helper and the system service: a Unix stream
socket carrying one JSON object per line. The service learns who is talking from the kernel
(SO_PEERCRED), not from anything the helper says, and records that uid with the spans.

service -> helper: {"type": "policy", "policy": {...} | null}   (on connect and on change)
service -> helper: {"type": "notify", "title": "...", "body": "..."}   (shown to the user)
helper -> service: {"type": "sample", "sample": {"kind", "time", "attrs"}}"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

# A sample is a few hundred bytes; a longer line is a broken or hostile peer.
MAX_LINE = 64 * 1024
DEFAULT_SOCKET = "/run/glasshouse-agent/session.sock"


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """The peer's pid/uid/gid as the kernel saw them at connect() (Linux SO_PEERCRED)."""
    fmt = "3i"
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt))
    pid, uid, gid = struct.unpack(fmt, raw)
    return PeerCred(pid, uid, gid)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class LineReader:
    """Splits a byte stream into JSON messages; raises ValueError on an oversized line."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_LINE or any(len(line) > MAX_LINE for line in lines):
            raise ValueError("line too long")
        return [json.loads(line) for line in lines if line.strip()]
