"""The offline spool: a SQLite file (WAL, synchronous=FULL) that holds every span from the
moment it is closed until the server has acknowledged the batch that carried it.

Lifecycle of a row: inserted with batch_seq NULL -> assigned to a batch (the batch_seq is
committed before the first upload attempt, so a retry after a crash resends the very same
batch and the server's idempotency makes it count once) -> deleted when the server acks that
batch_seq, or moved to `quarantine` when the server refuses it as malformed.

Identity: each spool file has a random `spool_id` (uuid4 hex), made once when the file is
created and kept in the `meta` table. It travels with every batch, so the server keys
idempotency on (device, spool_id, batch_seq): a spool lost with its disk restarts at batch_seq 1
under a new id, and its batches are stored instead of being mistaken for retries.

Caps: above `max_rows`, or older than `max_age_days`, the oldest unassigned rows are dropped and
a `gaps` row records what was lost; gaps travel in the next batch so the loss is visible."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from glasshouse_agent.model import Span

# Point events (USB, files written to removable media, blocked apps and sites) share the spans
# table, and so its durability, batching and caps; a batch carries them in `events`
# (docs/agent-protocol.md). Their row has start == end == the event's time.
EVENT_KINDS = frozenset({"usb", "file", "app_block", "web_block"})

# The server refuses more than 2 MiB of uncompressed JSON; leave room for the envelope and gaps.
MAX_BATCH_BYTES = 2 * 1024 * 1024 - 64 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    attrs TEXT NOT NULL,
    uid INTEGER,
    size INTEGER NOT NULL,
    inserted REAL NOT NULL,
    batch_seq INTEGER
);
CREATE INDEX IF NOT EXISTS spans_batch ON spans (batch_seq, id);
CREATE TABLE IF NOT EXISTS open_spans (
    kind TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL, attrs TEXT NOT NULL, uid INTEGER
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start REAL NOT NULL, "end" REAL NOT NULL, reason TEXT NOT NULL, dropped INTEGER NOT NULL,
    batch_seq INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY, created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_seq INTEGER NOT NULL, status INTEGER, detail TEXT NOT NULL, body TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Batches of a spool made before spool ids existed, assigned (and perhaps already stored by the
# server) before the upgrade, are resent without a spool_id so the server still sees retries.
_LEGACY_SEQ = "legacy_batch_seq"


@dataclass(frozen=True)
class Batch:
    seq: int
    spans: list[Span]
    gaps: list[dict[str, Any]]
    attempts: int
    spool_id: str = ""  # empty only for a batch assigned before this spool had an id
    events: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"batch_seq": self.seq}
        if self.spool_id:
            body["spool_id"] = self.spool_id
        body["spans"] = [s.to_wire() for s in self.spans]
        body["gaps"] = self.gaps
        if self.events:
            body["events"] = self.events
        return body


@dataclass(frozen=True)
class Stats:
    queued: int  # spans not yet in a batch
    in_flight: int  # spans in a batch awaiting its ack
    pending_batches: int
    gaps: int
    quarantined: int
    open_spans: int


class Spool:
    """One connection; use one Spool per thread (SQLite WAL lets them work side by side)."""

    def __init__(self, path: str, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        # Spans are personal data: the file is readable by its owner (root) only. Create it only
        # if it does not exist: closing a descriptor of a database this process already has open
        # (the service's second Spool, in its sync thread) would drop every SQLite lock the process
        # holds on it, and another process closing its connection (`glasshouse-agent status`)
        # would then checkpoint and delete the WAL under the running service.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we report it, so a power cut cannot lose spans that
        # the collectors were told are stored.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'spool_id'").fetchone()
            if row is None:
                # A new file, or one from an agent before spool ids: batches already assigned
                # keep going out as they did (see _LEGACY_SEQ); everything after carries the id.
                (legacy,) = db.execute("SELECT max(seq) FROM batches").fetchone()
                if legacy is not None:
                    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (_LEGACY_SEQ, str(legacy)))
                row = (uuid.uuid4().hex,)
                db.execute("INSERT INTO meta (key, value) VALUES ('spool_id', ?)", row)
            self.spool_id: str = str(row[0])
            legacy_row = db.execute("SELECT value FROM meta WHERE key = ?", (_LEGACY_SEQ,)).fetchone()
            self._legacy_seq = int(legacy_row[0]) if legacy_row else 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing spans -------------------------------------------------------------------

    def add(self, spans: Iterable[Span], open_spans: Iterable[Span] | None = None) -> None:
        """Store closed spans and, if given, replace the checkpoint of still-open spans, in one
        transaction: a span is either open in the checkpoint or closed in `spans`, never both."""
        now = self._clock()
        rows = [
            (s.kind, s.start, s.end, s.to_db(), s.uid, len(json.dumps(s.to_wire(), separators=(",", ":"))), now)
            for s in spans
        ]
        with self._tx() as db:
            db.executemany(
                'INSERT INTO spans (kind, start, "end", attrs, uid, size, inserted) VALUES (?, ?, ?, ?, ?, ?, ?)', rows
            )
            if open_spans is not None:
                db.execute("DELETE FROM open_spans")
                db.executemany(
                    'INSERT INTO open_spans (kind, start, "end", attrs, uid) VALUES (?, ?, ?, ?, ?)',
                    [(s.kind, s.start, s.end, s.to_db(), s.uid) for s in open_spans],
                )

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Store point events: each a dict with `kind` (one of EVENT_KINDS), `time` (UTC epoch
        seconds) and the kind's fields (docs/agent-protocol.md)."""
        now = self._clock()
        rows = []
        for event in events:
            kind, at = event["kind"], float(event["time"])
            if kind not in EVENT_KINDS:
                raise ValueError(f"unknown event kind {kind!r}")
            fields = {k: v for k, v in event.items() if k not in ("kind", "time")}
            attrs = json.dumps(fields, sort_keys=True, separators=(",", ":"))
            rows.append((kind, at, at, attrs, None, len(attrs) + 40, now))
        with self._tx() as db:
            db.executemany(
                'INSERT INTO spans (kind, start, "end", attrs, uid, size, inserted) VALUES (?, ?, ?, ?, ?, ?, ?)', rows
            )

    def recover_open(self) -> int:
        """After a restart, the checkpointed open spans become closed spans ending where they
        were last seen. Returns how many were recovered."""
        with self._tx() as db:
            rows = db.execute('SELECT kind, start, "end", attrs, uid FROM open_spans').fetchall()
            now = self._clock()
            for kind, start, end, attrs, uid in rows:
                span = Span.from_db(kind, start, end, attrs, uid)
                db.execute(
                    'INSERT INTO spans (kind, start, "end", attrs, uid, size, inserted) VALUES (?, ?, ?, ?, ?, ?, ?)',
                    (kind, start, end, attrs, uid, len(json.dumps(span.to_wire())), now),
                )
            db.execute("DELETE FROM open_spans")
        return len(rows)

    # -- batches -------------------------------------------------------------------------

    def pending_batch(self) -> Batch | None:
        """The oldest batch that was assigned but not yet acknowledged or quarantined."""
        row = self._db.execute("SELECT seq, attempts FROM batches ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        seq, attempts = row
        spans: list[Span] = []
        events: list[dict[str, Any]] = []
        for r in self._db.execute(
            'SELECT kind, start, "end", attrs, uid FROM spans WHERE batch_seq = ? ORDER BY id', (seq,)
        ):
            if r[0] in EVENT_KINDS:
                events.append({"kind": r[0], "time": r[1], **json.loads(r[3])})
            else:
                spans.append(Span.from_db(*r))
        gaps = [
            {"start": r[0], "end": r[1], "reason": r[2], "dropped": r[3]}
            for r in self._db.execute(
                'SELECT start, "end", reason, dropped FROM gaps WHERE batch_seq = ? ORDER BY id', (seq,)
            )
        ]
        spool_id = "" if seq <= self._legacy_seq else self.spool_id
        return Batch(seq=seq, spans=spans, gaps=gaps, attempts=attempts, spool_id=spool_id, events=events)

    def assign_batch(self, *, max_spans: int, max_seconds: float, force: bool = False) -> Batch | None:
        """Give the oldest queued spans (and all unreported gaps) the next batch_seq, durably,
        when there are `max_spans` of them, the oldest has waited `max_seconds`, or `force`.
        Returns the pending batch instead if one exists: batches go out strictly in order."""
        pending = self.pending_batch()
        if pending is not None:
            return pending
        now = self._clock()
        with self._tx() as db:
            count, oldest = db.execute("SELECT count(*), min(inserted) FROM spans WHERE batch_seq IS NULL").fetchone()
            (gap_count,) = db.execute("SELECT count(*) FROM gaps WHERE batch_seq IS NULL").fetchone()
            if count == 0 and gap_count == 0:
                return None
            due = force or count >= max_spans or gap_count > 0 or (oldest is not None and now - oldest >= max_seconds)
            if not due:
                return None
            last_id, total = None, 0
            for row_id, size in db.execute(
                "SELECT id, size FROM spans WHERE batch_seq IS NULL ORDER BY id LIMIT ?", (max_spans,)
            ):
                if total + size > MAX_BATCH_BYTES and last_id is not None:
                    break
                total += size + 1
                last_id = row_id
            seq = int(self._get(db, "last_batch_seq", "0")) + 1
            self._set(db, "last_batch_seq", str(seq))
            db.execute("INSERT INTO batches (seq, created) VALUES (?, ?)", (seq, now))
            if last_id is not None:
                db.execute("UPDATE spans SET batch_seq = ? WHERE batch_seq IS NULL AND id <= ?", (seq, last_id))
            db.execute("UPDATE gaps SET batch_seq = ? WHERE batch_seq IS NULL", (seq,))
        return self.pending_batch()

    def record_attempt(self, seq: int, error: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE seq = ?", (error, seq))

    def ack(self, seq: int) -> None:
        """The server stored batch `seq`: only now do its spans leave the spool."""
        with self._tx() as db:
            db.execute("DELETE FROM spans WHERE batch_seq = ?", (seq,))
            db.execute("DELETE FROM gaps WHERE batch_seq = ?", (seq,))
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._set(db, "last_upload", str(self._clock()))
            self._set(db, "last_acked_seq", str(seq))

    def quarantine(self, seq: int, status: int | None, detail: str) -> None:
        """The server refused batch `seq` as malformed: keep it aside for inspection, move on."""
        batch = self.pending_batch()
        body = json.dumps(batch.body() if batch and batch.seq == seq else {"batch_seq": seq})
        with self._tx() as db:
            db.execute(
                "INSERT INTO quarantine (batch_seq, status, detail, body, at) VALUES (?, ?, ?, ?, ?)",
                (seq, status, detail, body, self._clock()),
            )
            db.execute("DELETE FROM spans WHERE batch_seq = ?", (seq,))
            db.execute("DELETE FROM gaps WHERE batch_seq = ?", (seq,))
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    # -- caps ----------------------------------------------------------------------------

    def enforce_caps(self, *, max_rows: int, max_age_days: float) -> int:
        """Drop the oldest queued spans beyond the caps, recording each drop as a gap. Spans
        already in a batch are left alone: that batch may be on the server already. Returns
        the number of spans dropped."""
        dropped = 0
        cutoff = self._clock() - max_age_days * 86400
        with self._tx() as db:
            dropped += self._drop(db, 'batch_seq IS NULL AND "end" < ?', (cutoff,), "max_age")
            (total,) = db.execute("SELECT count(*) FROM spans").fetchone()
            excess = total - max_rows
            if excess > 0:
                row = db.execute(
                    "SELECT id FROM spans WHERE batch_seq IS NULL ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)
                ).fetchone()
                if row is not None:
                    dropped += self._drop(db, "batch_seq IS NULL AND id <= ?", (row[0],), "spool_full")
        return dropped

    def _drop(self, db: sqlite3.Connection, where: str, args: tuple[Any, ...], reason: str) -> int:
        # `where` is one of this module's literals, never outside input.
        query = f'SELECT count(*), min(start), max("end") FROM spans WHERE {where}'  # noqa: S608
        count, start, end = db.execute(query, args).fetchone()
        if count:
            db.execute(f"DELETE FROM spans WHERE {where}", args)  # noqa: S608
            db.execute(
                'INSERT INTO gaps (start, "end", reason, dropped) VALUES (?, ?, ?, ?)', (start, end, reason, count)
            )
        return int(count)

    # -- state and status ----------------------------------------------------------------

    def stats(self) -> Stats:
        db = self._db
        queued, in_flight = db.execute(
            "SELECT count(*) FILTER (WHERE batch_seq IS NULL), count(*) FILTER (WHERE batch_seq IS NOT NULL) FROM spans"
        ).fetchone()
        return Stats(
            queued=queued,
            in_flight=in_flight,
            pending_batches=db.execute("SELECT count(*) FROM batches").fetchone()[0],
            gaps=db.execute("SELECT count(*) FROM gaps").fetchone()[0],
            quarantined=db.execute("SELECT count(*) FROM quarantine").fetchone()[0],
            open_spans=db.execute("SELECT count(*) FROM open_spans").fetchone()[0],
        )

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set(self, key: str, value: str | None) -> None:
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                self._set(db, key, value)

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    @staticmethod
    def _get(db: sqlite3.Connection, key: str, default: str) -> str:
        row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    @staticmethod
    def _set(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
