"""After-hours and weekend work, in each person's own time zone and working hours.

Reads `HourlyUsage` (active time per UTC hour, from idle spans in state "active"), summed in the
database by group (team or office) x working schedule (zone, start, end, days) x UTC hour, so
no person leaves the query and the rows grow with schedules, not people. Each UTC hour is then
placed in the schedule's local time:

- its local wall-clock interval is the UTC hour moved by the zone's offset at that instant
  (DST-safe: zoneinfo gives the offset in force; time-zone changes fall on UTC hour boundaries);
- the part of it inside a working window counts as working time, the rest as after hours.
  Windows are [day + start, day + end) on each work day, or [day + start, next day + end) when
  end <= start (an overnight shift, which belongs to the day it starts). Rollups do not keep
  where in an hour the seconds fell, so an hour partly inside a window (a 08:30 start, a
  +05:30 zone) is split in proportion;
- the hour belongs to the day of the working window it overlaps, else to the local date of its
  middle; time on a day that is not one of the person's work days is weekend time (their own
  weekend: a Sunday-to-Thursday shift has Friday and Saturday off).

Only hours whose day falls inside the report's dates count. People in no team are left out,
as in every report; people are counted in their current team and office.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from functools import cache

from django.db.models import Sum

from glasshouse.activity.models import HourlyUsage, UsageKind
from glasshouse.org.models import WEEKDAYS, Office, Team
from glasshouse.reports.exports import Report, Table, hours, percent
from glasshouse.reports.overview import REMOTE, Filters, people_in_scope, subtree

HOUR = dt.timedelta(hours=1)
UTC = dt.UTC


@dataclass(frozen=True)
class Schedule:
    zone: str
    start: dt.time
    end: dt.time
    days: frozenset[int]  # 0 = Monday

    @classmethod
    def of(cls, zone: str, start: dt.time, end: dt.time, days: str) -> Schedule:
        return cls(zone, start, end, frozenset(WEEKDAYS.index(d) for d in days.split(",") if d in WEEKDAYS))

    def windows(self, day: dt.date) -> list[tuple[dt.date, dt.datetime, dt.datetime]]:
        """(day the shift starts, local start, local end) for shifts starting the day before,
        on and after `day`, naive local wall-clock times."""
        out = []
        for d in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
            if d.weekday() not in self.days:
                continue
            start = dt.datetime.combine(d, self.start)
            end_day = d if self.end > self.start else d + dt.timedelta(days=1)
            out.append((d, start, dt.datetime.combine(end_day, self.end)))
        return out

    def place(self, hour: dt.datetime) -> tuple[dt.date, float]:
        """(the day this UTC hour belongs to, the share of it inside working hours)."""
        return _place(self, hour)


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _place(s: Schedule, hour: dt.datetime) -> tuple[dt.date, float]:
    local = hour.astimezone(_zone(s.zone)).replace(tzinfo=None)
    local_end = local + HOUR
    best: tuple[float, dt.date] | None = None
    working = 0.0
    for day, start, end in s.windows(local.date()):
        overlap = (min(end, local_end) - max(start, local)).total_seconds()
        if overlap > 0:
            working += overlap
            if best is None or overlap > best[0]:
                best = (overlap, day)
    day = best[1] if best is not None else (local + HOUR / 2).date()
    return day, min(working / 3600, 1.0)


@dataclass
class Tally:
    active: float = 0.0
    after_hours: float = 0.0  # outside working hours, weekend included
    weekend: float = 0.0  # on a day that is not one of the person's work days

    @property
    def working(self) -> float:
        return self.active - self.after_hours

    @property
    def after_hours_share(self) -> float | None:
        return self.after_hours / self.active if self.active else None

    @property
    def weekend_share(self) -> float | None:
        return self.weekend / self.active if self.active else None

    def add(self, seconds: float, working_share: float, weekend: bool) -> None:
        self.active += seconds
        outside = seconds * (1 - working_share)
        self.after_hours += outside
        if weekend:
            self.weekend += outside


@dataclass
class Group:
    key: str  # a team or office id, or "remote"
    name: str
    tally: Tally = field(default_factory=Tally)


@dataclass
class AfterHours:
    filters: Filters
    groups: list[Group]
    weeks: list[tuple[dt.date, Tally]]
    total: Tally


def after_hours(f: Filters, parents: dict[int, int | None], by: str = "team") -> AfterHours:
    """Active time split into working hours, after hours and weekend, per team (`by="team"`) or
    per office and remote (`by="office"`), with a trend by ISO week. Three queries."""
    group_field = "person__team_id" if by == "team" else "person__office_id"
    rows = people_in_scope(
        HourlyUsage.objects.filter(
            kind=UsageKind.STATE,
            subject__value="active",
            # Local days reach 14 hours either side of UTC, and an overnight shift runs into the next day.
            hour__gte=dt.datetime.combine(f.first_day - dt.timedelta(days=1), dt.time(), UTC),
            hour__lt=dt.datetime.combine(f.last_day + dt.timedelta(days=3), dt.time(), UTC),
        ),
        f,
        parents,
    )
    summed = rows.values(
        group_field,
        "person__time_zone",
        "person__work_start",
        "person__work_end",
        "person__work_days",
        "hour",
    ).annotate(total=Sum("seconds"))
    groups: dict[str, Group] = {}
    weeks: dict[dt.date, Tally] = {}
    start = f.first_day - dt.timedelta(days=f.first_day.weekday())
    while start <= f.last_day:
        weeks[start] = Tally()
        start += dt.timedelta(days=7)
    total = Tally()
    schedules: dict[tuple[str, dt.time, dt.time, str], Schedule] = {}
    for r in summed:
        key = (r["person__time_zone"], r["person__work_start"], r["person__work_end"], r["person__work_days"])
        schedule = schedules.get(key)
        if schedule is None:
            schedule = schedules[key] = Schedule.of(*key)
        day, working = schedule.place(r["hour"])
        if not f.first_day <= day <= f.last_day:
            continue
        weekend = day.weekday() not in schedule.days
        group_key = str(r[group_field]) if r[group_field] is not None else REMOTE
        group = groups.setdefault(group_key, Group(group_key, ""))
        for tally in (group.tally, weeks[day - dt.timedelta(days=day.weekday())], total):
            tally.add(r["total"], working, weekend)
    _name_groups(groups, f, parents, by)
    ordered = sorted(groups.values(), key=lambda g: (g.key == REMOTE, g.name.lower()))
    return AfterHours(f, ordered, list(weeks.items()), total)


def _name_groups(groups: dict[str, Group], f: Filters, parents: dict[int, int | None], by: str) -> None:
    """Names for the groups, and an empty row for each team or office in scope with no time,
    so a quiet team shows as 0 rather than missing."""
    if by == "team":
        teams = Team.objects.all() if f.team is None else Team.objects.filter(pk__in=subtree(f.team, parents))
        for pk, name in teams.values_list("pk", "name"):
            groups.setdefault(str(pk), Group(str(pk), "")).name = name
    else:
        offices = Office.objects.all()
        if f.office == REMOTE:
            offices = offices.none()
        elif f.office:
            offices = offices.filter(pk=int(f.office))
        for pk, name in offices.values_list("pk", "name"):
            groups.setdefault(str(pk), Group(str(pk), "")).name = name
        if f.office in ("", REMOTE):
            groups.setdefault(REMOTE, Group(REMOTE, "")).name = "Remote"
    for key in [k for k, g in groups.items() if not g.name]:
        del groups[key]  # a team or office deleted since (cannot happen with PROTECT, but never show a blank)


COLUMNS = ("team", "active hours", "working hours", "after hours", "weekend hours", "after-hours percent")


def export(ah: AfterHours) -> Report:
    def row(name: str, t: Tally) -> tuple[str, float, float, float, float, float | str]:
        return (
            name,
            hours(t.active),
            hours(t.working),
            hours(t.after_hours),
            hours(t.weekend),
            percent(t.after_hours_share),
        )

    teams = Table("teams", "Teams", COLUMNS, [row(g.name, g.tally) for g in ah.groups], "No team in scope.")
    weeks = Table("weeks", "Weeks", ("week", *COLUMNS[1:]), [row(start.isoformat(), t) for start, t in ah.weeks])
    total = Table("total", "Total", ("scope", *COLUMNS[1:]), [row("all", ah.total)])
    return Report("after-hours", "After-hours and weekend work", ah.filters.describe(), [total, teams, weeks])
