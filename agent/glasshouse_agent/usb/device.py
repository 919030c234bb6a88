"""A USB device as the agent sees it, read either from USBGuard's device rules (`usbguard
list-devices`, `usbguard watch`) or from sysfs (the raw `descriptors` attribute, which the
kernel fills in even for a device it has not authorised)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from glasshouse_agent.usb.policy import Interface

# USB descriptor types
_INTERFACE = 4


@dataclass(frozen=True)
class Device:
    vid: str
    pid: str
    serial: str
    product: str
    port: str  # the kernel's name for where it is plugged in ("1-2", "3-1.4")
    interfaces: tuple[Interface, ...]
    vendor: str = ""
    target: str = ""  # USBGuard's current target (allow/block/reject) or "allow"/"block" from sysfs
    id: int | None = None  # USBGuard's device id


def parse_descriptors(raw: bytes) -> tuple[Interface, ...]:
    """Interface (class, subclass, protocol) triples from a sysfs `descriptors` blob: the
    device descriptor followed by the configuration descriptors with everything nested."""
    out: list[Interface] = []
    pos = 0
    while pos + 2 <= len(raw):
        length, kind = raw[pos], raw[pos + 1]
        if length < 2:
            break  # malformed: never loop forever
        if kind == _INTERFACE and length >= 9 and pos + 9 <= len(raw):
            triple = (raw[pos + 5], raw[pos + 6], raw[pos + 7])
            if triple not in out:
                out.append(triple)
        pos += length
    return tuple(out)


# -- USBGuard's rule language, as far as reading device rules needs it -------------------

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(\{)|(\})|([^\s{}"]+))')


def _unquote(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and i + 3 < len(text):
                try:
                    out.append(chr(int(text[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                except ValueError:
                    pass
            out.append({"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(rule: str) -> list[str | list[str]]:
    """Words, quoted strings (unescaped) and { ... } sets (as lists)."""
    tokens: list[str | list[str]] = []
    current: list[str] | None = None
    pos = 0
    rule = rule.strip()
    while pos < len(rule):
        m = _TOKEN.match(rule, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read USBGuard rule at {pos}: {rule!r}")
        pos = m.end()
        quoted, opening, closing, word = m.groups()
        if opening:
            current = []
        elif closing:
            if current is None:
                raise ValueError(f"unbalanced }} in {rule!r}")
            tokens.append(current)
            current = None
        else:
            value = _unquote(quoted) if quoted is not None else word
            if current is not None:
                current.append(value)
            else:
                tokens.append(value)
    return tokens


def _interface(text: str) -> Interface:
    a, b, c = text.split(":")
    return (int(a, 16), int(b, 16), int(c, 16))


def parse_device_rule(rule: str, device_id: int | None = None) -> Device:
    """A device rule as USBGuard prints it: `allow id 0781:5567 serial "..." name "..."
    hash "..." parent-hash "..." via-port "1-2" with-interface { 08:06:50 } ...`."""
    tokens = tokenize(rule)
    if not tokens or not isinstance(tokens[0], str):
        raise ValueError(f"not a device rule: {rule!r}")
    attrs: dict[str, str | list[str]] = {}
    i = 1
    while i + 1 < len(tokens):
        key = tokens[i]
        if not isinstance(key, str):
            raise ValueError(f"unexpected set in {rule!r}")
        attrs[key] = tokens[i + 1]
        i += 2
    ident = attrs.get("id", "")
    if not isinstance(ident, str) or ":" not in ident:
        raise ValueError(f"device rule without id: {rule!r}")
    vid, pid = ident.lower().split(":", 1)
    ifaces = attrs.get("with-interface", [])
    iface_list = [ifaces] if isinstance(ifaces, str) else ifaces

    def text(key: str) -> str:
        value = attrs.get(key, "")
        return value if isinstance(value, str) else ""

    return Device(
        vid=vid,
        pid=pid,
        serial=text("serial"),
        product=text("name"),
        port=text("via-port"),
        interfaces=tuple(_interface(x) for x in iface_list),
        target=tokens[0],
        id=device_id,
    )


def quote(value: str) -> str:
    """A string in USBGuard's rule language."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            for byte in ch.encode():
                out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)


# -- sysfs ---------------------------------------------------------------------------------

_DEVICE_NAME = re.compile(r"(?:usb\d+|\d+-\d+(?:\.\d+)*)")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def sysfs_devices_dir(sysfs_root: str) -> str:
    return os.path.join(sysfs_root, "bus", "usb", "devices")


def read_sysfs_device(sysfs_root: str, name: str) -> Device | None:
    """The device at /sys/bus/usb/devices/NAME (a root hub `usbN` or a port like `1-2.3`)."""
    if not _DEVICE_NAME.fullmatch(name):
        return None
    path = os.path.join(sysfs_devices_dir(sysfs_root), name)
    vid, pid = _read(os.path.join(path, "idVendor")).lower(), _read(os.path.join(path, "idProduct")).lower()
    if not vid or not pid:
        return None
    try:
        with open(os.path.join(path, "descriptors"), "rb") as f:
            interfaces = parse_descriptors(f.read())
    except OSError:
        interfaces = ()
    authorized = _read(os.path.join(path, "authorized"))
    return Device(
        vid=vid,
        pid=pid,
        serial=_read(os.path.join(path, "serial")),
        product=_read(os.path.join(path, "product")),
        port=name,
        interfaces=interfaces,
        vendor=_read(os.path.join(path, "manufacturer")),
        target="block" if authorized == "0" else "allow",
    )


def sysfs_vendor(sysfs_root: str, port: str) -> str:
    """The manufacturer string of the device on `port`, if sysfs has it."""
    if not _DEVICE_NAME.fullmatch(port):
        return ""
    return _read(os.path.join(sysfs_devices_dir(sysfs_root), port, "manufacturer"))


def list_sysfs(sysfs_root: str) -> list[str]:
    try:
        names = os.listdir(sysfs_devices_dir(sysfs_root))
    except OSError:
        return []
    return sorted(n for n in names if _DEVICE_NAME.fullmatch(n))
