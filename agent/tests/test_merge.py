"""Heartbeat merging: identical states within the pulse become one span; a change closes it."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from glasshouse_agent.merge import Merger
from glasshouse_agent.model import Attrs, Sample, Span

A: Attrs = {"app": "firefox", "pid": 1}
B: Attrs = {"app": "xterm", "pid": 2}


def feed(merger: Merger, samples: list[Sample]) -> list[Span]:
    out: list[Span] = []
    for s in samples:
        out += merger.add(s)
    return out


def test_identical_heartbeats_within_pulse_become_one_span() -> None:
    m = Merger(5)
    assert feed(m, [Sample("window", t, A) for t in (0, 4, 8, 12.5)]) == []
    assert m.open_spans() == [Span("window", 0, 12.5, A)]


def test_a_changed_state_closes_the_span_at_the_change() -> None:
    m = Merger(5)
    closed = feed(m, [Sample("window", 0, A), Sample("window", 4, A), Sample("window", 6, B)])
    assert closed == [Span("window", 0, 6, A)]
    assert m.open_spans() == [Span("window", 6, 6, B)]


def test_a_silence_longer_than_the_pulse_ends_the_span_where_it_was_last_seen() -> None:
    m = Merger(5)
    closed = feed(m, [Sample("window", 0, A), Sample("window", 4, A), Sample("window", 30, A)])
    assert closed == [Span("window", 0, 4, A)]
    assert m.open_spans() == [Span("window", 30, 30, A)]


def test_empty_attrs_mean_nothing_active_and_close_without_opening() -> None:
    m = Merger(5)
    closed = feed(m, [Sample("window", 0, A), Sample("window", 3, {})])
    assert closed == [Span("window", 0, 3, A)]
    assert m.open_spans() == []


def test_kinds_and_sources_merge_separately() -> None:
    m = Merger(5)
    m.add(Sample("window", 0, A), source="x", uid=1000)
    m.add(Sample("idle", 1, {"state": "active"}), source="x", uid=1000)
    m.add(Sample("window", 2, B), source="y", uid=1001)
    m.add(Sample("window", 3, A), source="x", uid=1000)
    spans = sorted(m.open_spans(), key=lambda s: (s.kind, s.start))
    assert spans == [
        Span("idle", 1, 1, {"state": "active"}, uid=1000),
        Span("window", 0, 3, A, uid=1000),
        Span("window", 2, 2, B, uid=1001),
    ]


def test_session_events_pass_through_as_points() -> None:
    m = Merger(5)
    out = m.add(Sample("session", 10, {"event": "login", "user": "alice"}))
    assert out == [Span("session", 10, 10, {"event": "login", "user": "alice"})]
    assert m.open_spans() == []


def test_expire_closes_silent_spans_only() -> None:
    m = Merger(5)
    m.add(Sample("window", 0, A), source="x")
    m.add(Sample("idle", 8, {"state": "idle"}), source="x")
    assert m.next_expiry() == 5
    assert m.expire(6) == [Span("window", 0, 0, A)]
    assert m.expire(6) == []
    assert m.open_spans() == [Span("idle", 8, 8, {"state": "idle"})]


def test_close_one_source_or_one_kind() -> None:
    m = Merger(5)
    m.add(Sample("window", 0, A), source="x")
    m.add(Sample("idle", 0, {"state": "active"}), source="x")
    m.add(Sample("window", 0, B), source="y")
    assert [s.attrs for s in m.close(kind="idle", all_sources=True)] == [{"state": "active"}]
    assert [s.attrs for s in m.close("x")] == [A]
    assert [s.attrs for s in m.open_spans()] == [B]


def test_clock_stepping_back_starts_a_new_span() -> None:
    m = Merger(5)
    closed = feed(m, [Sample("window", 100, A), Sample("window", 50, A)])
    assert closed == [Span("window", 100, 100, A)]


states: st.SearchStrategy[Attrs] = st.sampled_from([A, B, {"state": "idle"}, {"state": "active"}])
steps = st.lists(st.tuples(st.floats(min_value=0, max_value=20), states), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(steps=steps, pulse=st.floats(min_value=0.5, max_value=10))
def test_properties_of_merged_spans(steps: list[tuple[float, Attrs]], pulse: float) -> None:
    m = Merger(pulse)
    samples, t = [], 0.0
    for dt, attrs in steps:
        t += dt
        samples.append(Sample("window", t, dict(attrs)))
    spans = feed(m, samples) + m.close(all_sources=True)
    # Spans are well-formed, ordered and do not overlap.
    for span in spans:
        assert span.end >= span.start
    for a, b in pairwise(spans):
        assert a.end <= b.start
    # Never more spans than samples, and every sample lies in a span with its state.
    assert len(spans) <= len(samples)
    for s in samples:
        assert any(sp.start <= s.time <= sp.end and sp.attrs == s.attrs for sp in spans)
    # Maximal: two neighbouring spans of the same state were separated by more than the pulse.
    for a, b in pairwise(spans):
        if a.attrs == b.attrs:
            assert b.start > a.end + pulse
    # Merging is lossless about time: the covered duration equals the sum of gaps bridged.
    covered = sum(sp.end - sp.start for sp in spans)
    bridged = sum(b.time - a.time for a, b in pairwise(samples) if a.time <= b.time <= a.time + pulse)
    assert abs(covered - bridged) < 1e-6 * max(1.0, bridged)
