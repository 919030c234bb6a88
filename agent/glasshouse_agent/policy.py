"""The monitoring policy the server hands to this device, parsed strictly, and the one place that
decides whether a kind of data may be collected now. Both the session helper (before it reads
anything) and the service (before it stores anything) ask it, so a misbehaving helper still
cannot get disallowed data into the spool."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from glasshouse_agent.model import MAX_TITLE_CHARS, Kind, Sample

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The attributes a browser span may carry, with their longest length.
BROWSER_DOMAIN = {"domain": 253}
BROWSER_FULL = {"domain": 253, "url": 1024, "title": MAX_TITLE_CHARS}
# The protocol's hard limit per batch; a policy cannot raise it.
PROTOCOL_MAX_BATCH_SPANS = 1000


class PolicyError(ValueError):
    """A policy document we refuse to apply; `field` names the offending key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True)
class Schedule:
    mode: str = "always"  # "always" | "working_hours"
    time_zone: str = "UTC"
    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: str = "09:00"
    end: str = "17:00"

    def active_at(self, when: float) -> bool:
        """True when `when` (UTC epoch seconds) falls inside the schedule, judged on the wall
        clock of the policy's time zone (so 09:00 stays 09:00 across daylight saving)."""
        if self.mode == "always":
            return True
        local = dt.datetime.fromtimestamp(when, ZoneInfo(self.time_zone))
        start, end = _hhmm(self.start), _hhmm(self.end)
        now = local.time()
        if start <= end:
            return DAY_NAMES[local.weekday()] in self.days and start <= now < end
        # An overnight shift (22:00-06:00) belongs to the day it started on.
        if now >= start:
            return DAY_NAMES[local.weekday()] in self.days
        if now < end:
            return DAY_NAMES[(local.weekday() - 1) % 7] in self.days
        return False


