"""Account and role changes. Each `do_*` is atomic and audited in the same transaction."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from glasshouse.accounts.models import LoginFailure, RoleAssignment, User
from glasshouse.audit.actions import client_ip, record
from glasshouse.core.roles import ASSIGNABLE_ROLES, Role


def login_blocked_for(email: str, ip: str | None) -> int:
    """Seconds until another attempt is allowed for this e-mail or client address (0: allowed)."""
    since = timezone.now() - dt.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    limit = settings.LOGIN_FAILURE_LIMIT
    waits = []
    for match in (Q(email=email.strip().lower()), Q(ip=ip) if ip else None):
        if match is None:
            continue
        recent = list(
            LoginFailure.objects.filter(match, at__gte=since).order_by("-at").values_list("at", flat=True)[:limit]
        )
        if len(recent) >= limit:
            oldest_counted = recent[-1]
            waits.append(int((oldest_counted - since).total_seconds()) + 1)
    return max(waits, default=0)


def do_record_login_failure(request: HttpRequest, email: str, reason: str, *, counts: bool = True) -> None:
    """Audit a refused login; `counts` adds it to the rate limit (refusals while locked do not,
    so a locked-out user is not locked out for longer by trying again)."""
    with transaction.atomic():
        if counts:
            LoginFailure.objects.create(email=email.strip().lower()[:254], ip=client_ip(request))
        record(
            actor=None,
            actor_label=email[:254],
            action="accounts.login.failed",
            after={"reason": reason},
            request=request,
        )


def do_record_login(request: HttpRequest, user: User, method: str) -> None:
    with transaction.atomic():
        LoginFailure.objects.filter(email=user.email).delete()
        record(actor=user, action="accounts.login", target=user, after={"method": method}, request=request)


def do_record_logout(request: HttpRequest, user: User) -> None:
    record(actor=user, action="accounts.logout", target=user, request=request)


def do_change_password(request: HttpRequest, user: User, new_password: str) -> None:
    validate_password(new_password, user)
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        record(actor=user, action="accounts.password.change", target=user, request=request)


def do_grant_role(request: HttpRequest, actor: User, user: User, role: Role) -> RoleAssignment:
    if role not in ASSIGNABLE_ROLES:
        raise ValidationError({"role": f"{role.label} cannot be granted: it follows from the organisation."})
    with transaction.atomic():
        assignment, created = RoleAssignment.objects.get_or_create(user=user, role=role, defaults={"granted_by": actor})
        if created:
            record(
                actor=actor,
                action="accounts.role.grant",
                target=user,
                before={"role": None},
                after={"role": role.value},
                request=request,
            )
    return assignment


def do_revoke_role(request: HttpRequest, actor: User, user: User, role: Role) -> None:
    with transaction.atomic():
        if role == Role.IT_ADMIN and user.pk == actor.pk:
            others = RoleAssignment.objects.filter(role=Role.IT_ADMIN).exclude(user=user).exists()
            if not others:
                raise ValidationError({"role": "You are the last IT admin; grant the role to someone else first."})
        deleted, _ = RoleAssignment.objects.filter(user=user, role=role).delete()
        if deleted:
            record(
                actor=actor,
                action="accounts.role.revoke",
                target=user,
                before={"role": role.value},
                after={"role": None},
                request=request,
            )


def do_start_totp(user: User) -> TOTPDevice:
    """A fresh unconfirmed device; replaces any earlier unconfirmed one."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def totp_wait_message(device: TOTPDevice) -> str | None:
    """django-otp slows guessing down after a wrong code; say so rather than 'invalid'."""
    allowed, data = device.verify_is_allowed()
    if allowed:
        return None
    locked_until = (data or {}).get("locked_until")
    seconds = max(1, int((locked_until - timezone.now()).total_seconds()) + 1) if locked_until else 1
    return f"Too many wrong codes. Wait {seconds} second{'s' if seconds != 1 else ''} and try again."


def do_confirm_totp(request: HttpRequest, user: User, device: TOTPDevice, token: str) -> None:
    wait = totp_wait_message(device)
    if wait:
        raise ValidationError({"token": wait})
    if not device.verify_token(token.strip()):
        raise ValidationError({"token": "That code is not valid. Check the time on your phone and try again."})
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        record(actor=user, action="accounts.2fa.enable", target=user, request=request)


def do_disable_totp(request: HttpRequest, user: User, password: str) -> None:
    if not user.check_password(password):
        raise ValidationError({"password": "Your password is not correct."})
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        record(actor=user, action="accounts.2fa.disable", target=user, request=request)


def do_create_admin(email: str, password: str) -> User:
    """Bootstrap an IT admin from the command line (production has no default accounts)."""
    user = User(email=email)
    validate_password(password, user)
    with transaction.atomic():
        if User.objects.filter(email=email.strip().lower()).exists():
            raise ValidationError({"email": f"An account with {email} already exists."})
        user = User.objects.create_user(email, password)
        RoleAssignment.objects.create(user=user, role=Role.IT_ADMIN)
        record(
            actor=None,
            actor_label="manage.py createadmin",
            action="accounts.role.grant",
            target=user,
            after={"role": Role.IT_ADMIN.value},
        )
    return user
