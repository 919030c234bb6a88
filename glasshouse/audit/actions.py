"""Writing audit entries. Call `record` inside the same transaction as the change it describes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from glasshouse.audit.chain import GENESIS_HASH, entry_hash, hashed_fields
from glasshouse.audit.models import AuditEntry, AuditHead

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User


def _plain(value: Any) -> Any:
    """Make before/after JSON-plain, so what is hashed is exactly what the database returns."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    target: models.Model | None = None,
    target_label: str = "",
    purpose: str = "",
    before: Any = None,
    after: Any = None,
    request: HttpRequest | None = None,
    actor_label: str = "",
) -> AuditEntry:
    """Append one entry to the chain.

    `action` is a dotted verb such as "org.person.update"; `before`/`after` hold the changed
    fields only. The head row is locked so concurrent writers append in a single order.
    """
    with transaction.atomic():
        # get_or_create first: it survives two writers racing to create the very first head.
        AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS_HASH})
        head = AuditHead.objects.select_for_update().get(pk=1)
        authenticated = actor is not None and actor.is_authenticated
        entry = AuditEntry(
            seq=head.seq + 1,
            created_at=timezone.now(),
            actor_id=actor.pk if authenticated and actor is not None else None,
            actor_label=actor_label or (str(getattr(actor, "email", "")) if authenticated else ""),
            action=action,
            target_type=target._meta.label_lower if target is not None else "",
            target_id=str(target.pk) if target is not None else "",
            target_label=(target_label or str(target))[:254] if target is not None else target_label[:254],
            purpose=purpose,
            before=_plain(before),
            after=_plain(after),
            ip=client_ip(request),
            prev_hash=head.hash,
        )
        entry.hash = entry_hash(hashed_fields(entry))
        entry.save()
        AuditHead.objects.filter(pk=1).update(seq=entry.seq, hash=entry.hash)
    return entry


def record_change(
    *,
    actor: User | AnonymousUser | None,
    action: str,
    target: models.Model,
    before: dict[str, Any],
    after: dict[str, Any],
    request: HttpRequest | None = None,
) -> AuditEntry | None:
    """Audit an edit with only the fields that changed; an edit that changed nothing writes
    nothing. `before` is empty for a creation, which is always recorded."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    if before and not keys:
        return None
    return record(
        actor=actor,
        action=action,
        target=target,
        before={k: before.get(k) for k in keys} if before else None,
        after={k: after.get(k) for k in keys},
        request=request,
    )
