"""The event sink: the one place spans are written, behind one small interface.

`write_spans(device, person_id, spans, ingest_id=...)` stores already-validated spans and
returns how many it stored. PostgreSQL gets binary COPY; SQLite one executemany inside the
caller's transaction. A later ClickHouse sink implements the same function.

This is the hot path of ingestion (a batch is up to 1,000 spans): spans arrive as plain
tuples, strings are interned with one lookup per batch (and a cache of committed ids), and
each row is built in one pass with no per-span objects beyond the row itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from django.db import connection, transaction

from glasshouse.activity import retention
from glasshouse.activity.models import DeviceEvent, InternedString, Span

if TYPE_CHECKING:
    from glasshouse.devices.models import Device

UTC = dt.UTC
# SQLite allows 32,766 host parameters; stay well clear when looking strings up.
_LOOKUP_CHUNK = 500


class SpanIn(NamedTuple):
    """A validated span as the sink receives it (times are UTC epoch seconds; `kind` is a
    `SpanKind` value). A tuple, so a batch of them is cheap to build and to unpack."""

    kind: int
    start: float
    end: float
    app: str | None = None
    exe: str | None = None
    title: str | None = None
    domain: str | None = None
    user: str | None = None
    pid: int | None = None
    state: str = ""
    # A browser tab's full URL (only where the policy allows full URLs; otherwise just `domain`).
    url: str | None = None


class EventIn(NamedTuple):
    """A validated point event: `kind` is an `EventKind` value, `time` UTC epoch seconds and
    `data` the event's other fields."""

    kind: int
    time: float
    data: dict[str, Any]


