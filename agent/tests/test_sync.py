"""The uplink and sync loop against an in-test server speaking the protocol: enrolment, policy
with ETag, gzip batches, 429/500 backoff, 400 quarantine, 401 revocation, idempotent acks."""

from __future__ import annotations

from pathlib import Path

import pytest

from glasshouse_agent.model import Span
from glasshouse_agent.spool import Spool
from glasshouse_agent.sync import PolicyHolder, Syncer
from glasshouse_agent.uplink import RejectedError, RetryableError, Uplink
from tests.conftest import make_policy, policy_doc
from tests.fakeserver import FakeServer, Scripted


def enrolled(server: FakeServer) -> Uplink:
    device_id, key = server.add_device()
    return Uplink(server.url, device_id, key, timeout=5)


def syncer(server: FakeServer, tmp_path: Path, uplink: Uplink | None = None, **kw: object) -> Syncer:
    spool = Spool(str(tmp_path / "spool.sqlite3"))
    holder = PolicyHolder(make_policy())
    return Syncer(spool, uplink or enrolled(server), holder, rng=lambda: 0.5, **kw)  # type: ignore[arg-type]


def spans(n: int, offset: int = 0) -> list[Span]:
    return [Span("window", 1000.0 + i, 1001.0 + i, {"app": "xterm", "n": i}) for i in range(offset, offset + n)]


def test_enroll_exchanges_a_one_time_token(server: FakeServer) -> None:
    server.add_token("T1", uses=1)
    device_id, key = Uplink(server.url).enroll("T1", hostname="h", os_name="linux", username="alice")
    assert server.state.devices[device_id]
    assert key
    assert server.state.enrolments[0]["username"] == "alice"
    with pytest.raises(RejectedError) as exc:
        Uplink(server.url).enroll("T1", hostname="h", os_name="linux", username="alice")
    assert exc.value.status == 403
    assert "used up" in str(exc.value)


def test_policy_is_fetched_with_etag_and_applied_only_on_change(server: FakeServer, tmp_path: Path) -> None:
    server.set_policy(policy_doc(idle_threshold_seconds=120))
    s = syncer(server, tmp_path)
    assert s.refresh_policy() is True
    assert s.holder.get()[0].idle_threshold_seconds == 120
    assert s.refresh_policy() is False
    server.set_policy(policy_doc(collect={"titles": False}))
    assert s.refresh_policy() is True
    assert s.holder.get()[0].titles is False
    statuses = [status for _, status in server.state.policy_requests]
    assert statuses == [200, 304, 200]
    assert server.state.policy_requests[1][0] == server.state.policy_requests[2][0]  # sent the ETag it got
    # Stored: a restart offline still obeys the last policy.
    assert s.spool.get("policy_etag") == server.state.etag


def test_a_policy_that_does_not_parse_leaves_the_previous_one(server: FakeServer, tmp_path: Path) -> None:
    server.set_policy(policy_doc())
    s = syncer(server, tmp_path)
    s.refresh_policy()
    before = s.holder.get()
    server.set_policy({"collect": {"window": "maybe"}})
    assert s.refresh_policy() is False
    assert s.holder.get() == before


