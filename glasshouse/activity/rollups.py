"""Incremental rollups: spans into hour and local day x person x subject (application, site,
idle/active) with its category, and local day x team.

The worker takes batches not yet rolled up in ingest order, adds their spans' seconds to the
person rollup rows (an additive upsert), rebuilds the team rows for the (team, day) pairs it
touched, and marks the batches, all in one transaction. A batch that
arrives late (its spans are days old) is still pending, so it is counted whenever it arrives;
a batch is never counted twice. Pending batches are marked by a flag rather than found by
"id above a watermark": ids are allocated at insert but become visible at commit, so a
watermark could step past a slower, lower-numbered transaction and lose it.

Hours are UTC hours; days are the person's local calendar days in their own time zone.
Spans of devices without a person are not rolled up (they are kept, and shown per device).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.db import connection, transaction

from glasshouse.activity.models import (
    Category,
    Classification,
    DailyUsage,
    HourlyUsage,
    IngestBatch,
    Span,
    SpanKind,
    TeamDailyUsage,
    UsageKind,
)
from glasshouse.activity.sinks import intern_strings
from glasshouse.org.models import Person

UTC = dt.UTC
BATCHES_PER_STEP = 200

# Called inside the roll-up transaction with the (kind, subject id) pairs of applications and
# sites that have no Classification row yet, before their rows are written. `reports`
# registers the one that applies its classification rules (activity does not import reports);
# it leaves an organisation row for every pair, uncategorised when no rule matches, so each
# new subject is resolved once.
NEW_SUBJECT_RESOLVERS: list[Callable[[set[tuple[int, int]]], None]] = []


def hour_pieces(start: float, end: float) -> Iterator[tuple[float, float]]:
    """(hour start, seconds) for each UTC hour the interval touches."""
    t = start
    while t < end:
        hour = t - t % 3600
        upto = min(end, hour + 3600)
        yield hour, upto - t
        t = upto


def day_pieces(start: float, end: float, zone: zoneinfo.ZoneInfo) -> Iterator[tuple[dt.date, float]]:
    """(local date, seconds) for each local calendar day the interval touches in `zone`."""
    t = start
    while t < end:
        day = dt.datetime.fromtimestamp(t, zone).date()
        next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).timestamp()
        upto = min(end, next_midnight)
        yield day, upto - t
        t = upto


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


class LocalDays:
    """`day_pieces` for one person's zone, remembering the bounds of the last local day: spans
    arrive in time order, so nearly every span falls inside the day of the one before it and
    needs no time-zone arithmetic at all."""

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        self.zone = zone
        self.day = dt.date.min
        self.lo = self.hi = 0.0

    def pieces(self, start: float, end: float) -> list[tuple[dt.date, float]]:
        if self.lo <= start and end <= self.hi:
            return [(self.day, end - start)]
        pieces = list(day_pieces(start, end, self.zone))
        self.day = pieces[0][0]
        self.lo = dt.datetime.combine(self.day, dt.time(0), tzinfo=self.zone).timestamp()
        self.hi = dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time(0), tzinfo=self.zone).timestamp()
        return pieces


Cell = list[float]  # [seconds, spans]


def roll_up_step(limit: int = BATCHES_PER_STEP) -> int:
    """Roll up to `limit` pending batches; return how many batches were rolled up."""
    with transaction.atomic():
        # skip_locked lets several workers share the queue on PostgreSQL; SQLite serialises anyway.
        batch_ids = list(
            IngestBatch.objects.select_for_update(skip_locked=True)
            .filter(rolled_up=False)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not batch_ids:
            return 0
        spans = _subject_spans(batch_ids)
        people = {
            pk: (LocalDays(_zone(tz)), team_id)
            for pk, tz, team_id in Person.objects.filter(pk__in={s[0] for s in spans}).values_list(
                "pk", "time_zone", "team_id"
            )
        }
        hourly: dict[tuple[int, float, int, int], Cell] = defaultdict(lambda: [0.0, 0])
        daily: dict[tuple[int, dt.date, int, int], Cell] = defaultdict(lambda: [0.0, 0])
        for person_id, kind, subject_id, start, end in spans:
            if end <= start or person_id not in people:
                continue
            hour = start - start % 3600
            if end <= hour + 3600:  # most spans: inside one hour
                cell = hourly[(person_id, hour, kind, subject_id)]
                cell[0] += end - start
                cell[1] += 1
            else:
                for i, (hour, seconds) in enumerate(hour_pieces(start, end)):
                    cell = hourly[(person_id, hour, kind, subject_id)]
                    cell[0] += seconds
                    cell[1] += 1 if i == 0 else 0  # a span counts once, in the hour it starts
            for i, (day, seconds) in enumerate(people[person_id][0].pieces(start, end)):
                cell = daily[(person_id, day, kind, subject_id)]
                cell[0] += seconds
                cell[1] += 1 if i == 0 else 0
        found = _categories({(k, s) for (_, _, k, s) in daily})
        uncategorised = int(Category.UNCATEGORISED)

        def category(person_id: int, kind: int, subject_id: int) -> int:
            team_id = people[person_id][1]
            return found.get((team_id, kind, subject_id), found.get((None, kind, subject_id), uncategorised))

        _upsert_hourly(hourly, category)
        _upsert_daily(daily, category)
        teams = {people[p][1] for (p, _, _, _) in daily} - {None}
        _rebuild_team_days(teams, {day for (_, day, _, _) in daily})
        IngestBatch.objects.filter(id__in=batch_ids).update(rolled_up=True)
    return len(batch_ids)


_ROLLED_KINDS = (SpanKind.WINDOW, SpanKind.BROWSER, SpanKind.IDLE)


def _subject_spans(batch_ids: list[int]) -> list[tuple[int, int, int, float, float]]:
    """(person, usage kind, subject string id, start, end as epoch seconds) for every span of the
    batches that feeds a rollup: window spans by app, browser spans by domain, idle spans by
    state. Window focus and browser tabs are counted apart (a browser's window span and its
    tab's span cover the same seconds), so "top apps" and "top sites" each add up to real time.

    Read with plain SQL: this runs over every ingested span, and letting the database hand over
    epoch numbers (PostgreSQL) or converting each distinct time once (SQLite) is several
    times faster than building an aware datetime per value."""
    q = connection.ops.quote_name
    if connection.vendor == "postgresql":
        times = 'EXTRACT(EPOCH FROM start)::float8, EXTRACT(EPOCH FROM "end")::float8'
    else:
        times = 'start, "end"'
    marks = ", ".join(["%s"] * len(batch_ids))
    kinds = ", ".join(str(int(k)) for k in _ROLLED_KINDS)
    sql = (
        f"SELECT person_id, kind, app_id, domain_id, state, {times} FROM {q(Span._meta.db_table)} "  # noqa: S608
        f"WHERE batch_id IN ({marks}) AND person_id IS NOT NULL AND kind IN ({kinds})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, batch_ids)
        rows = cursor.fetchall()
    if connection.vendor != "postgresql":
        # Django's SQLite connection hands datetime columns back as naive UTC datetimes;
        # contiguous spans share their times, so each distinct one is converted once.
        epoch = {t: t.replace(tzinfo=UTC).timestamp() for t in {t for r in rows for t in (r[5], r[6])}}
        rows = [(*r[:5], epoch[r[5]], epoch[r[6]]) for r in rows]
    states: dict[str, int] = {}
    out: list[tuple[int, int, int, float, float]] = []
    for person_id, kind, app_id, domain_id, state, start, end in rows:
        if kind == SpanKind.WINDOW and app_id is not None:
            out.append((person_id, UsageKind.APP, app_id, start, end))
        elif kind == SpanKind.BROWSER and domain_id is not None:
            out.append((person_id, UsageKind.SITE, domain_id, start, end))
        elif kind == SpanKind.IDLE and state in ("idle", "active"):
            if not states:
                states = intern_strings(["idle", "active"])
            out.append((person_id, UsageKind.STATE, states[state], start, end))
    return out


def _categories(subjects: set[tuple[int, int]]) -> dict[tuple[int | None, int, int], int]:
    """{(team or None, kind, subject): category} for the subjects; new applications and sites
    are resolved first by the registered resolvers."""

    def read() -> dict[tuple[int | None, int, int], int]:
        rows = Classification.objects.filter(subject_id__in={s for _, s in subjects}).values_list(
            "team_id", "kind", "subject_id", "category"
        )
        return {(team_id, kind, subject_id): category for team_id, kind, subject_id, category in rows}

    found = read()
    known = {(kind, subject_id) for _, kind, subject_id in found}
    new = {(k, s) for k, s in subjects if k != UsageKind.STATE and (k, s) not in known}
    if new and NEW_SUBJECT_RESOLVERS:
        for resolve in NEW_SUBJECT_RESOLVERS:
            resolve(new)
        found = read()
    return found


def _additive_upsert(table: str, key: tuple[str, ...], types: tuple[str, ...], rows: list[Any]) -> None:
    """Insert rows of (*key, category, seconds, spans), adding seconds and spans to a row that
    already has the key. On PostgreSQL the rows travel as one array per column in a single
    statement (`types` are the key columns' PostgreSQL types); SQLite runs it per row in-process."""
    if not rows:
        return
    q = connection.ops.quote_name
    columns = (*key, "category", "seconds", "spans")
    on_conflict = (
        f"ON CONFLICT ({', '.join(q(c) for c in key)}) DO UPDATE SET "
        f"{q('seconds')} = {q(table)}.{q('seconds')} + excluded.{q('seconds')}, "
        f"{q('spans')} = {q(table)}.{q('spans')} + excluded.{q('spans')}"
    )
    into = f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)})"
    with connection.cursor() as cursor:
        # Only quoted model table/column names and fixed type names are interpolated; every
        # value is a parameter.
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{t}[]" for t in (*types, "int2", "float8", "int4"))
            sql = f"{into} SELECT * FROM unnest({arrays}) {on_conflict}"  # noqa: S608
            cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        else:
            cursor.executemany(f"{into} VALUES ({', '.join(['%s'] * len(columns))}) {on_conflict}", rows)


