"""Shapes of the agent's temporary USB access calls (docs/agent-protocol.md). Types only: the
rules (hex ids, reason length, minutes) are in `controls.validation`, so the agent and the web
pages are refused in the same words."""

from __future__ import annotations

from typing import Annotated, Literal

from ninja import Schema
from pydantic import Field

from glasshouse.ingest.schemas import Clean

Text = Annotated[str, Field(max_length=1024), Clean]


class UsbRequestIn(Schema):
    vid: Text
    pid: Text
    serial: Text = ""
    vendor: Text = ""
    product: Text = ""
    reason: Text
    minutes: int


class UsbRequestCreated(Schema):
    request: int
    status: Literal["pending", "approved", "denied"]


class UsbRequestStatus(Schema):
    status: Literal["pending", "approved", "denied"]
    until: int | None
    note: str