def test_batches_upload_gzipped_and_rows_leave_only_after_the_ack(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add(spans(2500))
    assert s.flush() is True
    assert [len(b["spans"]) for b in server.state.batches.values()] == [1000, 1000, 500]
    assert [seq for _, seq, _ in server.state.posts] == [1, 2, 3]
    assert [sp["n"] for sp in server.state.spans()] == list(range(2500))
    assert s.spool.stats().queued == s.spool.stats().in_flight == 0


def test_429_and_500_back_off_exponentially_then_succeed(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path, backoff_base=1.0, backoff_cap=300.0)
    s.spool.add(spans(3))
    server.state.script = [Scripted(500), Scripted(503), Scripted(429, headers={"Retry-After": "7"}), Scripted(500)]
    waits = [s.upload_step(force=True) for _ in range(4)]
    # rng 0.5 -> 75% of the step: 1*0.75, 2*0.75, max(4*0.75, Retry-After 7), 8*0.75
    assert waits == [0.75, 1.5, 7.0, 6.0]
    assert s.spool.stats().in_flight == 3  # nothing lost while failing
    assert s.upload_step(force=True) == 0.0
    assert s.failures == 0
    assert [status for _, _, status in server.state.posts] == [500, 503, 429, 500, 200]
    assert {seq for _, seq, _ in server.state.posts} == {1}  # every retry was the same batch


def test_backoff_is_capped_and_jittered(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path, backoff_base=1.0, backoff_cap=300.0)
    s.failures = 40
    for r in (0.0, 0.999):
        s._rng = lambda r=r: r  # type: ignore[misc]
        delay = s._backoff(None, "test")
        assert 150.0 <= delay <= 300.0


def test_connection_refused_is_retried_not_lost(tmp_path: Path) -> None:
    dead = FakeServer()  # bound, never serving: then closed, so the port refuses
    url = dead.url
    dead.httpd.server_close()
    s = Syncer(
        Spool(str(tmp_path / "spool.sqlite3")),
        Uplink(url, "d", "k", timeout=2),
        PolicyHolder(make_policy()),
        rng=lambda: 0.0,
    )
    s.spool.add(spans(1))
    assert s.upload_step(force=True) == 0.5
    assert s.spool.stats().in_flight == 1


def test_a_malformed_batch_is_quarantined_and_the_next_one_goes(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add([Span("window", 10.0, 5.0, {"app": "broken clock"})])
    assert s.upload_step(force=True) == 0.0
    stats = s.spool.stats()
    assert (stats.quarantined, stats.in_flight, stats.queued) == (1, 0, 0)
    detail = s.spool._db.execute("SELECT detail FROM quarantine").fetchone()[0]
    assert "spans[0].end" in detail
    s.spool.add(spans(1))
    assert s.flush() is True
    assert [seq for _, seq, status in server.state.posts if status == 200] == [2]


def test_401_stops_uploads_but_keeps_spooling(server: FakeServer, tmp_path: Path) -> None:
    uplink = enrolled(server)
    s = syncer(server, tmp_path, uplink)
    s.spool.add(spans(1))
    assert s.flush() is True
    server.state.revoked.add(uplink.device_id or "")
    s.spool.add(spans(1, offset=1))
    assert s.upload_step(force=True) == 60.0
    assert s.revoked
    posts = len(server.state.posts)
    assert s.upload_step(force=True) == 60.0  # no request at all while revoked
    assert s.refresh_policy() is False
    assert len(server.state.posts) == posts
    assert s.spool.stats().in_flight == 1  # the span is still here for a re-enrolled device


def test_every_batch_carries_the_spool_id(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add(spans(1500))
    assert s.flush() is True
    assert [body["spool_id"] for body in server.state.batches.values()] == [s.spool.spool_id] * 2
    assert [(spool_id, seq) for _, spool_id, seq in server.state.batches] == [
        (s.spool.spool_id, 1),
        (s.spool.spool_id, 2),
    ]


def test_a_lost_spool_starts_again_at_seq_1_under_a_new_id_and_nothing_is_lost(
    server: FakeServer, tmp_path: Path
) -> None:
    uplink = enrolled(server)
    first = syncer(server, tmp_path / "a", uplink)
    first.spool.add(spans(3))
    assert first.flush() is True
    # Reinstalled with the same device credential but an empty spool.
    second = syncer(server, tmp_path / "b", uplink)
    second.spool.add(spans(2, offset=3))
    assert second.flush() is True
    assert [seq for _, seq, _ in server.state.posts] == [1, 1]
    assert second.spool.spool_id != first.spool.spool_id
    assert sorted(sp["n"] for sp in server.state.spans()) == [0, 1, 2, 3, 4]


def test_a_lost_ack_is_retried_and_the_server_stores_the_batch_once(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add(spans(5))
    server.state.drop_ack_once = True
    assert s.upload_step(force=True) > 0  # stored by the server, but we never heard
    assert s.spool.stats().in_flight == 5
    assert s.upload_step(force=True) == 0.0
    assert [seq for _, seq, _ in server.state.posts] == [1, 1]
    assert len(server.state.spans()) == 5


def test_gaps_travel_with_the_next_batch(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add(spans(10))
    s.spool.enforce_caps(max_rows=4, max_age_days=1e6)
    s.spool.add(spans(1, offset=100))
    assert s.flush() is True
    assert server.state.gaps() == [{"start": 1000.0, "end": 1006.0, "reason": "spool_full", "dropped": 6}]
    assert [sp["n"] for sp in server.state.spans()] == [6, 7, 8, 9, 100]


def test_unexpected_2xx_without_an_ack_is_retried(server: FakeServer, tmp_path: Path) -> None:
    s = syncer(server, tmp_path)
    s.spool.add(spans(1))
    server.state.script = [Scripted(200, {"ok": True})]
    with pytest.raises(RetryableError):
        s.uplink.post_batch({"batch_seq": 9, "spans": [], "gaps": []})
