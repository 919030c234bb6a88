"""Incremental rollups of window spans into hour x person x app and local day x person x app.

The worker takes batches not yet rolled up in ingest order, adds their spans' seconds to the
rollup rows (an additive upsert) and marks the batches, all in one transaction. A batch that
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
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction

from glasshouse.activity.models import DailyAppUsage, HourlyAppUsage, IngestBatch, Span, SpanKind
from glasshouse.org.models import Person

UTC = dt.UTC
BATCHES_PER_STEP = 200


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
        spans = list(
            Span.objects.filter(
                batch_id__in=batch_ids, kind=SpanKind.WINDOW, person_id__isnull=False, app_id__isnull=False
            ).values_list("person_id", "app_id", "start", "end")
        )
        zones = {
            pk: _zone(tz)
            for pk, tz in Person.objects.filter(pk__in={s[0] for s in spans}).values_list("pk", "time_zone")
        }
        hourly: dict[tuple[int, float, int], list[float]] = defaultdict(lambda: [0.0, 0])
        daily: dict[tuple[int, dt.date, int], list[float]] = defaultdict(lambda: [0.0, 0])
        for person_id, app_id, start_at, end_at in spans:
            start, end = start_at.timestamp(), end_at.timestamp()
            if end <= start or person_id not in zones:
                continue
            for i, (hour, seconds) in enumerate(hour_pieces(start, end)):
                cell = hourly[(person_id, hour, app_id)]
                cell[0] += seconds
                cell[1] += 1 if i == 0 else 0  # a span counts once, in the hour it starts
            for i, (day, seconds) in enumerate(day_pieces(start, end, zones[person_id])):
                cell = daily[(person_id, day, app_id)]
                cell[0] += seconds
                cell[1] += 1 if i == 0 else 0
        _upsert_hourly(hourly)
        _upsert_daily(daily)
        IngestBatch.objects.filter(id__in=batch_ids).update(rolled_up=True)
    return len(batch_ids)


def _additive_upsert(table: str, key: tuple[str, ...], rows: list[Any]) -> None:
    if not rows:
        return
    q = connection.ops.quote_name
    columns = (*key, "seconds", "spans")
    # Only quoted model table/column names are interpolated; every value is a parameter.
    sql = (
        f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(q(c) for c in key)}) DO UPDATE SET "
        f"{q('seconds')} = {q(table)}.{q('seconds')} + excluded.{q('seconds')}, "
        f"{q('spans')} = {q(table)}.{q('spans')} + excluded.{q('spans')}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _upsert_hourly(cells: dict[tuple[int, float, int], list[float]]) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (person_id, adapt(dt.datetime.fromtimestamp(hour, UTC)), app_id, seconds, int(count))
        for (person_id, hour, app_id), (seconds, count) in cells.items()
    ]
    _additive_upsert(HourlyAppUsage._meta.db_table, ("person_id", "hour", "app_id"), rows)


def _upsert_daily(cells: dict[tuple[int, dt.date, int], list[float]]) -> None:
    adapt = connection.ops.adapt_datefield_value
    rows = [
        (person_id, adapt(day), app_id, seconds, int(count))
        for (person_id, day, app_id), (seconds, count) in cells.items()
    ]
    _additive_upsert(DailyAppUsage._meta.db_table, ("person_id", "day", "app_id"), rows)


def roll_up_pending() -> int:
    """Roll up everything pending now; return the number of batches."""
    total = 0
    while step := roll_up_step():
        total += step
    return total
