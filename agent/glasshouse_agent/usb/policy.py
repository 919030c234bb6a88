"""The `usb` section of the policy (docs/agent-protocol.md, "Device control ..."), parsed
strictly, and the one function that decides what happens to a device under it.

`decide()` is the reference: the USBGuard rules made by `rules.py` say the same thing in
USBGuard's language (the tests check that the daemon reaches the same verdict), and the sysfs
fallback calls `decide()` directly."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from glasshouse_agent.policy import Policy, PolicyError

Verdict = Literal["allowed", "blocked", "read_only"]
ClassVerdict = Literal["allow", "block", "read_only"]

# Interface classes (bInterfaceClass) of each policy class. Hubs (09) are always allowed so
# that the devices behind them can be reached; everything not listed is "other".
CLASS_CODES: dict[str, tuple[int, ...]] = {
    "storage": (0x08,),
    "mtp": (0x06,),
    "printer": (0x07,),
    "network": (0x02, 0x0A, 0xE0),
    "hid": (0x03,),
}
CLASSES = (*CLASS_CODES, "other")
HUB_CLASS = 0x09
# A keyboard interface: HID (03) with protocol 01, boot (subclass 01) or not (00).
KEYBOARD_INTERFACES = ((0x03, 0x00, 0x01), (0x03, 0x01, 0x01))

_HEX4 = re.compile(r"[0-9a-f]{4}")
_BASE32 = re.compile(r"[A-Z2-7]+=*")
MAX_SERIAL = 126  # a USB string descriptor holds at most 126 UTF-16 characters
MAX_LABEL = 256
MAX_ENTRIES = 1000

Interface = tuple[int, int, int]  # (class, subclass, protocol)


@dataclass(frozen=True)
class DeviceMatch:
    """A device by VID:PID and, when `serial` is not empty, by serial number."""

    vid: str
    pid: str
    serial: str = ""

    def matches(self, vid: str, pid: str, serial: str) -> bool:
        return self.vid == vid and self.pid == pid and (not self.serial or self.serial == serial)


@dataclass(frozen=True)
class AllowEntry(DeviceMatch):
    label: str = ""


@dataclass(frozen=True)
class TemporaryEntry(DeviceMatch):
    until: float = 0.0  # UTC epoch seconds
    request: int | None = None  # the server's request id; None for an offline code
    offline: bool = False

    @property
    def key(self) -> str:
        origin = f"request:{self.request}" if self.request is not None else "offline"
        return f"{origin}:{self.vid}:{self.pid}:{self.serial}:{int(self.until)}"


@dataclass(frozen=True)
class UsbPolicy:
    version: int = 0
    classes: dict[str, ClassVerdict] = field(default_factory=lambda: dict.fromkeys(CLASSES, "allow"))
    block_unknown_keyboards: bool = False
    allow: tuple[AllowEntry, ...] = ()
    temporary: tuple[TemporaryEntry, ...] = ()
    offline_key: bytes = b""  # never logged, never shown to the user

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"UsbPolicy(version={self.version}, classes={self.classes}, keyboards={self.block_unknown_keyboards})"

    def active_temporary(self, now: float, extra: Iterable[TemporaryEntry] = ()) -> list[TemporaryEntry]:
        return [t for t in (*self.temporary, *extra) if t.until > now]


def parse_usb(section: Any) -> UsbPolicy | None:
    """The `usb` section as a UsbPolicy; None when the server does not manage USB (an empty or
    absent section: an older server). Anything malformed raises PolicyError naming the field."""
    if section is None or section == {}:
        return None
    if not isinstance(section, dict):
        raise PolicyError("usb", "must be an object")
    version = section.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise PolicyError("usb.version", "must be an integer >= 0")
    classes_doc = section.get("classes", {})
    if not isinstance(classes_doc, dict):
        raise PolicyError("usb.classes", "must be an object")
    classes: dict[str, ClassVerdict] = {}
    for name in CLASSES:
        value = classes_doc.get(name, "allow")
        allowed: tuple[str, ...] = ("allow", "block", "read_only") if name == "storage" else ("allow", "block")
        if value not in allowed:
            raise PolicyError(f"usb.classes.{name}", f"must be one of {', '.join(allowed)}")
        classes[name] = value
    unknown = sorted(set(classes_doc) - set(CLASSES))
    if unknown:
        raise PolicyError(f"usb.classes.{unknown[0]}", f"unknown class (known: {', '.join(CLASSES)})")
    keyboards = section.get("block_unknown_keyboards", False)
    if not isinstance(keyboards, bool):
        raise PolicyError("usb.block_unknown_keyboards", "must be true or false")
    allow = tuple(_allow_entry(entry, f"usb.allow[{i}]") for i, entry in enumerate(_list(section, "allow")))
    _no_duplicates(allow, "usb.allow")
    temporary = tuple(
        _temporary_entry(entry, f"usb.temporary[{i}]") for i, entry in enumerate(_list(section, "temporary"))
    )
    return UsbPolicy(
        version=version,
        classes=classes,
        block_unknown_keyboards=keyboards,
        allow=allow,
        temporary=temporary,
        offline_key=_offline_key(section.get("offline_key", "")),
    )


def usb_policy_of(policy: Policy) -> UsbPolicy | None:
    return parse_usb(policy.usb)


def read_only_storage(policy: Policy | UsbPolicy | None) -> bool:
    """True when USB mass storage is to be mounted read-only (the removable-media control
    remounts it; USBGuard only allows the device). A policy whose `usb` section does not parse
    counts as not read-only here: the USB control keeps its previous rules in that case."""
    if isinstance(policy, Policy):
        try:
            policy = parse_usb(policy.usb)
        except PolicyError:
            return False
    return policy is not None and policy.classes["storage"] == "read_only"


def class_of(code: int) -> str:
    if code == HUB_CLASS:
        return "hub"
    for name, codes in CLASS_CODES.items():
        if code in codes:
            return name
    return "other"


def device_class(interfaces: Iterable[Interface]) -> str:
    """One class for a device, for events: the first of storage, mtp, printer, network, hid,
    other that it presents; a hub is "other" on the wire."""
    present = {class_of(i[0]) for i in interfaces}
    for name in CLASSES:
        if name in present:
            return name
    return "other"


def decide(
    policy: UsbPolicy,
    vid: str,
    pid: str,
    serial: str,
    interfaces: Iterable[Interface],
    *,
    now: float,
    grants: Iterable[TemporaryEntry] = (),
) -> tuple[Verdict, str]:
    """The verdict for a device and the class it is reported under. Order (the first that
    applies wins): hubs; temporary access (policy or offline code) and the allow list; unknown
    keyboards; then the strictest verdict among the classes of its interfaces."""
    ifaces = list(dict.fromkeys(interfaces))
    kind = device_class(ifaces)
    if ifaces and all(i[0] == HUB_CLASS for i in ifaces):
        return "allowed", "other"
    if any(t.matches(vid, pid, serial) for t in policy.active_temporary(now, grants)):
        return "allowed", kind
    if any(a.matches(vid, pid, serial) for a in policy.allow):
        return "allowed", kind
    if policy.block_unknown_keyboards and any(i in KEYBOARD_INTERFACES for i in ifaces):
        return "blocked", "hid"
    names = [class_of(i[0]) for i in ifaces] or ["other"]
    for name in CLASSES:
        if name in names and policy.classes[name] == "block":
            return "blocked", name
    if "storage" in names and policy.classes["storage"] == "read_only":
        return "read_only", "storage"
    return "allowed", kind


# -- strict field parsers ----------------------------------------------------------------


def _list(section: dict[str, Any], key: str) -> list[Any]:
    value = section.get(key, [])
    if not isinstance(value, list):
        raise PolicyError(f"usb.{key}", "must be a list")
    if len(value) > MAX_ENTRIES:
        raise PolicyError(f"usb.{key}", f"at most {MAX_ENTRIES} entries")
    return value


def _hex4(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not _HEX4.fullmatch(value):
        raise PolicyError(f"{where}.{key}", "must be 4 lowercase hex digits")
    return value


def _serial(entry: dict[str, Any], where: str) -> str:
    value = entry.get("serial", "")
    if not isinstance(value, str) or len(value) > MAX_SERIAL or any(not " " <= ch <= "~" for ch in value):
        raise PolicyError(f"{where}.serial", f"must be printable ASCII, at most {MAX_SERIAL} characters")
    return value


def _allow_entry(entry: Any, where: str) -> AllowEntry:
    if not isinstance(entry, dict):
        raise PolicyError(where, "must be an object")
    label = entry.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise PolicyError(f"{where}.label", f"must be a string of at most {MAX_LABEL} characters")
    return AllowEntry(_hex4(entry, "vid", where), _hex4(entry, "pid", where), _serial(entry, where), label)


def _temporary_entry(entry: Any, where: str) -> TemporaryEntry:
    if not isinstance(entry, dict):
        raise PolicyError(where, "must be an object")
    request = entry.get("request")
    if isinstance(request, bool) or not isinstance(request, int) or request < 1:
        raise PolicyError(f"{where}.request", "must be a positive integer")
    until = entry.get("until")
    if isinstance(until, bool) or not isinstance(until, int | float) or until < 0:
        raise PolicyError(f"{where}.until", "must be UTC epoch seconds")
    return TemporaryEntry(
        _hex4(entry, "vid", where), _hex4(entry, "pid", where), _serial(entry, where), float(until), request
    )


def _no_duplicates(entries: tuple[AllowEntry, ...], where: str) -> None:
    seen: dict[tuple[str, str, str], int] = {}
    for i, entry in enumerate(entries):
        key = (entry.vid, entry.pid, entry.serial)
        if key in seen:
            raise PolicyError(f"{where}[{i}]", f"the same device as {where}[{seen[key]}]")
        seen[key] = i


def _offline_key(value: Any) -> bytes:
    if value == "":
        return b""  # offline codes disabled for this device
    if not isinstance(value, str) or len(value) < 16 or not _BASE32.fullmatch(value.upper()):
        raise PolicyError("usb.offline_key", "must be base32, at least 16 characters")
    text = value.upper().rstrip("=")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise PolicyError("usb.offline_key", "must be base32") from exc
