"""One person's day as a Gantt-style strip: applications, sites, idle, locked screen and USB events.

This is the one page that reads raw spans (reports read rollups): callers must already hold a
`MonitoringAccess` from the purpose gate and pass the person it was granted for. The read is
bounded to one local day of one person, through the (person, start) index and, on PostgreSQL,
one or two day partitions.

The day is the person's own calendar day in their time zone, so it is 23 or 25 hours long on
the days clocks change; positions are fractions of the real length of that day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.utils import timezone

from glasshouse.activity.models import DeviceEvent, EventKind, Span, SpanKind
from glasshouse.org.models import Person

# A span that ends inside the day may have started before it (an idle stretch overnight). Spans
# are cut by the agent at least every upload, so looking this far back is enough, and it keeps
# the read on the index instead of scanning the person's whole history.
LOOKBACK = dt.timedelta(hours=12)
# Bound on the spans drawn for one day; a day with more is drawn up to here and says so.
MAX_SPANS = 20_000

LANES = ("apps", "sites", "idle", "locked")
LANE_LABELS = {"apps": "Applications", "sites": "Sites", "idle": "Idle", "locked": "Screen locked"}


@dataclass(frozen=True)
class Bar:
    lane: str
    start: dt.datetime  # local time
    end: dt.datetime
    label: str
    left: float  # percent of the day
    width: float

    # Local wall-clock times, formatted here: the template's date filter would convert them to
    # the server's zone.
    @property
    def start_label(self) -> str:
        return f"{self.start:%H:%M:%S}"

    @property
    def end_label(self) -> str:
        return (
            "24:00:00"
            if self.end.time() == dt.time(0) and self.end.date() > self.start.date()
            else f"{self.end:%H:%M:%S}"
        )

    @property
    def seconds(self) -> float:
        return (self.end.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)).total_seconds()

    @property
    def tooltip(self) -> str:
        return f"{self.label}: {self.start_label}-{self.end_label} ({_duration(dt.timedelta(seconds=self.seconds))})"


@dataclass(frozen=True)
class Marker:
    time: dt.datetime  # local time
    label: str
    left: float

    @property
    def time_label(self) -> str:
        return f"{self.time:%H:%M:%S}"

    @property
    def tooltip(self) -> str:
        return f"{self.time_label} {self.label}"


@dataclass(frozen=True)
class Tick:
    label: str
    left: float


@dataclass
class Timeline:
    person: Person
    day: dt.date
    zone: str
    start: dt.datetime  # local midnight
    end: dt.datetime  # next local midnight
    bars: dict[str, list[Bar]] = field(default_factory=dict)
    usb: list[Marker] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    truncated: bool = False

    @property
    def hours(self) -> float:
        # Aware datetimes in the same zone subtract as wall clock times: compare in UTC.
        return (self.end.astimezone(dt.UTC) - self.start.astimezone(dt.UTC)).total_seconds() / 3600

    @property
    def empty(self) -> bool:
        return not self.usb and not any(self.bars.values())

    @property
    def lanes(self) -> list[tuple[str, str, list[Bar]]]:
        return [(lane, LANE_LABELS[lane], self.bars.get(lane, [])) for lane in LANES]

    @property
    def previous_day(self) -> dt.date:
        return self.day - dt.timedelta(days=1)

    @property
    def next_day(self) -> dt.date | None:
        """None when the next day has not begun yet in the person's zone."""
        following = self.day + dt.timedelta(days=1)
        return following if following <= timezone.now().astimezone(ZoneInfo(self.zone)).date() else None

    def totals(self) -> list[tuple[str, str]]:
        return [(label, _duration(dt.timedelta(seconds=sum(b.seconds for b in bars)))) for _, label, bars in self.lanes]


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def zone_of(person: Person) -> ZoneInfo:
    try:
        return ZoneInfo(person.time_zone or "UTC")
    except (KeyError, ValueError):  # a zone name the system no longer knows: show UTC rather than fail
        return ZoneInfo("UTC")