class EventSink(Protocol):
    def prepare_spans(self, spans: Sequence[SpanIn]) -> None:
        """Before the batch's transaction: make storage ready for these spans (PostgreSQL day
        partitions) in a short transaction of its own."""
        ...

    def write_spans(self, device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
        """Store `spans` for one batch inside the caller's transaction; return how many were stored."""
        ...

    def write_events(self, device: Device, person_id: int | None, events: Sequence[EventIn], *, ingest_id: int) -> int:
        """Store point `events` for one batch inside the caller's transaction; return how many."""
        ...


def _digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


# value -> id of strings known to be committed. Interned strings are never deleted, so an id
# once committed stays valid; ids enter the cache only on commit, so a rolled-back insert
# (including every test's rollback) never leaves a dangling id behind. Bounded by clearing.
_committed_ids: dict[str, int] = {}
_CACHE_MAX = 200_000


def _remember(found: dict[str, int]) -> None:
    if len(_committed_ids) + len(found) > _CACHE_MAX:
        _committed_ids.clear()
    _committed_ids.update(found)


def intern_strings(values: Iterable[str]) -> dict[str, int]:
    """Ids for every value, inserting those not yet known. Safe against a concurrent writer
    inserting the same string: conflicts are ignored and the ids are read back.

    One SELECT for the values not in the cache, one multi-row INSERT for those still missing
    and one SELECT to read their ids back (chunked only past 500 values)."""
    ids: dict[str, int] = {}
    by_digest: dict[str, str] = {}
    cached = _committed_ids.get
    for v in set(values):
        known = cached(v)
        if known is None:
            by_digest[_digest(v)] = v
        else:
            ids[v] = known
    if not by_digest:
        return ids
    fresh: dict[str, int] = {}
    table = connection.ops.quote_name(InternedString._meta.db_table)

    with connection.cursor() as cursor:

        def lookup(digests: list[str]) -> None:
            for i in range(0, len(digests), _LOOKUP_CHUNK):
                chunk = digests[i : i + _LOOKUP_CHUNK]
                marks = ", ".join(["%s"] * len(chunk))
                # Only the quoted model table is interpolated; every value is a parameter.
                cursor.execute(f"SELECT id, digest FROM {table} WHERE digest IN ({marks})", chunk)  # noqa: S608
                for pk, digest in cursor.fetchall():
                    fresh[by_digest[digest]] = pk

        lookup(list(by_digest))
        # Sorted: two uploads inserting the same new strings take their unique-index locks in
        # the same order, so they queue instead of deadlocking.
        missing = sorted(d for d, v in by_digest.items() if v not in fresh)
        if missing:
            for i in range(0, len(missing), _LOOKUP_CHUNK):
                chunk = missing[i : i + _LOOKUP_CHUNK]
                marks = ", ".join(["(%s, %s)"] * len(chunk))
                params: list[str] = []
                for d in chunk:
                    params += (d, by_digest[d])
                cursor.execute(
                    f"INSERT INTO {table} (digest, value) VALUES {marks} ON CONFLICT (digest) DO NOTHING",  # noqa: S608
                    params,
                )
            lookup(missing)
    transaction.on_commit(lambda: _remember(fresh))
    ids.update(fresh)
    return ids


_COLUMNS = (
    "batch_id",
    "device_id",
    "person_id",
    "kind",
    "start",
    "end",
    "app_id",
    "exe_id",
    "title_id",
    "domain_id",
    "user_id",
    "pid",
    "state",
    "url_id",
)
_PG_TYPES = (
    "int8",
    "uuid",
    "int8",
    "int2",
    "timestamptz",
    "timestamptz",
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "int4",
    "text",
    "int8",
)


class DatabaseSink:
    """Writes spans into the `activity_span` table of the default database."""

    def prepare_spans(self, spans: Sequence[SpanIn]) -> None:
        # Creating a partition takes an exclusive lock on the span table. Inside the ingest
        # transaction that lock would be held while the batch also waits on row locks (a string
        # another batch is interning at the same moment): two uploads deadlocked that way in the
        # ingest benchmark. Here it is taken and released before the batch holds anything.
        if not retention.partitioned():
            return
        keep_from = retention.horizon()
        with transaction.atomic():
            retention.ensure_partitions(
                retention.utc_days(s.start for s in spans if keep_from is None or s.start >= keep_from)
            )

    def write_spans(self, device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
        keep_from = retention.horizon()
        if keep_from is not None:
            # Past retention already: it would be dropped at the next pass, and must not
            # recreate a day that was dropped.
            spans = [s for s in spans if s.start >= keep_from]
        if not spans:
            return 0
        # Normally a no-op: prepare_spans() made the days' partitions before this transaction.
        retention.ensure_partitions(retention.utc_days(s.start for s in spans))
        strings: set[str | None] = set()
        for _, _, _, app, exe, title, domain, user, _, _, url in spans:
            strings.update((app, exe, title, domain, user, url))
        strings.discard(None)
        # None is never a key, so ref(None) is None: one dict lookup per column, no branch.
        ref = cast("Callable[[str | None], int | None]", intern_strings(s for s in strings if s is not None).get)
        table = Span._meta.db_table
        quote = connection.ops.quote_name
        columns = ", ".join(quote(c) for c in _COLUMNS)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                device_id = device.pk
                from_ts = dt.datetime.fromtimestamp
                raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
                with raw.copy(f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(list(_PG_TYPES))
                    write_row = copy.write_row
                    for kind, start, end, app, exe, title, domain, user, pid, state, url in spans:
                        write_row(
                            (
                                ingest_id,
                                device_id,
                                person_id,
                                kind,
                                from_ts(start, UTC),
                                from_ts(end, UTC),
                                ref(app),
                                ref(exe),
                                ref(title),
                                ref(domain),
                                ref(user),
                                pid,
                                state,
                                ref(url),
                            )
                        )
            else:
                # Django stores UUIDs on SQLite as 32 hex digits and datetimes as naive UTC text
                # ("2025-01-15 09:00:00.125000"); write them the same way, without the per-value
                # time zone round trip of connection.ops, so ORM reads see what the ORM would write.
                # Spans are mostly contiguous (one's end is the next one's start), so each
                # distinct time is formatted once.
                text = _sqlite_times({t for s in spans for t in (s[1], s[2])})
                device_hex = device.pk.hex
                rows = [
                    (
                        ingest_id,
                        device_hex,
                        person_id,
                        kind,
                        text[start],
                        text[end],
                        ref(app),
                        ref(exe),
                        ref(title),
                        ref(domain),
                        ref(user),
                        pid,
                        state,
                        ref(url),
                    )
                    for kind, start, end, app, exe, title, domain, user, pid, state, url in spans
                ]
                placeholders = ", ".join(["%s"] * len(_COLUMNS))
                # Only quoted model names are interpolated; every value is a parameter.
                sql = f"INSERT INTO {quote(table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
                cursor.executemany(sql, rows)
        return len(spans)

    def write_events(self, device: Device, person_id: int | None, events: Sequence[EventIn], *, ingest_id: int) -> int:
        # Events are few (a USB insertion, a file copy) next to spans: plain bulk_create.
        from_ts = dt.datetime.fromtimestamp
        DeviceEvent.objects.bulk_create(
            DeviceEvent(
                batch_id=ingest_id,
                device=device,
                person_id=person_id,
                kind=e.kind,
                time=from_ts(e.time, UTC),
                data=e.data,
            )
            for e in events
        )
        return len(events)


def _sqlite_times(times: Iterable[float]) -> dict[float, str]:
    """Epoch seconds -> the text Django's SQLite backend stores for that UTC datetime
    ("2025-01-15 09:00:00.125000", no fraction when it is zero): what
    `str(datetime(1970, 1, 1) + timedelta(seconds=t))` gives, in about half the time."""
    from_ts = dt.datetime.fromtimestamp
    iso = dt.datetime.isoformat
    return {t: iso(from_ts(t, UTC), " ")[:-6] for t in times}


_sink: EventSink = DatabaseSink()


def get_sink() -> EventSink:
    return _sink


def prepare_spans(spans: Sequence[SpanIn]) -> None:
    _sink.prepare_spans(spans)


def write_spans(device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
    return _sink.write_spans(device, person_id, spans, ingest_id=ingest_id)


def write_events(device: Device, person_id: int | None, events: Sequence[EventIn], *, ingest_id: int) -> int:
    return _sink.write_events(device, person_id, events, ingest_id=ingest_id)
