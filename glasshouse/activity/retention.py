"""Span storage by day: PostgreSQL partitions, and retention that drops whole days.

On PostgreSQL `activity_span` is partitioned by range on `start`, one partition per UTC day
(`activity_span_p20261126`). The worker creates today's and the next days' partitions ahead of
time; the sink creates any other day a batch needs (an agent back from weeks offline) inside
the ingest transaction, before its COPY. Retention drops whole partitions: no DELETE, no
vacuum debt, and the disk space comes back at once.

The embedded SQLite default has no partitions; there retention deletes the expired days' rows
through an index on `start`. An embedded install is small, and one database file keeps its
backup a single `cp`.

`SPAN_RETENTION_DAYS` (env `GLASSHOUSE_SPAN_RETENTION_DAYS`, 0 = keep forever) is how many
whole UTC days before today are kept. Spans older than that are not stored at all (they would
be dropped at the next retention pass), so a late upload cannot recreate an expired day.
Retention drops a day only one day after it expired, so an ingest process whose clock reads
a little earlier than the worker's never writes to a day that was just dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from glasshouse.activity.models import Span

UTC = dt.UTC
AHEAD_DAYS = 2
_PREFIX = "activity_span_p"

# Partitions known to exist and committed (per process). Only added on commit, so a partition
# created inside a transaction that rolls back is never remembered.
_known: set[dt.date] = set()


def horizon() -> float | None:
    """Epoch seconds before which spans are not kept, or None when retention is off."""
    days = settings.SPAN_RETENTION_DAYS
    if days <= 0:
        return None
    first_kept = timezone.now().astimezone(UTC).date() - dt.timedelta(days=days)
    return dt.datetime.combine(first_kept, dt.time(0), tzinfo=UTC).timestamp()


def partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(day: dt.date) -> str:
    return f"{_PREFIX}{day:%Y%m%d}"


def utc_days(starts: Iterable[float]) -> set[dt.date]:
    """The UTC calendar days of epoch times (integer division: this runs per ingested span)."""
    epoch = dt.date(1970, 1, 1)
    return {epoch + dt.timedelta(days=n) for n in {int(s // 86400) for s in starts}}


def ensure_partitions(days: set[dt.date]) -> None:
    """Create the day partitions in `days` that do not exist yet (PostgreSQL only). Runs in the
    caller's transaction; concurrent callers are serialised by an advisory lock."""
    if not partitioned():
        return
    missing = days - _known
    if not missing:
        return
    table = connection.ops.quote_name(Span._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d FROM unnest(%s::date[]) AS d WHERE to_regclass(%s || to_char(d, 'YYYYMMDD')) IS NULL",
            [sorted(missing), _PREFIX],
        )
        absent = [row[0] for row in cursor.fetchall()]
        if absent:
            # One creator at a time: two ingests needing the same new day must not both try.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('glasshouse.span_partitions'))")
            for day in absent:
                start = dt.datetime.combine(day, dt.time(0), tzinfo=UTC)
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {connection.ops.quote_name(partition_name(day))} "
                    f"PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)",
                    [start, start + dt.timedelta(days=1)],
                )
    transaction.on_commit(lambda: _known.update(missing))


def existing_partitions() -> list[dt.date]:
    """The days that have a partition, oldest first (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [Span._meta.db_table],
        )
        names = [row[0] for row in cursor.fetchall()]
    return sorted(
        dt.datetime.strptime(n.removeprefix(_PREFIX), "%Y%m%d").date() for n in names if n.startswith(_PREFIX)
    )


def prepare_days_ahead(today: dt.date | None = None) -> None:
    """Create the partitions for today and the next AHEAD_DAYS days, so ingestion rarely has to."""
    today = today or timezone.now().astimezone(UTC).date()
    with transaction.atomic():
        ensure_partitions({today + dt.timedelta(days=n) for n in range(AHEAD_DAYS + 1)})


def drop_expired() -> int:
    """Remove spans of the days past retention (and a day of grace); return how many UTC days
    were dropped (PostgreSQL partitions) or had rows deleted (SQLite)."""
    keep_from = horizon()
    if keep_from is None:
        return 0
    # Everything strictly before this day goes.
    cutoff = dt.datetime.fromtimestamp(keep_from, UTC).date() - dt.timedelta(days=1)
    if partitioned():
        expired = [day for day in existing_partitions() if day < cutoff]
        for day in expired:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(partition_name(day))}")
            _known.discard(day)
        return len(expired)
    before = dt.datetime.combine(cutoff, dt.time(0), tzinfo=UTC)
    days = set(Span.objects.filter(start__lt=before).dates("start", "day"))
    for day in sorted(days):
        # A day at a time keeps each write transaction short on the single SQLite writer.
        upto = min(before, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=UTC))
        with transaction.atomic():
            Span.objects.filter(start__lt=upto).delete()
    return len(days)