@dataclass(frozen=True)
class Policy:
    window: bool = False
    titles: bool = False
    idle: bool = False
    sessions: bool = False
    browser: bool = False
    idle_threshold_seconds: float = 300.0
    pulse_seconds: float = 5.0
    schedule: Schedule = field(default_factory=Schedule)
    max_batch_spans: int = PROTOCOL_MAX_BATCH_SPANS
    max_batch_seconds: float = 30.0
    spool_max_rows: int = 500_000
    spool_max_age_days: float = 14.0
    # The device-control sections (docs/agent-protocol.md, "Device control ..."), kept as the
    # server sent them (objects; {} when absent). Each control parses its own section strictly
    # (glasshouse_agent.usb, .removable, .web, .apps) and refuses it whole with a PolicyError.
    usb: dict[str, Any] = field(default_factory=dict)
    removable: dict[str, Any] = field(default_factory=dict)
    web: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, Any] = field(default_factory=dict)

    def allows(self, kind: Kind, when: float) -> bool:
        """May data of this kind be collected at `when`? Outside the schedule nothing is."""
        enabled = {"window": self.window, "idle": self.idle, "session": self.sessions, "browser": self.browser}[kind]
        return enabled and self.schedule.active_at(when)

    def filter(self, sample: Sample) -> Sample | None:
        """The sample as the policy permits it to be stored, or None. Titles are removed here
        too, in case a helper running an older policy sent one."""
        if not self.allows(sample.kind, sample.time):
            return None
        if sample.kind == "window" and not self.titles and "title" in sample.attrs:
            attrs = {k: v for k, v in sample.attrs.items() if k != "title"}
            return replace(sample, attrs=attrs)
        if sample.kind == "browser":
            # The site only, unless web.full_urls allows the URL and tab title too.
            keep = BROWSER_FULL if self.web.get("full_urls") is True else BROWSER_DOMAIN
            kept: dict[str, str | int] = {
                k: v[: keep[k]] for k, v in sample.attrs.items() if k in keep and isinstance(v, str)
            }
            return sample if kept == sample.attrs else replace(sample, attrs=kept)
        return sample

    def to_json(self) -> dict[str, Any]:
        """The protocol's document shape, so a stored or forwarded policy parses back the same."""
        return {
            "collect": {
                "window": self.window,
                "titles": self.titles,
                "idle": self.idle,
                "sessions": self.sessions,
                "browser": self.browser,
            },
            "idle_threshold_seconds": self.idle_threshold_seconds,
            "pulse_seconds": self.pulse_seconds,
            "schedule": {**asdict(self.schedule), "days": list(self.schedule.days)},
            "upload": {"max_batch_spans": self.max_batch_spans, "max_batch_seconds": self.max_batch_seconds},
            "spool": {"max_rows": self.spool_max_rows, "max_age_days": self.spool_max_age_days},
            "usb": self.usb,
            "removable": self.removable,
            "web": self.web,
            "apps": self.apps,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


# Before the first policy arrives the agent collects nothing: absence of a policy is not consent.
NOTHING = Policy()


def parse_policy(doc: Any) -> Policy:
    """Validate a policy document from the server. Unknown collectors are ignored (a newer
    server may know more kinds) and therefore never enabled; wrong types are refused whole."""
    if not isinstance(doc, dict):
        raise PolicyError("policy", "must be an object")
    collect = _obj(doc, "collect", required=True)
    flags = {name: _bool(collect, name, "collect") for name in ("window", "titles", "idle", "sessions", "browser")}
    sched = _obj(doc, "schedule")
    upload = _obj(doc, "upload")
    spool = _obj(doc, "spool")
    schedule = Schedule(
        mode=_choice(sched, "mode", ("always", "working_hours"), "always", "schedule"),
        time_zone=_zone(sched),
        days=_days(sched),
        start=_time(sched, "start", "09:00"),
        end=_time(sched, "end", "17:00"),
    )
    return Policy(
        **flags,
        idle_threshold_seconds=_num(doc, "idle_threshold_seconds", 300, "", low=1),
        pulse_seconds=_num(doc, "pulse_seconds", 5, "", low=0.5),
        schedule=schedule,
        max_batch_spans=min(int(_num(upload, "max_batch_spans", 1000, "upload", low=1)), PROTOCOL_MAX_BATCH_SPANS),
        max_batch_seconds=_num(upload, "max_batch_seconds", 30, "upload", low=0.1),
        spool_max_rows=int(_num(spool, "max_rows", 500_000, "spool", low=1)),
        spool_max_age_days=_num(spool, "max_age_days", 14, "spool", low=0.001),
        usb=_obj(doc, "usb"),
        removable=_obj(doc, "removable"),
        web=_obj(doc, "web"),
        apps=_obj(doc, "apps"),
    )


def _name(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _obj(doc: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(key, "must be an object")
    return value


def _bool(doc: dict[str, Any], key: str, prefix: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise PolicyError(_name(prefix, key), "must be true or false")
    return value


def _num(doc: dict[str, Any], key: str, default: float, prefix: str, *, low: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise PolicyError(_name(prefix, key), f"must be a number >= {low}")
    return float(value)


def _choice(doc: dict[str, Any], key: str, choices: tuple[str, ...], default: str, prefix: str) -> str:
    value = doc.get(key, default)
    if value not in choices:
        raise PolicyError(_name(prefix, key), f"must be one of {', '.join(choices)}")
    return str(value)


def _zone(doc: dict[str, Any]) -> str:
    value = doc.get("time_zone", "UTC")
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PolicyError("schedule.time_zone", f"unknown time zone {value!r}") from exc
    return str(value)


def _days(doc: dict[str, Any]) -> tuple[str, ...]:
    value = doc.get("days", ["mon", "tue", "wed", "thu", "fri"])
    if not isinstance(value, list) or any(day not in DAY_NAMES for day in value):
        raise PolicyError("schedule.days", f"must be a list of {', '.join(DAY_NAMES)}")
    return tuple(value)


def _time(doc: dict[str, Any], key: str, default: str) -> str:
    value = doc.get(key, default)
    try:
        _hhmm(value)
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"schedule.{key}", "must be HH:MM") from exc
    return str(value)


def _hhmm(value: Any) -> dt.time:
    if not isinstance(value, str):
        raise TypeError("not a string")
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))
