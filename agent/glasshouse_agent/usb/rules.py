"""The USB policy in USBGuard's rule language. USBGuard takes the first rule that matches, so
the order below is the order of `policy.decide()`:

1. hubs (every interface class 09) are allowed, so the devices behind them can be reached;
2. temporary access and the allow list, by VID:PID and serial;
3. unknown keyboards (an interface 03:00:01 or 03:01:01), when the policy blocks them;
4. each blocked class;
5. the rest: `allow` when "other" is allowed; otherwise devices made only of allowed classes
   are allowed and a final `block` takes everything else.

Every rule is checked with `usbguard-rule-parser` before any is applied."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from glasshouse_agent.usb.device import quote
from glasshouse_agent.usb.policy import (
    CLASS_CODES,
    CLASSES,
    HUB_CLASS,
    KEYBOARD_INTERFACES,
    DeviceMatch,
    TemporaryEntry,
    UsbPolicy,
)

log = logging.getLogger(__name__)

RULE_PARSER = "usbguard-rule-parser"


class RuleError(ValueError):
    """A generated rule that USBGuard's own parser refuses (a bug here, never applied)."""


def _patterns(classes: Iterable[str]) -> list[str]:
    return [f"{code:02x}:*:*" for name in classes for code in CLASS_CODES.get(name, ())]


def _set(items: Sequence[str]) -> str:
    return "{ " + " ".join(items) + " }"


def _device(entry: DeviceMatch) -> str:
    rule = f"allow id {entry.vid}:{entry.pid}"
    if entry.serial:
        rule += f" serial {quote(entry.serial)}"
    return rule


def generate_rules(policy: UsbPolicy, *, now: float, grants: Iterable[TemporaryEntry] = ()) -> list[str]:
    rules = [f"allow with-interface match-all {_set([f'{HUB_CLASS:02x}:*:*'])}"]
    seen: set[str] = set()
    for entry in [*policy.active_temporary(now, grants), *policy.allow]:
        rule = _device(entry)
        if rule not in seen:  # the same device allowed twice needs one rule
            seen.add(rule)
            rules.append(rule)
    if policy.block_unknown_keyboards:
        rules.append(
            f"block with-interface one-of {_set([f'{a:02x}:{b:02x}:{c:02x}' for a, b, c in KEYBOARD_INTERFACES])}"
        )
    blocked = [name for name in CLASS_CODES if policy.classes[name] == "block"]
    if blocked:
        rules.append(f"block with-interface one-of {_set(_patterns(blocked))}")
    if policy.classes["other"] == "block":
        allowed = [name for name in CLASS_CODES if policy.classes[name] != "block"]
        if allowed:
            rules.append(f"allow with-interface match-all {_set([*_patterns(allowed), f'{HUB_CLASS:02x}:*:*'])}")
        rules.append("block")
    else:
        rules.append("allow")
    assert set(policy.classes) == set(CLASSES)
    return rules


def parser_available(parser: str = RULE_PARSER) -> bool:
    return shutil.which(parser) is not None


def validate_rules(rules: Iterable[str], parser: str = RULE_PARSER) -> None:
    """Run each rule through usbguard-rule-parser (exit 1 on a bad rule). Raises RuleError."""
    for rule in rules:
        try:
            result = subprocess.run(  # noqa: S603 - a fixed program, the rule as one argument
                [parser, rule], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuleError(f"cannot run {parser}: {exc}") from exc
        if result.returncode != 0:
            raise RuleError(f"usbguard-rule-parser refused {rule!r}: {result.stdout.strip()} {result.stderr.strip()}")
