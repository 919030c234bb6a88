"""The spool: durable until acknowledged, batches with a durable batch_seq, quarantine, caps
that leave a visible gap, crash recovery."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from glasshouse_agent.model import Span
from glasshouse_agent.spool import MAX_BATCH_BYTES, Spool


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def span(i: int, kind: str = "window") -> Span:
    return Span(kind, float(i), float(i) + 1, {"app": f"app{i}"})  # type: ignore[arg-type]


def test_file_is_private_and_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = str(tmp_path / "s" / "spool.sqlite3")
    spool = Spool(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.close()


def test_batch_is_assigned_by_count_or_age_and_acked_rows_leave(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(str(tmp_path / "spool.sqlite3"), clock=clock)
    spool.add([span(i) for i in range(5)])
    assert spool.assign_batch(max_spans=10, max_seconds=30) is None  # neither full nor old
    clock.t += 30
    batch = spool.assign_batch(max_spans=10, max_seconds=30)
    assert batch is not None
    assert batch.seq == 1
    assert [s.attrs["app"] for s in batch.spans] == [f"app{i}" for i in range(5)]
    spool.add([span(i) for i in range(5, 25)])
    # Until batch 1 is acked it is what comes back, unchanged.
    again = spool.assign_batch(max_spans=10, max_seconds=30)
    assert again == batch
    spool.ack(1)
    b2 = spool.assign_batch(max_spans=10, max_seconds=30)
    assert b2 is not None
    assert (b2.seq, len(b2.spans)) == (2, 10)
    assert spool.stats().queued == 10
    assert spool.get("last_acked_seq") == "1"
    assert spool.get("last_upload") == str(clock.t)


def test_batch_seq_survives_a_reopen_and_is_never_reused(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path)
    spool.add([span(1)])
    b1 = spool.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert b1 is not None
    spool.close()
    spool = Spool(path)  # a restart before the ack: the same batch, the same seq
    assert spool.pending_batch() == b1
    spool.ack(b1.seq)
    spool.add([span(2)])
    b2 = spool.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert b2 is not None
    assert b2.seq == b1.seq + 1


def test_the_spool_keeps_its_id_across_reopens_and_a_new_file_gets_a_new_one(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path)
    spool_id = spool.spool_id
    assert len(spool_id) == 32
    assert int(spool_id, 16) >= 0  # hex
    assert spool_id == spool_id.lower()
    spool.add([span(1)])
    batch = spool.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert batch is not None
    assert batch.body()["spool_id"] == spool_id
    assert batch.body()["batch_seq"] == 1
    spool.close()
    reopened = Spool(path)
    assert reopened.spool_id == spool_id
    assert reopened.pending_batch() == batch
    reopened.close()
    # The disk was wiped: a new file restarts at batch_seq 1, but under a new identity.
    os.remove(path)
    fresh = Spool(path)
    assert fresh.spool_id != spool_id
    fresh.add([span(2)])
    again = fresh.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert again is not None
    assert (again.seq, again.body()["spool_id"]) == (1, fresh.spool_id)
    assert Spool(str(tmp_path / "other.sqlite3")).spool_id not in (spool_id, fresh.spool_id)


def test_a_spool_from_before_spool_ids_gets_one_and_resends_its_pending_batch_as_before(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path)
    spool.add([span(1)])
    old = spool.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert old is not None
    spool.add([span(2)])
    # What an older agent left behind: no meta table, batch 1 assigned and perhaps stored.
    spool._db.execute("DROP TABLE meta")
    spool.close()
    upgraded = Spool(path)
    assert len(upgraded.spool_id) == 32
    pending = upgraded.pending_batch()
    assert pending is not None
    assert pending.seq == old.seq
    # Sent as the old agent sent it, so the server recognises a retry of what it may hold.
    assert "spool_id" not in pending.body()
    upgraded.ack(pending.seq)
    nxt = upgraded.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert nxt is not None
    assert (nxt.seq, nxt.body()["spool_id"]) == (old.seq + 1, upgraded.spool_id)
    upgraded.close()
    assert Spool(path).spool_id == upgraded.spool_id


def test_a_batch_stays_under_the_servers_byte_limit(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    big = "x" * 4000
    spool.add([Span("window", i, i, {"app": "a", "title": big}) for i in range(1000)])
    batch = spool.assign_batch(max_spans=1000, max_seconds=0, force=True)
    assert batch is not None
    assert 0 < len(batch.spans) < 1000
    assert len(json.dumps(batch.body())) <= MAX_BATCH_BYTES + 64 * 1024


def test_quarantine_keeps_the_batch_aside_and_moves_on(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    spool.add([span(1), span(2)])
    batch = spool.assign_batch(max_spans=10, max_seconds=0, force=True)
    assert batch is not None
    spool.quarantine(batch.seq, 400, "spans[1].end: before start")
    stats = spool.stats()
    assert (stats.queued, stats.in_flight, stats.quarantined, stats.pending_batches) == (0, 0, 1, 0)
    body = spool._db.execute("SELECT body FROM quarantine").fetchone()[0]
    assert json.loads(body)["spans"][0]["app"] == "app1"


def test_row_cap_drops_the_oldest_queued_and_records_a_gap(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite3"), clock=Clock(100.0))  # the spans are recent
    spool.add([span(i) for i in range(3)])
    in_flight = spool.assign_batch(max_spans=3, max_seconds=0, force=True)
    assert in_flight is not None
    spool.add([span(i) for i in range(10, 20)])
    dropped = spool.enforce_caps(max_rows=8, max_age_days=14)
    assert dropped == 5
    remaining = [r[0] for r in spool._db.execute("SELECT start FROM spans WHERE batch_seq IS NULL ORDER BY id")]
    assert remaining == [15.0, 16.0, 17.0, 18.0, 19.0]  # the newest survive
    assert spool.stats().in_flight == 3  # the batch already sent is left alone
    spool.ack(in_flight.seq)
    nxt = spool.assign_batch(max_spans=100, max_seconds=1e9)  # a pending gap makes it due at once
    assert nxt is not None
    assert nxt.gaps == [{"start": 10.0, "end": 15.0, "reason": "spool_full", "dropped": 5}]


def test_age_cap_drops_old_spans_with_a_gap(tmp_path: Path) -> None:
    clock = Clock(100 * 86400.0)
    spool = Spool(str(tmp_path / "spool.sqlite3"), clock=clock)
    spool.add([Span("idle", 10 * 86400.0, 10 * 86400.0 + 60, {"state": "idle"}), span(99 * 86400)])
    assert spool.enforce_caps(max_rows=1000, max_age_days=14) == 1
    batch = spool.assign_batch(max_spans=100, max_seconds=1e9)
    assert batch is not None
    assert batch.gaps[0]["reason"] == "max_age"
    assert len(batch.spans) == 1


def test_open_spans_are_checkpointed_and_recovered_once(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite3")
    spool = Spool(path)
    spool.add([], [Span("window", 0, 50, {"app": "a"}, uid=1000)])
    spool.add([Span("idle", 0, 1, {"state": "active"})], [Span("window", 0, 80, {"app": "a"}, uid=1000)])
    spool.close()
    spool = Spool(path)
    assert spool.recover_open() == 1
    assert spool.recover_open() == 0
    rows = spool._db.execute('SELECT kind, start, "end", uid FROM spans ORDER BY id').fetchall()
    assert rows == [("idle", 0.0, 1.0, None), ("window", 0.0, 80.0, 1000)]


CHILD = textwrap.dedent(
    """
    import sys
    from glasshouse_agent.model import Span
    from glasshouse_agent.spool import Spool
    spool = Spool(sys.argv[1])
    n = 0
    while True:
        spool.add([Span("window", n + i, n + i + 1, {"app": "a", "n": n + i}) for i in range(5)])
        n += 5
        print("committed", n, flush=True)
        if n % 50 == 0:
            batch = spool.assign_batch(max_spans=30, max_seconds=0, force=True)
            spool.ack(batch.seq)
            print("acked", ",".join(str(s.attrs["n"]) for s in batch.spans), flush=True)
    """
)


def test_kill_9_while_writing_loses_nothing_committed_and_resurrects_nothing_acked(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite3")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed, acked = 0, set()
    deadline = time.monotonic() + 30
    while committed < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline().split()
        if line[0] == "committed":
            committed = int(line[1])
        else:
            acked |= {int(n) for n in line[1].split(",")}
    os.kill(proc.pid, signal.SIGKILL)  # mid-transaction, most likely
    proc.wait()
    # Anything printed after the kill decision still happened before it.
    for raw in proc.stdout:
        line = raw.split()
        if line[0] == "committed":
            committed = int(line[1])
        else:
            acked |= {int(n) for n in line[1].split(",")}
    assert committed >= 400
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    present = {json.loads(a)["n"] for (a,) in db.execute("SELECT attrs FROM spans")}
    assert set(range(committed)) - acked <= present  # every committed, unacked span is there
    assert not (present & acked)  # and no acknowledged span came back
    db.close()


def test_events_travel_in_the_same_batches_as_spans_and_leave_on_ack(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite3"), clock=Clock())
    spool.add([span(1)])
    usb = {"kind": "usb", "time": 5.5, "action": "insert", "verdict": "blocked", "vid": "0781", "pid": "5567"}
    spool.add_events([usb, {"kind": "file", "time": 6.0, "path": "/media/a/x.txt", "size": 12}])
    spool.add([span(7)])
    batch = spool.assign_batch(max_spans=10, max_seconds=30, force=True)
    assert batch is not None
    assert [s.attrs["app"] for s in batch.spans] == ["app1", "app7"]
    assert batch.events == [usb, {"kind": "file", "time": 6.0, "path": "/media/a/x.txt", "size": 12}]
    body = json.loads(json.dumps(batch.body()))
    assert [e["kind"] for e in body["events"]] == ["usb", "file"]
    assert len(body["spans"]) == 2
    spool.ack(batch.seq)
    assert spool.stats().queued == 0
    assert spool.assign_batch(max_spans=10, max_seconds=30, force=True) is None


def test_an_unknown_event_kind_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite3"), clock=Clock())
    good = {"kind": "usb", "time": 1.0, "action": "remove"}
    with pytest.raises(ValueError, match="screenshot"):
        spool.add_events([good, {"kind": "screenshot", "time": 2.0}])
    assert spool.stats().queued == 0
