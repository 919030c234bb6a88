"""The policy's `web` section, parsed strictly, and which of its rules are in force at a moment.

```json
{"full_urls": false,
 "rules": [{"action": "block", "kind": "domain", "value": "facebook.com",
            "schedule": {"days": ["mon"], "start": "09:00", "end": "17:00", "time_zone": "Europe/London"}},
           {"action": "allow", "kind": "url", "value": "https://www.youtube.com/@company"}]}
```

A section with any fault is refused whole (`PolicyError` naming the rule and field, e.g.
`web.rules[2].schedule.end`), and the caller keeps the rules it had. Refused: unknown actions
or kinds, `category` rules (the server expands categories into domain rules), domains that are
not host names, URLs that are not http(s) or carry a fragment or credentials, schedules that
end before they start (split an overnight window into two rules), and the same domain or URL
both blocked and allowed at overlapping times.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from glasshouse_agent.policy import DAY_NAMES, PolicyError

Action = Literal["block", "allow"]
RuleKind = Literal["domain", "url"]

# Chromium and Chrome read at most 1,000 entries of URLBlocklist and of URLAllowlist and ignore
# the rest; refusing more is better than enforcing an arbitrary part of the list.
MAX_RULES_PER_ACTION = 1000
MAX_URL_CHARS = 1024
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class WebSchedule:
    """Rule hours: on `days`, from `start` (inclusive) to `end` (exclusive), on the wall clock
    of `time_zone`. `end` is after `start`: a rule's window never crosses midnight."""

    days: tuple[str, ...]
    start: str
    end: str
    time_zone: str

    def active_at(self, when: float) -> bool:
        local = dt.datetime.fromtimestamp(when, ZoneInfo(self.time_zone))
        hhmm = f"{local.hour:02d}:{local.minute:02d}"
        return DAY_NAMES[local.weekday()] in self.days and self.start <= hhmm < self.end

    def overlaps(self, other: WebSchedule) -> bool:
        """Could both be active at once? Exact for one time zone; schedules in two different
        zones count as overlapping when they share a day (a conservative answer)."""
        if not set(self.days) & set(other.days):
            return False
        if self.time_zone != other.time_zone:
            return True
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class WebRule:
    action: Action
    kind: RuleKind
    value: str  # normalised: a lower-case ASCII host name, or an http(s) URL with a lower-case host
    schedule: WebSchedule | None = None  # None: always

    def in_force(self, when: float) -> bool:
        return self.schedule is None or self.schedule.active_at(when)


@dataclass(frozen=True)
class WebPolicy:
    full_urls: bool = False
    rules: tuple[WebRule, ...] = ()

    def in_force(self, when: float) -> tuple[WebRule, ...]:
        return tuple(rule for rule in self.rules if rule.in_force(when))

    @property
    def scheduled(self) -> bool:
        """Does any rule come and go with the clock?"""
        return any(rule.schedule is not None for rule in self.rules)

    @property
    def blocks(self) -> bool:
        return any(rule.action == "block" for rule in self.rules)


def parse_web(section: Any) -> WebPolicy:
    """The `web` section ({} or absent: no rules, domains only)."""
    if section is None:
        return WebPolicy()
    if not isinstance(section, dict):
        raise PolicyError("web", "must be an object")
    full_urls = section.get("full_urls", False)
    if not isinstance(full_urls, bool):
        raise PolicyError("web.full_urls", "must be true or false")
    raw_rules = section.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PolicyError("web.rules", "must be a list")
    rules: list[WebRule] = []
    seen: dict[tuple[str, str, WebSchedule | None], int] = {}
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, f"web.rules[{index}]")
        for other_index, other in enumerate(rules):
            same = (other.kind, other.value) == (rule.kind, rule.value) and other.action != rule.action
            if same and _overlap(other.schedule, rule.schedule):
                raise PolicyError(
                    f"web.rules[{index}]",
                    f"{rule.action}s {rule.value} while web.rules[{other_index}] {other.action}s it "
                    "at overlapping times",
                )
        key = (rule.action, rule.value, rule.schedule)
        if key in seen:
            continue  # an exact duplicate changes nothing
        seen[key] = index
        rules.append(rule)
    for action in ("block", "allow"):
        count = sum(1 for rule in rules if rule.action == action)
        if count > MAX_RULES_PER_ACTION:
            raise PolicyError(
                "web.rules",
                f"{count} {action} rules: browsers enforce at most {MAX_RULES_PER_ACTION} per list",
            )
    return WebPolicy(full_urls=full_urls, rules=tuple(rules))