CategoryOf = Callable[[int, int, int], int]  # (person, kind, subject) -> category


def _upsert_hourly(cells: dict[tuple[int, float, int, int], Cell], category: CategoryOf) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (
            person_id,
            adapt(dt.datetime.fromtimestamp(hour, UTC)),
            kind,
            subject_id,
            category(person_id, kind, subject_id),
            seconds,
            int(count),
        )
        for (person_id, hour, kind, subject_id), (seconds, count) in cells.items()
    ]
    key = ("person_id", "hour", "kind", "subject_id")
    _additive_upsert(HourlyUsage._meta.db_table, key, ("int8", "timestamptz", "int2", "int8"), rows)


def _upsert_daily(cells: dict[tuple[int, dt.date, int, int], Cell], category: CategoryOf) -> None:
    adapt = connection.ops.adapt_datefield_value
    rows = [
        (
            person_id,
            adapt(day),
            kind,
            subject_id,
            category(person_id, kind, subject_id),
            seconds,
            int(count),
        )
        for (person_id, day, kind, subject_id), (seconds, count) in cells.items()
    ]
    key = ("person_id", "day", "kind", "subject_id")
    _additive_upsert(DailyUsage._meta.db_table, key, ("int8", "date", "int2", "int8"), rows)


def _rebuild_team_days(teams: set[int], days: set[dt.date]) -> None:
    """Recompute TeamDailyUsage for every (team, day) in teams x days from the person rows.
    A superset of the touched pairs is rebuilt whole, which is always correct."""
    if not teams or not days:
        return
    q = connection.ops.quote_name
    team_table, daily_table, person_table = (q(m._meta.db_table) for m in (TeamDailyUsage, DailyUsage, Person))
    team_marks = ", ".join(["%s"] * len(teams))
    day_marks = ", ".join(["%s"] * len(days))
    day_values = [connection.ops.adapt_datefield_value(d) for d in sorted(days)]
    team_values = sorted(teams)
    with connection.cursor() as cursor:
        # Only quoted model table names are interpolated; every value is a parameter.
        cursor.execute(
            f"DELETE FROM {team_table} WHERE team_id IN ({team_marks}) AND day IN ({day_marks})",  # noqa: S608
            [*team_values, *day_values],
        )
        cursor.execute(
            f"INSERT INTO {team_table} (team_id, day, kind, subject_id, category, seconds, people) "  # noqa: S608
            f"SELECT p.team_id, d.day, d.kind, d.subject_id, MAX(d.category), SUM(d.seconds), COUNT(*) "
            f"FROM {daily_table} d JOIN {person_table} p ON p.id = d.person_id "
            f"WHERE p.team_id IN ({team_marks}) AND d.day IN ({day_marks}) "
            f"GROUP BY p.team_id, d.day, d.kind, d.subject_id",
            [*team_values, *day_values],
        )


