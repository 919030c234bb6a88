"""The shapes that flow through the agent: a Sample is one observation of a state (the active
window, idle/active) or one point event (a login); a Span is what the server receives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["window", "idle", "session", "browser"]
# "browser": the site in the browser's active tab, reported by the extension through the native
# messaging host (glasshouse_agent.web.host); merged into spans like windows.
KINDS: tuple[Kind, ...] = ("window", "idle", "session", "browser")

# The attributes that describe a state; equal attributes mean "the same state" for merging.
Attrs = dict[str, str | int]

# Window titles can be arbitrarily long; the server has a 2 MiB batch limit, and a title is
# useful for classification long before it reaches this length.
MAX_TITLE_CHARS = 512


@dataclass(frozen=True)
class Sample:
    """One observation at `time` (UTC epoch seconds). For kind "session" it is a point event."""

    kind: Kind
    time: float
    attrs: Attrs = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "time": self.time, "attrs": dict(self.attrs)}

    @staticmethod
    def from_json(data: Any) -> Sample:
        """Parse a sample sent by a session helper; raises ValueError on anything unexpected,
        because the service must not trust the shape of what arrives over the socket."""
        if not isinstance(data, dict):
            raise ValueError("sample must be an object")
        kind = as_kind(data.get("kind"))
        time = data.get("time")
        if not isinstance(time, int | float) or isinstance(time, bool):
            raise ValueError("time must be a number")
        raw = data.get("attrs", {})
        if not isinstance(raw, dict):
            raise ValueError("attrs must be an object")
        attrs: Attrs = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str | int) or isinstance(value, bool):
                raise ValueError(f"bad attribute {key!r}")
            attrs[key] = value
        return Sample(kind=kind, time=float(time), attrs=attrs)


@dataclass(frozen=True)
class Span:
    """A closed interval during which one state held (or a point event with start == end)."""

    kind: Kind
    start: float
    end: float
    attrs: Attrs = field(default_factory=dict)
    # The local uid whose session helper reported it (None: the service itself, e.g. utmp).
    # Kept in the spool for audit and status; the v1 wire format has no field for it.
    uid: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The protocol's span object: kind, start, end and the state's attributes inline."""
        out: dict[str, Any] = {"kind": self.kind, "start": self.start, "end": self.end}
        out.update(self.attrs)
        return out

    def to_db(self) -> str:
        return json.dumps(self.attrs, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_db(kind: str, start: float, end: float, attrs_json: str, uid: int | None = None) -> Span:
        attrs: Attrs = json.loads(attrs_json)
        return Span(kind=as_kind(kind), start=start, end=end, attrs=attrs, uid=uid)


def as_kind(value: object) -> Kind:
    """Narrow an untrusted value to a Kind or raise ValueError."""
    for kind in KINDS:
        if value == kind:
            return kind
    raise ValueError(f"unknown kind {value!r}")
