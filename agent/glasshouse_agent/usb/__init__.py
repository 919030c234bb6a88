"""USB device control (docs/agent-protocol.md, "Device control ..."): the `usb` policy section
turned into USBGuard rules (sysfs authorisation where USBGuard is missing), `usb` events,
temporary access and offline access codes. See agent/README.md, "USB device control"."""

from typing import Any

from glasshouse_agent.usb.control import UsbControl, UsbOptions
from glasshouse_agent.usb.policy import UsbPolicy, decide, parse_usb, read_only_storage

__all__ = ["UsbControl", "UsbOptions", "UsbPolicy", "decide", "for_helpers", "parse_usb", "read_only_storage"]


def for_helpers(doc: dict[str, Any]) -> dict[str, Any]:
    """A policy document as session helpers may see it: without `usb.offline_key`. Any local
    user can connect to the session socket, and whoever holds the key can make access codes."""
    usb = doc.get("usb")
    if isinstance(usb, dict) and "offline_key" in usb:
        return {**doc, "usb": {k: v for k, v in usb.items() if k != "offline_key"}}
    return doc
