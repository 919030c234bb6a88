"""Heartbeat merging: turns a stream of state samples into closed spans, so the server receives
one row per stretch of unchanged state instead of one per sample (ActivityWatch's lesson:
merge on the agent, or month views become slow).

Rule, per (source, kind):
- a sample with the same attributes no later than `pulse_seconds` after the open span's end
  extends it;
- a sample with different attributes within the pulse closes the open span at the sample's
  time (the state changed then) and opens a new one;
- a sample after a longer silence closes the open span at its last seen end (we do not know
  what happened in the silence) and opens a new one;
- a sample with empty attributes means "nothing is active now" (no focused window): it
  closes the open span like a change does, and opens nothing;
- session events (login/logout) are points and pass through as zero-length spans.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from glasshouse_agent.model import Attrs, Kind, Sample, Span


@dataclass
class _Open:
    start: float
    end: float
    attrs: Attrs
    uid: int | None


class Merger:
    """Holds at most one open span per (source, kind). The source tells apart streams that must
    not be merged with each other (two session helpers of one user on two displays); `uid` is
    carried into the spans. Not thread-safe: one owner feeds it."""

    def __init__(self, pulse_seconds: float) -> None:
        if pulse_seconds <= 0:
            raise ValueError("pulse_seconds must be positive")
        self.pulse_seconds = pulse_seconds
        self._open: dict[tuple[Hashable, Kind], _Open] = {}

    def add(self, sample: Sample, source: Hashable = None, uid: int | None = None) -> list[Span]:
        """Feed one sample; returns the spans this sample closed (zero, one, or the event)."""
        t = sample.time
        if sample.kind == "session":
            return [Span(kind="session", start=t, end=t, attrs=dict(sample.attrs), uid=uid)]
        key = (source, sample.kind)
        cur = self._open.pop(key, None)
        closed: list[Span] = []
        if cur is not None:
            if cur.end <= t <= cur.end + self.pulse_seconds:
                if cur.attrs == sample.attrs:
                    cur.end = t
                    self._open[key] = cur
                    return []
                closed.append(Span(kind=sample.kind, start=cur.start, end=t, attrs=cur.attrs, uid=cur.uid))
            else:
                # A silence longer than the pulse, or the clock stepped backwards: keep what we
                # saw and start afresh rather than stretch a span over time nobody observed.
                closed.append(Span(kind=sample.kind, start=cur.start, end=cur.end, attrs=cur.attrs, uid=cur.uid))
        if sample.attrs:
            self._open[key] = _Open(t, t, dict(sample.attrs), uid)
        return closed

    def expire(self, now: float) -> list[Span]:
        """Close spans whose source has been silent longer than the pulse (it stopped, hung or
        the collector was switched off), at their last seen end."""
        stale = [key for key, cur in self._open.items() if now - cur.end > self.pulse_seconds]
        return [self._pop(key) for key in stale]

    def close(self, source: Hashable = None, *, all_sources: bool = False, kind: Kind | None = None) -> list[Span]:
        """Close the open spans of one source (or of every source), optionally of one kind only,
        at their last seen end."""
        keys = [key for key in self._open if (all_sources or key[0] == source) and (kind is None or key[1] == kind)]
        return [self._pop(key) for key in keys]

    def open_spans(self) -> list[Span]:
        """A snapshot of the still-open spans, for checkpointing them against a crash."""
        return [
            Span(kind=kind, start=c.start, end=c.end, attrs=dict(c.attrs), uid=c.uid)
            for (_, kind), c in self._open.items()
        ]

    def next_expiry(self) -> float | None:
        """When expire() will next have something to do (None: nothing is open)."""
        if not self._open:
            return None
        return min(c.end for c in self._open.values()) + self.pulse_seconds

    def _pop(self, key: tuple[Hashable, Kind]) -> Span:
        cur = self._open.pop(key)
        return Span(kind=key[1], start=cur.start, end=cur.end, attrs=cur.attrs, uid=cur.uid)
