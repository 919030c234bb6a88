"""Evaluating alert rules in the worker (`run_pending`, called on every worker pass).

Event-driven rules (site visits, USB, file copies, agent stops, idle stretches) read the events
and spans of ingested batches not yet evaluated, in ingest order. As with the rollups
(`activity.rollups`), pending batches are not found by "id above a watermark": ids are
allocated at insert but become visible at commit, so a watermark could step past a slower,
lower-numbered transaction and lose it. Instead each evaluated batch gets an `EvaluatedBatch`
row, and pending means "above the floor without a row". The floor (below which nothing is
pending) only moves over batches received more than `FLOOR_GRACE` ago, long after any ingest
transaction that allocated their ids has committed, and the rows below it are then dropped, so
the table stays small. (A flag on IngestBatch, as the rollups use, would tie this app's state to
the activity tables.)

Time-driven rules run on every pass: time in a category or on sites from the daily rollups,
agents silent (last_seen_at) or stopped without a later start.

Every alert has a dedupe key "<rule>:<cause>" under a unique constraint, so the same cause never
raises the same rule twice, however often it is looked at.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from glasshouse.activity.models import DailyUsage, DeviceEvent, EventKind, IngestBatch, Span, SpanKind, UsageKind
from glasshouse.alerts import delivery
from glasshouse.alerts.models import (
    AgentStop,
    Alert,
    EvaluatedBatch,
    EvaluationState,
    Rule,
    RuleKind,
    Schedule,
    UsageSource,
)
from glasshouse.devices.models import Device
from glasshouse.org.models import Person

BATCHES_PER_STEP = 200
FLOOR_GRACE = dt.timedelta(minutes=10)
# An idle stretch is followed back over contiguous idle spans (batches cut spans) this far.
MAX_IDLE_LINKS = 200
# Open agent stops older than this are forgotten (every rule's grace period is at most 7 days).
FORGET_STOPS_AFTER = dt.timedelta(days=8)
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UTC = dt.UTC


@dataclass(frozen=True)
class PersonInfo:
    name: str
    team_id: int | None
    zone: zoneinfo.ZoneInfo
    start: dt.time
    end: dt.time
    days: frozenset[str]

    def working_at(self, when: dt.datetime) -> bool:
        local = when.astimezone(self.zone)
        if WEEKDAY_NAMES[local.weekday()] not in self.days:
            return False
        t = local.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # a shift across midnight


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


class Context:
    """People and devices looked up once per pass."""

    def __init__(self) -> None:
        self.people: dict[int, PersonInfo] = {}
        self.hosts: dict[Any, str] = {}

    def load_people(self, ids: set[int]) -> None:
        missing = ids - self.people.keys()
        for p in Person.objects.filter(pk__in=missing).values(
            "pk", "full_name", "team_id", "time_zone", "work_start", "work_end", "work_days"
        ):
            self.people[p["pk"]] = PersonInfo(
                name=p["full_name"],
                team_id=p["team_id"],
                zone=_zone(p["time_zone"]),
                start=p["work_start"],
                end=p["work_end"],
                days=frozenset(d for d in p["work_days"].split(",") if d),
            )

    def load_devices(self, ids: set[Any]) -> None:
        missing = ids - self.hosts.keys()
        self.hosts.update(Device.objects.filter(pk__in=missing).values_list("pk", "hostname"))

    def who(self, person_id: int | None, device_id: Any) -> str:
        host = self.hosts.get(device_id, "an unknown computer") if device_id else ""
        person = self.people.get(person_id) if person_id else None
        if person and host:
            return f"{person.name} on {host}"
        return person.name if person else host or "someone"

    def applies(self, rule: Rule, person_id: int | None, when: dt.datetime) -> bool:
        """The rule's team scope and schedule. Without a person there is no team and no working
        hours: only organisation-wide rules that always apply match."""
        person = self.people.get(person_id) if person_id else None
        if rule.team_id is not None and (person is None or person.team_id != rule.team_id):
            return False
        if rule.schedule == Schedule.WORKING_HOURS:
            return person is not None and person.working_at(when)
        return True


def raise_alert(
    rule: Rule,
    cause: str,
    *,
    person_id: int | None,
    device_id: Any,
    occurred_at: dt.datetime,
    summary: str,
    details: dict[str, Any],
) -> Alert | None:
    """Create the alert and its deliveries, unless this rule already raised one for this cause."""
    key = f"{rule.pk}:{cause}"[:255]
    if Alert.objects.filter(dedupe_key=key).exists():
        return None
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                rule_name=rule.name,
                kind=rule.kind,
                severity=rule.severity,
                dedupe_key=key,
                person_id=person_id,
                device_id=device_id,
                occurred_at=occurred_at,
                summary=summary[:500],
                details=details,
            )
            delivery.enqueue(alert, rule)
    except IntegrityError:  # another worker raised it first
        return None
    return alert


def _matches(domain: str, listed: list[str]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in listed)


# --- Event-driven rules, over pending batches -------------------------------------------------


def evaluate_batches_step(limit: int = BATCHES_PER_STEP) -> tuple[int, int]:
    """Evaluate up to `limit` pending batches in ingest order; return (batches, alerts raised)."""
    with transaction.atomic():
        EvaluationState.objects.get_or_create(pk=1)
        # One evaluator at a time: the lock on the state row serialises workers on PostgreSQL.
        state = EvaluationState.objects.select_for_update().get(pk=1)
        batch_ids = list(
            IngestBatch.objects.filter(id__gt=state.floor)
            .exclude(id__in=EvaluatedBatch.objects.filter(batch_id__gt=state.floor).values("batch_id"))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not batch_ids:
            return 0, 0
        rules = list(Rule.objects.filter(enabled=True))
        raised = _evaluate(batch_ids, rules)
        EvaluatedBatch.objects.bulk_create([EvaluatedBatch(batch_id=b) for b in batch_ids], ignore_conflicts=True)
    return len(batch_ids), raised


def _evaluate(batch_ids: list[int], rules: list[Rule]) -> int:
    by_kind: dict[str, list[Rule]] = {}
    for rule in rules:
        by_kind.setdefault(rule.kind, []).append(rule)
    ctx = Context()
    raised = 0
    events = list(
        DeviceEvent.objects.filter(batch_id__in=batch_ids).order_by("batch_id", "time", "id")
        if by_kind.keys() & {RuleKind.USB, RuleKind.FILE_COPY, RuleKind.SITE_VISIT}
        else []
    )
    span_kinds = [SpanKind.SESSION]  # agent stops and starts are tracked even before a rule asks
    if RuleKind.SITE_VISIT in by_kind:
        span_kinds.append(SpanKind.BROWSER)
    if RuleKind.IDLE in by_kind:
        span_kinds.append(SpanKind.IDLE)
    spans = list(
        Span.objects.filter(batch_id__in=batch_ids, kind__in=span_kinds)
        .exclude(kind=SpanKind.IDLE, state="active")
        .order_by("batch_id", "start", "id")
        .values("id", "kind", "device_id", "person_id", "start", "end", "state", "domain__value")
    )
    ctx.load_people({e.person_id for e in events if e.person_id} | {s["person_id"] for s in spans if s["person_id"]})
    ctx.load_devices({e.device_id for e in events} | {s["device_id"] for s in spans})

    for event in events:
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        rule_kind = _EVENT_RULE.get(EventKind(event.kind))
        for rule in by_kind.get(rule_kind, []) if rule_kind else []:
            found = _event_alert(rule, event, data, ctx)
            if found is None or not ctx.applies(rule, event.person_id, event.time):
                continue
            cause, summary = found
            alert = raise_alert(
                rule,
                cause,
                person_id=event.person_id,
                device_id=event.device_id,
                occurred_at=event.time,
                summary=summary,
                details={"event": {"kind": EventKind(event.kind).name.lower(), **data}, "event_id": event.pk},
            )
            raised += alert is not None

    for span in spans:
        if span["kind"] == SpanKind.SESSION:
            _track_agent(span)
        elif span["kind"] == SpanKind.BROWSER and span["domain__value"]:
            raised += _site_span(span, by_kind[RuleKind.SITE_VISIT], ctx)
        elif span["kind"] == SpanKind.IDLE:
            raised += _idle_span(span, by_kind[RuleKind.IDLE], ctx)
    return raised


_EVENT_RULE = {
    EventKind.USB: RuleKind.USB,
    EventKind.FILE: RuleKind.FILE_COPY,
    EventKind.WEB_BLOCK: RuleKind.SITE_VISIT,
}


def _event_alert(rule: Rule, event: DeviceEvent, data: dict[str, Any], ctx: Context) -> tuple[str, str] | None:
    """(cause, summary) if `event` matches `rule`, else None."""
    who = ctx.who(event.person_id, event.device_id)
    if rule.kind == RuleKind.USB:
        if data.get("action") != "insert":
            return None
        blocked = data.get("verdict") == "blocked"
        if rule.usb_blocked_only and not blocked:
            return None
        what = " ".join(str(data[k]) for k in ("vendor", "product") if data.get(k)) or "USB device"
        ids = f"{data.get('vid', '????')}:{data.get('pid', '????')}"
        verb = "blocked" if blocked else f"inserted ({data.get('verdict') or 'no verdict'})"
        return f"event:{event.pk}", f"USB {what} [{ids}] {verb} — {who}"
    if rule.kind == RuleKind.FILE_COPY:
        size = int(data.get("size") or 0)
        if size < (rule.min_bytes or 0):
            return None
        return f"event:{event.pk}", f"{data.get('path', '?')} ({size:,} bytes) written to removable media — {who}"
    domain = str(data.get("domain", "")).lower()
    if not (rule.include_blocked or _matches(domain, rule.domain_list)):
        return None
    return _site_cause(event.device_id, domain, event.time), f"Blocked site {domain} — {who}"


def _site_cause(device_id: Any, domain: str, when: dt.datetime) -> str:
    # A site visit is one cause per computer, site and UTC day: a tab open all morning is one alert.
    return f"site:{device_id}:{domain}:{when.astimezone(UTC).date().isoformat()}"


def _site_span(span: Mapping[str, Any], rules: list[Rule], ctx: Context) -> int:
    domain = str(span["domain__value"]).lower()
    raised = 0
    for rule in rules:
        if not _matches(domain, rule.domain_list) or not ctx.applies(rule, span["person_id"], span["start"]):
            continue
        alert = raise_alert(
            rule,
            _site_cause(span["device_id"], domain, span["start"]),
            person_id=span["person_id"],
            device_id=span["device_id"],
            occurred_at=span["start"],
            summary=f"Visited {domain} — {ctx.who(span['person_id'], span['device_id'])}",
            details={"domain": domain, "span_id": span["id"]},
        )
        raised += alert is not None
    return raised


def _track_agent(span: Mapping[str, Any]) -> None:
    if span["state"] == "agent-stop":
        AgentStop.objects.get_or_create(
            device_id=span["device_id"], stopped_at=span["start"], defaults={"person_id": span["person_id"]}
        )
    elif span["state"] == "agent-start":
        AgentStop.objects.filter(
            device_id=span["device_id"], stopped_at__lte=span["start"], resumed_at__isnull=True
        ).update(resumed_at=span["start"])


def _idle_span(span: Mapping[str, Any], rules: list[Rule], ctx: Context) -> int:
    """An idle stretch (contiguous idle spans of one person, which batches cut into pieces)
    longer than a rule's threshold, crossed during the person's working hours."""
    person = ctx.people.get(span["person_id"]) if span["person_id"] else None
    if person is None:
        return 0
    start: dt.datetime = span["start"]
    for _ in range(MAX_IDLE_LINKS):
        before = (
            Span.objects.filter(person_id=span["person_id"], kind=SpanKind.IDLE, state="idle", end=start)
            .values_list("start", flat=True)
            .first()
        )
        if before is None or before >= start:
            break
        start = before
    raised = 0
    for rule in rules:
        threshold = dt.timedelta(minutes=rule.minutes or 0)
        crossed = start + threshold
        if span["end"] - start < threshold:
            continue
        if rule.team_id is not None and person.team_id != rule.team_id:
            continue
        if not person.working_at(crossed):
            continue
        minutes = int((span["end"] - start).total_seconds() // 60)
        alert = raise_alert(
            rule,
            f"idle:{span['person_id']}:{int(start.timestamp())}",
            person_id=span["person_id"],
            device_id=span["device_id"],
            occurred_at=crossed,
            summary=f"Idle for {minutes} minutes during working hours — "
            f"{ctx.who(span['person_id'], span['device_id'])}",
            details={"idle_since": start.isoformat(), "until": span["end"].isoformat(), "minutes": minutes},
        )
        raised += alert is not None
    return raised


def advance_floor(now: dt.datetime) -> None:
    """Move the floor over evaluated batches received before now - FLOOR_GRACE and drop their rows."""
    with transaction.atomic():
        EvaluationState.objects.get_or_create(pk=1)
        state = EvaluationState.objects.select_for_update().get(pk=1)
        settled = (
            IngestBatch.objects.filter(id__gt=state.floor, received_at__lt=now - FLOOR_GRACE)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
        if settled is None:
            return
        # Stop below the first batch still pending, if any.
        pending = (
            IngestBatch.objects.filter(id__gt=state.floor, id__lte=settled)
            .exclude(id__in=EvaluatedBatch.objects.filter(batch_id__gt=state.floor).values("batch_id"))
            .order_by("id")
            .values_list("id", flat=True)
            .first()
        )
        floor = settled if pending is None else pending - 1
        if floor > state.floor:
            EvaluationState.objects.filter(pk=1).update(floor=floor)
            EvaluatedBatch.objects.filter(batch_id__lte=floor).delete()


# --- Time-driven rules ------------------------------------------------------------------------


def check_time_rules(now: dt.datetime) -> int:
    rules = list(
        Rule.objects.filter(enabled=True, kind__in=[RuleKind.TIME_CATEGORY, RuleKind.TIME_SITE, RuleKind.AGENT_SILENT])
    )
    ctx = Context()
    raised = 0
    for rule in rules:
        if rule.kind == RuleKind.AGENT_SILENT:
            raised += _agents(rule, now, ctx)
        else:
            raised += _usage(rule, now, ctx)
    AgentStop.objects.filter(stopped_at__lt=now - FORGET_STOPS_AFTER).delete()
    return raised


def _usage(rule: Rule, now: dt.datetime, ctx: Context) -> int:
    """Per person and local day, from the daily rollups. Today's local date differs by zone, so
    the UTC day before and after are looked at too; the dedupe key holds the person's day."""
    today = now.astimezone(UTC).date()
    rows = DailyUsage.objects.filter(day__in=[today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)])
    if rule.kind == RuleKind.TIME_CATEGORY:
        if rule.category is None:  # refused by check_rule; a rule edited in the admin shell
            return 0
        kind = UsageKind.SITE if rule.usage_source == UsageSource.SITES else UsageKind.APP
        rows = rows.filter(kind=kind, category=rule.category)
        what = f"{rule.get_category_display()} {rule.get_usage_source_display().lower()}"
    else:
        if not rule.domain_list:  # refused by check_rule; an empty Q() would match every site
            return 0
        match = Q()
        for d in rule.domain_list:
            match |= Q(subject__value=d) | Q(subject__value__endswith="." + d)
        rows = rows.filter(match, kind=UsageKind.SITE)
        what = ", ".join(rule.domain_list)
    if rule.team_id is not None:
        rows = rows.filter(person__team_id=rule.team_id)
    threshold = (rule.minutes or 0) * 60
    totals = list(
        rows.values("person_id", "day").annotate(total=Sum("seconds")).filter(total__gte=threshold).order_by()
    )
    ctx.load_people({r["person_id"] for r in totals})
    raised = 0
    for row in totals:
        if not ctx.applies(rule, row["person_id"], now):
            continue
        minutes = int(row["total"] // 60)
        alert = raise_alert(
            rule,
            f"usage:{row['person_id']}:{row['day'].isoformat()}",
            person_id=row["person_id"],
            device_id=None,
            occurred_at=now,
            summary=f"{minutes} minutes on {what} on {row['day'].isoformat()} (threshold {rule.minutes}) — "
            f"{ctx.who(row['person_id'], None)}",
            details={"day": row["day"].isoformat(), "minutes": minutes, "threshold_minutes": rule.minutes},
        )
        raised += alert is not None
    return raised


def _agents(rule: Rule, now: dt.datetime, ctx: Context) -> int:
    grace = dt.timedelta(minutes=rule.minutes or 0)
    raised = 0
    stops = list(
        AgentStop.objects.filter(resumed_at__isnull=True, stopped_at__lte=now - grace, device__revoked_at__isnull=True)
    )
    devices = Device.objects.active().filter(last_seen_at__lt=now - grace)
    if rule.team_id is not None:
        devices = devices.filter(person__team_id=rule.team_id)
    silent = list(devices.exclude(pk__in=[s.device_id for s in stops]).values("pk", "person_id", "last_seen_at"))
    ctx.load_people({s.person_id for s in stops if s.person_id} | {d["person_id"] for d in silent if d["person_id"]})
    ctx.load_devices({s.device_id for s in stops} | {d["pk"] for d in silent})
    for stop in stops:
        if not ctx.applies(rule, stop.person_id, now):
            continue
        alert = raise_alert(
            rule,
            f"stopped:{stop.device_id}:{int(stop.stopped_at.timestamp())}",
            person_id=stop.person_id,
            device_id=stop.device_id,
            occurred_at=stop.stopped_at,
            summary=f"Agent stopped and not started again for {rule.minutes} minutes — "
            f"{ctx.who(stop.person_id, stop.device_id)}",
            details={"stopped_at": stop.stopped_at.isoformat()},
        )
        raised += alert is not None
    for device in silent:
        last_seen = device["last_seen_at"]
        if last_seen is None or not ctx.applies(rule, device["person_id"], now):
            continue
        alert = raise_alert(
            rule,
            f"silent:{device['pk']}:{int(last_seen.timestamp())}",
            person_id=device["person_id"],
            device_id=device["pk"],
            occurred_at=last_seen + grace,
            summary=f"Agent silent since {last_seen:%Y-%m-%d %H:%M} UTC — {ctx.who(device['person_id'], device['pk'])}",
            details={"last_seen_at": last_seen.isoformat()},
        )
        raised += alert is not None
    return raised


def run_pending(now: dt.datetime | None = None) -> int:
    """One worker pass: evaluate pending batches, then the time-driven rules (at `now`, the
    clock unless a test says otherwise), then send due deliveries. Returns the number of alerts
    raised."""
    raised = 0
    while True:
        batches, step_raised = evaluate_batches_step()
        raised += step_raised
        if not batches:
            break
    now = now or timezone.now()
    raised += check_time_rules(now)
    advance_floor(timezone.now())
    delivery.send_due()  # by the clock, whatever `now` the rules were evaluated at
    return raised
