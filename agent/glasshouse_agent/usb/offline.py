"""Offline access codes (docs/agent-protocol.md, "Temporary USB access"): IT makes one in the
web UI for this device, a USB device and a duration; the user types it into
`glasshouse-agent usb-unlock CODE`, and the agent checks it without the server.

    CODE = <until>-<vid><pid>-<mac>
    until = the UTC epoch minute at which access ends, in base 36
    mac   = first 10 characters of base32(HMAC-SHA256(base32-decoded usb.offline_key,
            "<until>:<vid>:<pid>:<serial>")), upper case

`<until>` in the message is the base-36 text of the code (lower case here; an upper-case code
is accepted too), `vid`/`pid` are 4 lowercase hex digits, `serial` is the device's serial or
empty for any device of that model."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

_CODE = re.compile(r"([0-9a-z]{1,13})-([0-9a-f]{4})([0-9a-f]{4})-([a-z2-7]{10})")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class CodeError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedCode:
    until_text: str  # as typed, lower case
    until: float  # UTC epoch seconds
    vid: str
    pid: str
    mac: str  # upper case


def base36(number: int) -> str:
    if number < 0:
        raise ValueError("negative")
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if number == 0:
            return out


def mac(key: bytes, until_text: str, vid: str, pid: str, serial: str) -> str:
    message = f"{until_text}:{vid}:{pid}:{serial}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:10].upper()


def make_code(key: bytes, until_minute: int, vid: str, pid: str, serial: str = "") -> str:
    """What the server does (here for tests and as the reference for the protocol text)."""
    until_text = base36(until_minute)
    return f"{until_text}-{vid}{pid}-{mac(key, until_text, vid, pid, serial)}"


def parse_code(code: str) -> ParsedCode:
    text = code.strip().lower().replace(" ", "")
    m = _CODE.fullmatch(text)
    if m is None:
        raise CodeError("not an access code (expected UNTIL-VIDPID-CODE, e.g. 1b2c3d-07815567-ABCDEFGHIJ)")
    until_text, vid, pid, tag = m.groups()
    return ParsedCode(until_text, float(int(until_text, 36) * 60), vid, pid, tag.upper())


def check(key: bytes, parsed: ParsedCode, serial: str) -> bool:
    """Does the code's mac match this device serial (or "" for any serial)? Constant time."""
    if not key:
        return False
    # The protocol signs the lower-case base-36 text; parse_code() lower-cases what was typed.
    return hmac.compare_digest(mac(key, parsed.until_text, parsed.vid, parsed.pid, serial), parsed.mac)
