"""The shapes of agent requests and answers (protocol v1, docs/agent-protocol.md).

Batches are validated whole, straight from the JSON bytes by pydantic's Rust core, before
anything is written; `first_error` turns pydantic's location into the protocol's field path
("spans[3].end").
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

MAX_SPANS = 1000
# 2000-01-01: anything earlier is a broken clock, not activity.
EARLIEST = 946_684_800.0
# How far ahead of the server clock an agent's clock may run before a time is refused.
FUTURE_SLACK_SECONDS = 24 * 3600


def _without_nul(value: str) -> str:
    # Window titles and paths come from arbitrary programs; PostgreSQL text cannot hold NUL.
    # Replace it rather than refuse the batch, so one odd title never makes 1,000 spans
    # undeliverable.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


Clean = AfterValidator(_without_nul)
Short = Annotated[str, Field(max_length=256), Clean]
Path = Annotated[str, Field(max_length=1024), Clean]
Title = Annotated[str, Field(max_length=2048), Clean]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class SpanSchema(BaseModel):
    # Unknown keys are ignored so a newer agent can add optional fields without being refused.
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["window", "idle", "session", "browser"]
    start: Seconds
    end: Seconds
    app: Short | None = None
    exe: Path | None = None
    title: Title | None = None
    domain: Short | None = None
    url: Path | None = None
    user: Short | None = None
    pid: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    state: Annotated[str, Field(max_length=32), Clean] | None = None
    event: Annotated[str, Field(max_length=32), Clean] | None = None


class GapSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: Seconds
    end: Seconds
    reason: Annotated[str, Field(max_length=64), Clean] = ""
    dropped: Annotated[int, Field(ge=0)] = 0


Hex4 = Annotated[str, Field(pattern=r"^[0-9a-f]{4}$")]
EpochTime = Annotated[float, Field(allow_inf_nan=False)]
Pid = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _Event(BaseModel):
    # Unknown keys are ignored, like on spans; `extra` fields are not stored.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    time: EpochTime
    user: Short | None = None


class UsbEventSchema(_Event):
    kind: Literal["usb"]
    action: Literal["insert", "remove", "policy", "temporary_start", "temporary_end"]
    verdict: Literal["allowed", "blocked", "read_only"] | None = None
    vid: Hex4 | None = None
    pid: Hex4 | None = None
    serial: Short | None = None
    vendor: Short | None = None
    product: Short | None = None
    device_class: Literal["storage", "mtp", "printer", "network", "hid", "other"] | None = Field(
        default=None, alias="class"
    )
    port: Short | None = None
    version: Annotated[int, Field(ge=0)] | None = None
    request: Annotated[int, Field(ge=1)] | None = None
    until: EpochTime | None = None
    offline: bool = False


class FileEventSchema(_Event):
    kind: Literal["file"]
    path: Path
    size: Annotated[int, Field(ge=0)]
    pid: Pid | None = None
    exe: Path | None = None
    mount: Path | None = None
    device: Short | None = None
    label: Short | None = None


class AppBlockEventSchema(_Event):
    kind: Literal["app_block"]
    name: Short
    exe: Path | None = None
    pid: Pid | None = None


class WebBlockEventSchema(_Event):
    kind: Literal["web_block"]
    domain: Short
    url: Path | None = None


EventSchema = Annotated[
    UsbEventSchema | FileEventSchema | AppBlockEventSchema | WebBlockEventSchema, Field(discriminator="kind")
]
EVENT_TAGS = ("usb", "file", "app_block", "web_block")


class BatchSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")

    batch_seq: Annotated[int, Field(ge=0, le=2**63 - 1)]
    # The random identity of the agent's spool file; "" for agents from before spool ids. A
    # spool lost with its disk restarts batch_seq under a new id, so its batches are not retries.
    spool_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] = ""
    spans: Annotated[list[SpanSchema], Field(max_length=MAX_SPANS)]
    gaps: Annotated[list[GapSchema], Field(max_length=MAX_SPANS)] = []
    # Point events (USB, files written to removable media, blocked apps and sites).
    events: Annotated[list[EventSchema], Field(max_length=MAX_SPANS)] = []


class BadField(Exception):
    """A batch refused whole; `field` is the first bad field as the protocol names it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def field_path(loc: Sequence[Any]) -> str:
    path = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif after_index and part in EVENT_TAGS:
            pass  # pydantic names the union member it tried ("events", 0, "usb", "vid"): not a field
        else:
            path += f".{part}" if path else str(part)
        after_index = isinstance(part, int)
    return path


def first_error(exc: ValidationError) -> BadField:
    error = exc.errors(include_url=False)[0]
    field = field_path(error["loc"])
    if error["type"] == "json_invalid":
        return BadField("", f"The body is not valid JSON: {error['msg']}.")
    if error["type"] == "too_long" and field in ("spans", "events"):
        return BadField(field, f"A batch may hold at most {MAX_SPANS} {field}; split it.")
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        field += ".kind"
        return BadField(field, f"{field} must be one of {', '.join(EVENT_TAGS)}.")
    return BadField(field, f"{field or 'body'}: {error['msg']}.")


def check_times(batch: BatchSchema, now: float | None = None) -> None:
    """The checks pydantic's field types cannot express, in document order."""
    latest = (now or time.time()) + FUTURE_SLACK_SECONDS
    groups: tuple[tuple[str, Sequence[SpanSchema | GapSchema]], ...] = (("spans", batch.spans), ("gaps", batch.gaps))
    for name, items in groups:
        for i, item in enumerate(items):
            if not EARLIEST <= item.start <= latest or not math.isfinite(item.start):
                raise BadField(f"{name}[{i}].start", f"{name}[{i}].start is not a plausible UTC epoch time.")
            if item.end > latest:
                raise BadField(f"{name}[{i}].end", f"{name}[{i}].end is in the future.")
            if item.end < item.start:
                raise BadField(f"{name}[{i}].end", f"{name}[{i}].end is before its start.")
    for i, event in enumerate(batch.events):
        if not EARLIEST <= event.time <= latest:
            raise BadField(f"events[{i}].time", f"events[{i}].time is not a plausible UTC epoch time.")


class EnrollIn(Schema):
    token: Annotated[str, Field(min_length=1, max_length=200), Clean]
    hostname: Annotated[str, Field(min_length=1, max_length=255), Clean]
    os: Literal["linux", "windows", "macos"]
    agent_version: Annotated[str, Field(min_length=1, max_length=32), Clean]
    username: Annotated[str, Field(max_length=150), Clean] = ""


class EnrollOut(Schema):
    device_id: str
    device_key: str


class AckOut(Schema):
    accepted_seq: int


class ErrorOut(Schema):
    detail: str
    field: str | None = None
