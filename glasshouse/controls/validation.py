"""The rules for control policies, in one place: forms, pages, the agent API and the actions
all check input here, so a policy refused on one path is refused on every path in the same
words. Each check returns normalised input or raises ValidationError({field: message}), and
the actions call them before writing anything, so a refused change leaves the policy in force
untouched.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError

from glasshouse.controls.models import RuleAction, RuleKind, UsbClass, Verdict
from glasshouse.org.models import WEEKDAYS

HEX4 = re.compile(r"^[0-9a-f]{4}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# A USB string descriptor holds at most 126 characters; agents accept printable ASCII only.
MAX_SERIAL = 126
MAX_NAME = 256
# Agents refuse a list longer than this (browsers read at most 1,000 entries per list).
MAX_ENTRIES = 1000
MAX_LABEL = 100
MAX_URL = 1024
MAX_APP_NAME = 255
MAX_APP_PATH = 1024
REQUEST_MINUTES = (5, 1440)
REQUEST_REASON = (10, 500)
OFFLINE_MINUTES = (5, 7 * 1440)
MAX_NOTE = 500


def _clean(text: str) -> str:
    return text.replace("\x00", "").strip()


# --- USB -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowEntry:
    vid: str
    pid: str
    serial: str = ""
    label: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vid, self.pid, self.serial)

    @property
    def display(self) -> str:
        return f"{self.vid}:{self.pid}" + (f" serial {self.serial}" if self.serial else " (any serial)")


@dataclass(frozen=True)
class UsbSettings:
    classes: dict[str, str] = field(default_factory=lambda: dict.fromkeys(UsbClass.values, Verdict.ALLOW.value))
    block_unknown_keyboards: bool = False
    track_files: bool = False
    allow: tuple[AllowEntry, ...] = ()


def check_hex4(value: str, name: str) -> str:
    """A USB vendor or product id: 4 hex digits, returned lower case."""
    cleaned = _clean(value).lower().removeprefix("0x")
    if not HEX4.match(cleaned):
        label = "VID" if name.endswith("vid") else "PID"
        raise ValidationError({name: f"{label} must be 4 hex digits (0-9, a-f), e.g. 0781; got {value!r}."})
    return cleaned


def check_allow_entry(entry: AllowEntry, prefix: str = "") -> AllowEntry:
    errors: dict[str, str] = {}
    vid = pid = ""
    try:
        vid = check_hex4(entry.vid, f"{prefix}vid")
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    try:
        pid = check_hex4(entry.pid, f"{prefix}pid")
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    serial = _clean(entry.serial)
    if len(serial) > MAX_SERIAL:
        errors[f"{prefix}serial"] = f"A serial has at most {MAX_SERIAL} characters."
    elif any(not " " <= c <= "~" for c in serial):
        errors[f"{prefix}serial"] = "A serial is printable ASCII (letters, digits, punctuation, spaces)."
    label = _clean(entry.label)
    if len(label) > MAX_LABEL:
        errors[f"{prefix}label"] = f"A label has at most {MAX_LABEL} characters."
    if errors:
        raise ValidationError(errors)
    return AllowEntry(vid=vid, pid=pid, serial=serial, label=label)


def check_usb(settings: UsbSettings) -> UsbSettings:
    """A whole USB policy: verdicts per class, then the allow list (named allow[N].field)."""
    errors: dict[str, str] = {}
    unknown = set(settings.classes) - set(UsbClass.values)
    if unknown:
        errors["classes"] = (
            f"Unknown device class {sorted(unknown)[0]!r}; the classes are {', '.join(UsbClass.values)}."
        )
    classes: dict[str, str] = {}
    for name in UsbClass.values:
        verdict = settings.classes.get(name, Verdict.ALLOW)
        if verdict not in Verdict.values:
            errors[name] = f"{name}: choose allow, read_only or block."
        elif verdict == Verdict.READ_ONLY and name != UsbClass.STORAGE:
            errors[name] = f"Read-only applies to mass storage only; choose allow or block for {name}."
        classes[name] = verdict
    if len(settings.allow) > MAX_ENTRIES:
        errors["allow"] = f"The allow list holds at most {MAX_ENTRIES} devices."
    entries: list[AllowEntry] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, raw in enumerate(settings.allow):
        try:
            entry = check_allow_entry(raw, prefix=f"allow[{i}].")
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
            continue
        if entry.key in seen:
            errors[f"allow[{i}]"] = f"{entry.display} is on the allow list twice (also entry {seen[entry.key] + 1})."
            continue
        seen[entry.key] = i
        entries.append(entry)
    if errors:
        raise ValidationError(errors)
    return replace(settings, classes=classes, allow=tuple(sorted(entries, key=lambda e: e.key)))


# --- web -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebRuleInput:
    action: str
    kind: str
    value: str
    days: tuple[str, ...] = ()
    start: dt.time | None = None
    end: dt.time | None = None

    @property
    def scheduled(self) -> bool:
        return bool(self.days)

    def describe(self) -> str:
        when = f" on {','.join(self.days)} {self.start:%H:%M}-{self.end:%H:%M}" if self.start and self.end else ""
        return f"{self.action} {self.kind} {self.value}{when}"


def check_domain(value: str, name: str = "value") -> str:
    cleaned = _clean(value).lower().rstrip(".").removeprefix("*.")
    if "://" in cleaned or "/" in cleaned or "?" in cleaned:
        raise ValidationError(
            {
                name: f"Enter a domain such as example.com, without https:// or a path (got {value!r}); "
                "to match a path, choose the kind URL."
            }
        )
    try:
        cleaned = cleaned.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError({name: f"{value!r} is not a valid domain name."}) from None
    if not DOMAIN.match(cleaned):
        raise ValidationError({name: f"{value!r} is not a valid domain name, e.g. example.com."})
    return cleaned


def check_url(value: str, name: str = "value") -> str:
    cleaned = _clean(value)
    parts = urlsplit(cleaned)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            {name: f"A URL rule needs a full URL prefix such as https://example.com/path (got {value!r})."}
        )
    if len(cleaned) > MAX_URL or any(c.isspace() for c in cleaned) or "@" in parts.netloc:
        raise ValidationError({name: f"A URL has no spaces, no user name and at most {MAX_URL} characters."})
    if "#" in cleaned:
        raise ValidationError({name: "Leave out the #fragment: browsers match URLs without it."})
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        raise ValidationError({name: f"{value!r} has an invalid port."}) from None
    # Scheme and host are case-insensitive; the path and query are not.
    host = check_domain(parts.hostname, name)
    return urlunsplit((parts.scheme.lower(), host + port, parts.path, parts.query, parts.fragment))


def check_web_rule(rule: WebRuleInput, categories: Iterable[str], prefix: str = "") -> WebRuleInput:
    errors: dict[str, str] = {}
    if rule.action not in RuleAction.values:
        errors[f"{prefix}action"] = "Choose block or allow."
    value = _clean(rule.value)
    try:
        if rule.kind == RuleKind.DOMAIN:
            value = check_domain(value, f"{prefix}value")
        elif rule.kind == RuleKind.URL:
            value = check_url(value, f"{prefix}value")
        elif rule.kind == RuleKind.CATEGORY:
            known = sorted(categories)
            if value.lower() not in known:
                raise ValidationError(
                    {f"{prefix}value": f"Unknown category {value!r}; the categories are {', '.join(known) or 'none'}."}
                )
            value = value.lower()
        else:
            errors[f"{prefix}kind"] = "Choose domain, url or category."
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    days = tuple(d.strip().lower() for d in rule.days if d.strip())
    start, end = rule.start, rule.end
    if days or start is not None or end is not None:
        bad = [d for d in days if d not in WEEKDAYS]
        if bad:
            errors[f"{prefix}days"] = f"Unknown day {bad[0]!r}; use {', '.join(WEEKDAYS)}."
        elif not days:
            errors[f"{prefix}days"] = "A schedule needs at least one day; leave start and end empty for always."
        if start is None:
            errors[f"{prefix}start"] = "A schedule needs a start time."
        if end is None:
            errors[f"{prefix}end"] = "A schedule needs an end time."
        if start is not None and end is not None and end <= start:
            errors[f"{prefix}end"] = (
                f"The schedule ends at {end:%H:%M}, not after it starts at {start:%H:%M}. Rules do not run "
                "overnight: add two rules instead, e.g. 22:00-23:59 and 00:00-06:00."
            )
        days = tuple(d for d in WEEKDAYS if d in days)
    if errors:
        raise ValidationError(errors)
    return WebRuleInput(action=rule.action, kind=rule.kind, value=value, days=days, start=start, end=end)


def schedules_overlap(a: WebRuleInput, b: WebRuleInput) -> bool:
    if not a.scheduled or not b.scheduled:
        return True  # a rule without a schedule is always in force
    if a.start is None or a.end is None or b.start is None or b.end is None:
        return True
    return bool(set(a.days) & set(b.days)) and a.start < b.end and b.start < a.end


def check_expanded_size(rules: Sequence[WebRuleInput], category_sizes: dict[str, int]) -> None:
    """Agents refuse more than MAX_ENTRIES block (or allow) rules after categories are expanded,
    because browsers would enforce an arbitrary part of a longer list."""
    for action in RuleAction.values:
        count = sum(
            category_sizes.get(r.value, 0) if r.kind == RuleKind.CATEGORY else 1 for r in rules if r.action == action
        )
        if count > MAX_ENTRIES:
            raise ValidationError(
                {
                    "rules": f"These rules {action} {count} sites once categories are expanded; browsers enforce "
                    f"at most {MAX_ENTRIES}. Use fewer or smaller categories."
                }
            )


def check_web_rules(rules: Sequence[WebRuleInput], categories: Iterable[str]) -> tuple[WebRuleInput, ...]:
    """A team's whole rule list: each rule, then no rule twice and no target both blocked and
    allowed at overlapping times (an allow rule for a subdomain or one domain of a blocked
    category is an exception, not a contradiction, and is accepted)."""
    known = list(categories)
    errors: dict[str, str] = {}
    checked: list[tuple[int, WebRuleInput]] = []
    for i, raw in enumerate(rules):
        try:
            checked.append((i, check_web_rule(raw, known, prefix=f"rules[{i}].")))
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
    for n, (i, rule) in enumerate(checked):
        for j, other in checked[:n]:
            if (rule.kind, rule.value) != (other.kind, other.value):
                continue
            if rule == other:
                errors.setdefault(f"rules[{i}]", f"The rule “{rule.describe()}” is there twice (also rule {j + 1}).")
            elif rule.action != other.action and schedules_overlap(rule, other):
                errors.setdefault(
                    f"rules[{i}]",
                    f"{rule.kind} {rule.value} would be both blocked and allowed at the same time "
                    f"(rule {j + 1}: “{other.describe()}”); remove one or give them schedules that do not overlap.",
                )
    if errors:
        raise ValidationError(errors)
    return tuple(rule for _, rule in checked)


# --- categories ------------------------------------------------------------------------------

CATEGORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def check_category_name(name: str) -> str:
    cleaned = _clean(name).lower()
    if not CATEGORY_NAME.match(cleaned):
        raise ValidationError(
            {"name": "A category name is 1-40 lower-case letters, digits or dashes, e.g. file-sharing."}
        )
    return cleaned


# --- apps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppEntry:
    name: str
    path: str = ""

    def describe(self) -> str:
        return f"{self.name}" + (f" ({self.path})" if self.path else "")


def check_app_entry(entry: AppEntry, prefix: str = "") -> AppEntry:
    errors: dict[str, str] = {}
    name = _clean(entry.name)
    path = _clean(entry.path)
    if not name:
        errors[f"{prefix}name"] = "Give the process name, e.g. steam."
    elif len(name) > MAX_APP_NAME:
        errors[f"{prefix}name"] = f"A process name has at most {MAX_APP_NAME} characters."
    elif "/" in name or "\\" in name:
        errors[f"{prefix}name"] = "The name is the program's file name, e.g. steam; put a full path in path."
    if path:
        if len(path) > MAX_APP_PATH:
            errors[f"{prefix}path"] = f"A path has at most {MAX_APP_PATH} characters."
        elif not path.startswith("/"):
            errors[f"{prefix}path"] = (
                f"The path must be absolute, e.g. /usr/games/{name or 'steam'}; or leave it empty."
            )
    if errors:
        raise ValidationError(errors)
    return AppEntry(name=name, path=path)


def check_apps(entries: Sequence[AppEntry]) -> tuple[AppEntry, ...]:
    errors: dict[str, str] = {}
    seen: dict[AppEntry, int] = {}
    out: list[AppEntry] = []
    for i, raw in enumerate(entries):
        try:
            entry = check_app_entry(raw, prefix=f"apps[{i}].")
        except ValidationError as exc:
            errors.update({k: v[0] for k, v in exc.message_dict.items()})
            continue
        if entry in seen:
            errors[f"apps[{i}]"] = f"{entry.describe()} is on the block list twice (also entry {seen[entry] + 1})."
            continue
        seen[entry] = i
        out.append(entry)
    if len(entries) > MAX_ENTRIES:
        errors["apps"] = f"The block list holds at most {MAX_ENTRIES} programs."
    if errors:
        raise ValidationError(errors)
    return tuple(sorted(out, key=lambda e: (e.name, e.path)))


# --- temporary access and offline codes ------------------------------------------------------


@dataclass(frozen=True)
class UsbRequestInput:
    vid: str
    pid: str
    reason: str
    minutes: int
    serial: str = ""
    vendor: str = ""
    product: str = ""


def check_usb_request(data: UsbRequestInput) -> UsbRequestInput:
    errors: dict[str, str] = {}
    try:
        entry = check_allow_entry(AllowEntry(vid=data.vid, pid=data.pid, serial=data.serial))
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
        entry = AllowEntry(vid="", pid="")
    reason = _clean(data.reason)
    low, high = REQUEST_REASON
    if not low <= len(reason) <= high:
        errors["reason"] = f"Say why you need the device, in {low} to {high} characters."
    low, high = REQUEST_MINUTES
    if not low <= data.minutes <= high:
        errors["minutes"] = f"Ask for {low} to {high} minutes."
    for name in ("vendor", "product"):
        if len(getattr(data, name)) > MAX_NAME:
            errors[name] = f"{name} has at most {MAX_NAME} characters."
    if errors:
        raise ValidationError(errors)
    return UsbRequestInput(
        vid=entry.vid,
        pid=entry.pid,
        serial=entry.serial,
        reason=reason,
        minutes=data.minutes,
        vendor=_clean(data.vendor),
        product=_clean(data.product),
    )


def check_note(note: str) -> str:
    cleaned = _clean(note)
    if len(cleaned) > MAX_NOTE:
        raise ValidationError({"note": f"A note has at most {MAX_NOTE} characters."})
    return cleaned


def check_offline_minutes(minutes: int) -> int:
    low, high = OFFLINE_MINUTES
    if not low <= minutes <= high:
        raise ValidationError(
            {"minutes": f"An offline code lasts {low} minutes to {high // 1440} days ({high} minutes)."}
        )
    return minutes
