"""Read-only audit API for auditors and IT admins."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Router, Schema

from glasshouse.access.roles import has_any_role
from glasshouse.audit.chain import verify_chain
from glasshouse.audit.views import filtered_entries
from glasshouse.core.pagination import Limit, Offset
from glasshouse.core.roles import AUDIT_ROLES

router = Router(tags=["audit"])


class EntryOut(Schema):
    seq: int
    created_at: dt.datetime
    actor_label: str
    action: str
    target_type: str
    target_id: str
    target_label: str
    purpose: str
    before: Any
    after: Any
    hash: str


class EntriesOut(Schema):
    count: int
    items: list[EntryOut]


class VerifyOut(Schema):
    ok: bool
    checked: int
    first_broken_seq: int | None
    message: str


def _require_auditor(request: HttpRequest) -> None:
    if not has_any_role(request.user, AUDIT_ROLES):
        raise PermissionDenied("The audit trail is for auditors and IT admins.")


@router.get("/entries", response=EntriesOut)
def entries(
    request: HttpRequest,
    action: str = "",
    actor: str = "",
    target: str = "",
    limit: Limit = 50,
    offset: Offset = 0,
) -> EntriesOut:
    _require_auditor(request)
    qs = filtered_entries({"action": action, "actor": actor, "target": target})
    items = [EntryOut.model_validate(e) for e in qs[offset : offset + limit]]
    return EntriesOut(count=qs.count(), items=items)


@router.get("/verify", response=VerifyOut)
def verify(request: HttpRequest) -> VerifyOut:
    _require_auditor(request)
    report = verify_chain()
    return VerifyOut(
        ok=report.ok, checked=report.checked, first_broken_seq=report.first_broken_seq, message=report.describe()
    )
