"""The event sink: the one place spans are written, behind one small interface.

`write_spans(device, person_id, spans, ingest_id=...)` stores already-validated spans and
returns how many it stored. PostgreSQL gets binary COPY; SQLite an executemany inside the
caller's transaction. A later ClickHouse sink implements the same function.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.db import connection, transaction

from glasshouse.activity.models import InternedString, Span, SpanKind

if TYPE_CHECKING:
    from glasshouse.devices.models import Device

UTC = dt.UTC
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
# SQLite allows 32,766 host parameters; stay well clear when looking strings up.
_LOOKUP_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SpanIn:
    """A validated span as the sink receives it (times are UTC epoch seconds)."""

    kind: SpanKind
    start: float
    end: float
    app: str | None = None
    exe: str | None = None
    title: str | None = None
    domain: str | None = None
    user: str | None = None
    pid: int | None = None
    state: str = ""


class EventSink(Protocol):
    def write_spans(self, device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
        """Store `spans` for one batch inside the caller's transaction; return how many were stored."""
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
    inserting the same string: conflicts are ignored and the ids are read back."""
    ids: dict[str, int] = {}
    by_digest: dict[str, str] = {}
    for v in set(values):
        cached = _committed_ids.get(v)
        if cached is None:
            by_digest[_digest(v)] = v
        else:
            ids[v] = cached
    if not by_digest:
        return ids
    fresh: dict[str, int] = {}

    def lookup(digests: list[str]) -> None:
        for i in range(0, len(digests), _LOOKUP_CHUNK):
            chunk = digests[i : i + _LOOKUP_CHUNK]
            for pk, digest in InternedString.objects.filter(digest__in=chunk).values_list("pk", "digest"):
                fresh[by_digest[digest]] = pk

    lookup(list(by_digest))
    missing = [d for d, v in by_digest.items() if v not in fresh]
    if missing:
        InternedString.objects.bulk_create(
            [InternedString(digest=d, value=by_digest[d]) for d in missing], ignore_conflicts=True, batch_size=500
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
)


class DatabaseSink:
    """Writes spans into the `activity_span` table of the default database."""

    def write_spans(self, device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
        if not spans:
            return 0
        strings: set[str] = set()
        for s in spans:
            for value in (s.app, s.exe, s.title, s.domain, s.user):
                if value is not None:
                    strings.add(value)
        ids = intern_strings(strings)

        def ref(value: str | None) -> int | None:
            return None if value is None else ids[value]

        from_ts = dt.datetime.fromtimestamp
        rows = [
            (
                ingest_id,
                device.pk,
                person_id,
                int(s.kind),
                from_ts(s.start, UTC),
                from_ts(s.end, UTC),
                ref(s.app),
                ref(s.exe),
                ref(s.title),
                ref(s.domain),
                ref(s.user),
                s.pid,
                s.state,
            )
            for s in spans
        ]
        table = Span._meta.db_table
        quote = connection.ops.quote_name
        columns = ", ".join(quote(c) for c in _COLUMNS)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                raw = cursor.cursor  # the psycopg 3 cursor under Django's wrapper
                with raw.copy(f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(list(_PG_TYPES))
                    for row in rows:
                        copy.write_row(row)
            else:
                # Django stores UUIDs on SQLite as 32 hex digits and datetimes as naive UTC text
                # ("2025-01-15 09:00:00.125000"); write them the same way, without the per-value
                # time zone round trip of connection.ops, so ORM reads see what the ORM would write.
                device_hex = device.pk.hex
                sqlite_rows = [
                    (
                        ingest_id,
                        device_hex,
                        r[2],
                        r[3],
                        str(_NAIVE_EPOCH + dt.timedelta(seconds=s.start)),
                        str(_NAIVE_EPOCH + dt.timedelta(seconds=s.end)),
                        *r[6:],
                    )
                    for r, s in zip(rows, spans, strict=True)
                ]
                placeholders = ", ".join(["%s"] * len(_COLUMNS))
                # Only quoted model names are interpolated; every value is a parameter.
                sql = f"INSERT INTO {quote(table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
                cursor.executemany(sql, sqlite_rows)
        return len(rows)


_sink: EventSink = DatabaseSink()


def get_sink() -> EventSink:
    return _sink


def write_spans(device: Device, person_id: int | None, spans: Sequence[SpanIn], *, ingest_id: int) -> int:
    return _sink.write_spans(device, person_id, spans, ingest_id=ingest_id)