def reclassify(kind: int, subject_id: int, category: int, team_categories: Mapping[int, int] | None = None) -> None:
    """Record a subject's resolved categories, `category` for the organisation and
    `team_categories` for teams whose own rules resolve it differently, and rewrite the rollup
    rows that carry them: a team's rows and its current members' rows take the team's
    category, every other row the organisation's."""
    overrides = {team: c for team, c in (team_categories or {}).items() if c != category}
    teams_by_category: dict[int, list[int]] = defaultdict(list)
    for team, c in overrides.items():
        teams_by_category[c].append(team)
    with transaction.atomic():
        Classification.objects.filter(kind=kind, subject_id=subject_id).delete()
        Classification.objects.bulk_create(
            [
                Classification(kind=kind, subject_id=subject_id, category=category),
                *(
                    Classification(kind=kind, subject_id=subject_id, category=c, team_id=t)
                    for t, c in overrides.items()
                ),
            ]
        )
        team_rows = TeamDailyUsage.objects.filter(kind=kind, subject_id=subject_id)
        team_rows.exclude(team_id__in=list(overrides)).update(category=category)
        for c, teams in teams_by_category.items():
            team_rows.filter(team_id__in=teams).update(category=c)
        for model in (HourlyUsage, DailyUsage):
            rows = model.objects.filter(kind=kind, subject_id=subject_id)
            rows.exclude(person__team_id__in=list(overrides)).update(category=category)
            for c, teams in teams_by_category.items():
                rows.filter(person__team_id__in=teams).update(category=c)


def roll_up_pending() -> int:
    """Roll up everything pending now; return the number of batches."""
    total = 0
    while step := roll_up_step():
        total += step
    return total
