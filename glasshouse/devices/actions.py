"""Every change to devices, enrolment tokens and agent policies: `check_*` validates and raises
ValidationError({field: message}); `do_*` writes atomically together with its audit row.

Pages and the agent API call these, so a rule lives in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from glasshouse.audit.actions import record, record_change
from glasshouse.devices.models import AgentPolicy, Device, DeviceOS, EnrollmentToken
from glasshouse.org.models import Person, Team

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser | None

TOKEN_PREFIX = "ghe_"  # noqa: S105 - a label on every token, not a secret
MAX_TOKEN_DAYS = 90
MAX_TOKEN_USES = 10_000


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, stored_hash: str) -> bool:
    return secrets.compare_digest(hash_secret(secret), stored_hash)


# --- enrolment tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class NewToken:
    token: EnrollmentToken
    secret: str  # shown to the IT admin once, never stored


def check_token(label: str, expires_at: dt.datetime, max_uses: int) -> None:
    errors: dict[str, str] = {}
    if not label.strip():
        errors["label"] = "Give the token a label, e.g. the team or the batch of laptops it is for."
    now = timezone.now()
    if expires_at <= now:
        errors["expires_at"] = "The expiry must be in the future."
    elif expires_at > now + dt.timedelta(days=MAX_TOKEN_DAYS):
        errors["expires_at"] = f"A token may live at most {MAX_TOKEN_DAYS} days; make a new one later."
    if not 1 <= max_uses <= MAX_TOKEN_USES:
        errors["max_uses"] = f"Allow between 1 and {MAX_TOKEN_USES} enrolments."
    if errors:
        raise ValidationError(errors)


def do_create_token(
    actor: Actor,
    *,
    label: str,
    expires_at: dt.datetime,
    max_uses: int,
    person: Person | None = None,
    request: HttpRequest | None = None,
) -> NewToken:
    check_token(label, expires_at, max_uses)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(24)
    with transaction.atomic():
        token = EnrollmentToken.objects.create(
            label=label.strip(),
            token_hash=hash_secret(secret),
            prefix=secret[:10],
            created_by=actor if actor is not None and actor.is_authenticated else None,
            expires_at=expires_at,
            max_uses=max_uses,
            person=person,
        )
        record(
            actor=actor,
            action="devices.token.create",
            target=token,
            after={
                "label": token.label,
                "prefix": token.prefix,
                "expires_at": expires_at,
                "max_uses": max_uses,
                "person": person.email if person else None,
            },
            request=request,
        )
    return NewToken(token=token, secret=secret)


R = TypeVar("R", EnrollmentToken, Device)


def _revoke(actor: Actor, obj: R, action: str, request: HttpRequest | None) -> R:
    """Set revoked_at once (revoking twice changes nothing and writes no second audit row)."""
    with transaction.atomic():
        obj = type(obj).objects.select_for_update().get(pk=obj.pk)
        if obj.revoked_at is None:
            obj.revoked_at = timezone.now()
            obj.save(update_fields=["revoked_at"])
            record(
                actor=actor,
                action=action,
                target=obj,
                before={"revoked_at": None},
                after={"revoked_at": obj.revoked_at},
                request=request,
            )
    return obj


def do_revoke_token(actor: Actor, token: EnrollmentToken, *, request: HttpRequest | None = None) -> EnrollmentToken:
    return _revoke(actor, token, "devices.token.revoke", request)


# --- devices ---------------------------------------------------------------------------------


class EnrollmentRefused(Exception):
    """The token cannot enrol a device; the message says why (expired, used up, revoked, unknown)."""


@dataclass(frozen=True)
class Enrolled:
    device: Device
    key: str  # returned to the agent once, never stored


def do_enroll_device(
    *, token_secret: str, hostname: str, os: str, agent_version: str, username: str, request: HttpRequest | None = None
) -> Enrolled:
    """Exchange a one-time token for a device credential. The use is counted with a conditional
    UPDATE, so two agents racing for the last use cannot both win."""
    if os not in DeviceOS.values:
        raise ValidationError({"os": f"os must be one of {', '.join(DeviceOS.values)}."})
    with transaction.atomic():
        token = EnrollmentToken.objects.filter(token_hash=hash_secret(token_secret)).first()
        if token is None:
            raise EnrollmentRefused("Unknown enrolment token.")
        if reason := token.refusal():
            raise EnrollmentRefused(reason)
        counted = EnrollmentToken.objects.filter(
            pk=token.pk, uses__lt=F("max_uses"), revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).update(uses=F("uses") + 1)
        if not counted:
            raise EnrollmentRefused("This enrolment token has been used up.")
        key = secrets.token_urlsafe(32)
        device = Device.objects.create(
            key_hash=hash_secret(key),
            hostname=hostname,
            os=os,
            agent_version=agent_version,
            username=username,
            person_id=token.person_id,
            token=token,
        )
        record(
            actor=None,
            actor_label=f"agent on {hostname}"[:254],
            action="devices.device.enroll",
            target=device,
            after={"hostname": hostname, "os": os, "username": username, "token": token.prefix},
            request=request,
        )
    return Enrolled(device=device, key=key)


def do_revoke_device(actor: Actor, device: Device, *, request: HttpRequest | None = None) -> Device:
    return _revoke(actor, device, "devices.device.revoke", request)


def do_assign_device(
    actor: Actor, device: Device, person: Person | None, *, request: HttpRequest | None = None
) -> Device:
    """Link a device to the person who uses it. Spans already stored keep the person they had;
    new batches carry the new one."""
    with transaction.atomic():
        device = Device.objects.select_for_update(of=("self",)).select_related("person").get(pk=device.pk)
        before = device.person.email if device.person else None
        after = person.email if person else None
        if before != after:
            device.person = person
            device.save(update_fields=["person"])
            record(
                actor=actor,
                action="devices.device.assign",
                target=device,
                before={"person": before},
                after={"person": after},
                request=request,
            )
    return device


# --- policies --------------------------------------------------------------------------------

POLICY_FIELDS = (
    "collect_window",
    "collect_titles",
    "collect_idle",
    "collect_sessions",
    "collect_browser",
    "idle_threshold_seconds",
    "pulse_seconds",
    "schedule_mode",
    "max_batch_spans",
    "max_batch_seconds",
    "spool_max_rows",
    "spool_max_age_days",
)

# (low, high, why) for each number; the batch cap matches what the ingest API accepts.
POLICY_LIMITS: dict[str, tuple[int, int]] = {
    "idle_threshold_seconds": (30, 3600),
    "pulse_seconds": (1, 300),
    "max_batch_spans": (1, 1000),
    "max_batch_seconds": (1, 3600),
    "spool_max_rows": (1000, 10_000_000),
    "spool_max_age_days": (1, 90),
}


def policy_snapshot(policy: AgentPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def check_policy(values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    for name, (low, high) in POLICY_LIMITS.items():
        value = values.get(name)
        if not isinstance(value, int) or not low <= value <= high:
            errors[name] = f"Must be a whole number from {low} to {high}."
    if values.get("collect_titles") and not values.get("collect_window"):
        errors["collect_titles"] = "Window titles need the window collector; turn it on or titles off."
    if values.get("schedule_mode") not in ("always", "working_hours"):
        errors["schedule_mode"] = "Choose always or working hours only."
    if errors:
        raise ValidationError(errors)


def do_update_policy(
    actor: Actor, team: Team | None, values: dict[str, Any], *, request: HttpRequest | None = None
) -> AgentPolicy:
    """Create or change the default policy (team None) or one team's policy."""
    values = {k: values[k] for k in POLICY_FIELDS}
    check_policy(values)
    with transaction.atomic():
        policy = AgentPolicy.objects.select_for_update().filter(team=team).order_by().first()
        created = policy is None
        if policy is None:
            policy = AgentPolicy(team=team)
        before = {} if created else policy_snapshot(policy)
        for name, value in values.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.save()
        record_change(
            actor=actor,
            action="devices.policy.create" if created else "devices.policy.update",
            target=policy,
            before=before,
            after=policy_snapshot(policy),
            request=request,
        )
    return policy


def do_delete_team_policy(actor: Actor, policy: AgentPolicy, *, request: HttpRequest | None = None) -> None:
    if policy.team_id is None:
        raise ValidationError({"team": "The organisation default cannot be deleted, only changed."})
    with transaction.atomic():
        record(
            actor=actor,
            action="devices.policy.delete",
            target=policy,
            before=policy_snapshot(policy),
            request=request,
        )
        policy.delete()