def today_for(person: Person, now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(zone_of(person)).date()


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Local midnight to the next local midnight, as aware datetimes (DST-safe: 23/24/25 h)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return start, end


def person_day(person: Person, day: dt.date, now: dt.datetime | None = None) -> Timeline:
    zone = zone_of(person)
    start, end = day_bounds(day, zone)
    start_utc, end_utc = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    length = (end_utc - start_utc).total_seconds()
    now = now or timezone.now()

    def pos(t: dt.datetime) -> float:
        return max(0.0, min(100.0, (t - start_utc).total_seconds() / length * 100))

    def bar(lane: str, s: dt.datetime, e: dt.datetime, label: str) -> Bar:
        s, e = max(s, start_utc), min(e, end_utc)
        left = pos(s)
        return Bar(lane, s.astimezone(zone), e.astimezone(zone), label, left, max(pos(e) - left, 0.0))

    timeline = Timeline(person, day, str(zone), start, end, {lane: [] for lane in LANES})
    spans = list(
        Span.objects.filter(person=person, start__gte=start_utc - LOOKBACK, start__lt=end_utc)
        .filter(end__gte=start_utc)
        .select_related("app", "title", "domain")
        .order_by("start", "id")[: MAX_SPANS + 1]
    )
    if len(spans) > MAX_SPANS:
        timeline.truncated = True
        spans = spans[:MAX_SPANS]

    lock_since: dt.datetime | None = None
    for span in spans:
        if span.kind == SpanKind.WINDOW:
            label = span.app.value if span.app else "(unknown application)"
            if span.title:
                label = f"{label} — {span.title.value}"
            if span.end > start_utc:
                timeline.bars["apps"].append(bar("apps", span.start, span.end, label))
        elif span.kind == SpanKind.BROWSER:
            label = span.domain.value if span.domain else "(unknown site)"
            if span.title:
                label = f"{label} — {span.title.value}"
            if span.end > start_utc:
                timeline.bars["sites"].append(bar("sites", span.start, span.end, label))
        elif span.kind == SpanKind.IDLE:
            if span.state == "idle" and span.end > start_utc:
                timeline.bars["idle"].append(bar("idle", span.start, span.end, "Idle"))
        elif span.kind == SpanKind.SESSION:
            # lock/unlock are points; the screen is locked between them. A lock with no unlock
            # after it lasts to the end of the day or to now; logout or an agent restart ends it.
            if span.state == "lock":
                lock_since = lock_since or span.start
            elif span.state in ("unlock", "logout", "login", "agent-start") and lock_since is not None:
                if span.start > start_utc:
                    timeline.bars["locked"].append(bar("locked", lock_since, span.start, "Screen locked"))
                lock_since = None
    if lock_since is not None:
        until = min(end_utc, now)
        if until > start_utc and until > lock_since:
            timeline.bars["locked"].append(bar("locked", lock_since, until, "Screen locked"))

    events = DeviceEvent.objects.filter(person=person, kind=EventKind.USB, time__gte=start_utc, time__lt=end_utc)
    for event in events.order_by("time", "id")[:MAX_SPANS]:
        timeline.usb.append(Marker(event.time.astimezone(zone), _usb_label(event.data), pos(event.time)))

    # One tick per local hour; on DST days a label repeats or is skipped, as the clock did.
    t = start_utc
    while t < end_utc:
        local = t.astimezone(zone)
        if local.minute == 0:
            timeline.ticks.append(Tick(f"{local:%H}", pos(t)))
        t += dt.timedelta(hours=1)
    return timeline


def _usb_label(data: dict[str, object]) -> str:
    parts = [f"USB {data.get('action', 'event')}"]
    if data.get("verdict"):
        parts.append(str(data["verdict"]))
    name = " ".join(str(data[k]) for k in ("vendor", "product") if data.get(k))
    if name:
        parts.append(name)
    ids = ":".join(str(data[k]) for k in ("vid", "pid") if data.get(k))
    if ids:
        parts.append(f"({ids})")
    return " ".join(parts)
