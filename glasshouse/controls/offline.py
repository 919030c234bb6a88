"""Offline USB access codes (docs/agent-protocol.md, "Temporary USB access").

A code is `<until>-<vid><pid>-<mac>`:
- `until`: the UTC epoch minute (seconds // 60) at which access ends, in lowercase base 36;
- `mac`: the first 10 characters of base32(HMAC-SHA256(base32-decoded offline key,
  "<until>:<vid>:<pid>:<serial>")), upper case, where `<until>` is the same base-36 text as in
  the code and `serial` is empty for any serial of that model.

Pure functions with no Django, so the agent team can mirror them line by line; the agent's
own implementation lives in `agent/` and is deliberately not imported here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAC_LENGTH = 10


def new_offline_key() -> str:
    """20 random bytes, base32: exactly 32 characters, no padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def to_base36(number: int) -> str:
    if number < 0:
        raise ValueError("negative")
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if number == 0:
            return out


def offline_code(key: str, until_minute: int, vid: str, pid: str, serial: str = "") -> str:
    until = to_base36(until_minute)
    message = f"{until}:{vid}:{pid}:{serial}".encode()
    digest = hmac.new(base64.b32decode(key), message, hashlib.sha256).digest()
    mac = base64.b32encode(digest).decode().upper()[:MAC_LENGTH]
    return f"{until}-{vid}{pid}-{mac}"