def _overlap(a: WebSchedule | None, b: WebSchedule | None) -> bool:
    return a is None or b is None or a.overlaps(b)


def _rule(raw: Any, where: str) -> WebRule:
    if not isinstance(raw, dict):
        raise PolicyError(where, "must be an object")
    action = raw.get("action")
    if action not in ("block", "allow"):
        raise PolicyError(f"{where}.action", "must be block or allow")
    kind = raw.get("kind")
    if kind == "category":
        raise PolicyError(f"{where}.kind", "category rules must be expanded into domain rules by the server")
    if kind not in ("domain", "url"):
        raise PolicyError(f"{where}.kind", "must be domain or url")
    value = raw.get("value")
    if not isinstance(value, str):
        raise PolicyError(f"{where}.value", "must be a string")
    try:
        normal = normalize_domain(value) if kind == "domain" else normalize_url(value)
    except ValueError as exc:
        raise PolicyError(f"{where}.value", str(exc)) from exc
    schedule = _schedule(raw.get("schedule"), f"{where}.schedule")
    return WebRule(action=action, kind=kind, value=normal, schedule=schedule)


def _schedule(raw: Any, where: str) -> WebSchedule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError(where, "must be an object")
    days = raw.get("days", list(DAY_NAMES[:5]))
    if not isinstance(days, list) or not days or any(day not in DAY_NAMES for day in days):
        raise PolicyError(f"{where}.days", f"must be a non-empty list of {', '.join(DAY_NAMES)}")
    times = {}
    for key in ("start", "end"):
        value = raw.get(key)
        if not isinstance(value, str) or not _HHMM.match(value):
            raise PolicyError(f"{where}.{key}", "must be HH:MM (00:00-23:59)")
        times[key] = value
    if times["end"] <= times["start"]:
        raise PolicyError(
            f"{where}.end",
            f"{times['end']} is not after {times['start']}: a schedule must end after it starts "
            "(split an overnight window into two rules)",
        )
    zone = raw.get("time_zone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PolicyError(f"{where}.time_zone", f"unknown time zone {zone!r}") from exc
    ordered = tuple(day for day in DAY_NAMES if day in days)
    return WebSchedule(days=ordered, start=times["start"], end=times["end"], time_zone=str(zone))


def normalize_domain(value: str) -> str:
    """A host name as rules and spans carry it: lower case, ASCII (IDNA), no trailing dot.
    Raises ValueError for anything else (schemes, paths, ports, wildcards, spaces)."""
    host = value.strip().lower().rstrip(".")
    if not host:
        raise ValueError("must be a domain such as example.com")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{value!r} is not a valid domain") from exc
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise ValueError(f"{value!r} is not a domain such as example.com (no scheme, path, port or wildcard)")
    return host


def normalize_url(value: str) -> str:
    """An http(s) URL prefix with a lower-case host. Raises ValueError otherwise."""
    text = value.strip()
    if len(text) > MAX_URL_CHARS:
        raise ValueError(f"longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a URL") from exc
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    if parts.fragment or "#" in text:
        raise ValueError("must not contain a #fragment (browsers ignore it)")
    if any(ch.isspace() for ch in text):
        raise ValueError("must not contain spaces")
    host = normalize_domain(parts.hostname or "")
    netloc = host if port is None else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def domain_of(url: str) -> str | None:
    """The host name of an http(s) URL, normalised; None for other schemes or bad URLs."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None
        return normalize_domain(parts.hostname or "")
    except ValueError:
        return None
