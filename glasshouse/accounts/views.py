"""Sign-in (password, then TOTP when enabled), sign-out, password, two-factor and role pages."""

from __future__ import annotations

import time

import segno
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from glasshouse.access.views import require_roles
from glasshouse.accounts import actions
from glasshouse.accounts.forms import DisableTotpForm, LoginForm, RoleChangeForm, TokenForm
from glasshouse.accounts.models import User
from glasshouse.audit.actions import client_ip
from glasshouse.core.roles import Role

_PENDING = "otp_pending"
_PENDING_SECONDS = 300


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return "/"


def _blocked_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


def login_view(request: HttpRequest) -> HttpResponse:
    form = LoginForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        wait = actions.login_blocked_for(email, client_ip(request))
        if wait:
            actions.do_record_login_failure(request, email, "rate limited", counts=False)
            error = _blocked_message(wait)
        else:
            user = authenticate(request, email=email.lower(), password=form.cleaned_data["password"])
            if not isinstance(user, User):
                actions.do_record_login_failure(request, email, "wrong e-mail or password")
                error = "That e-mail and password do not match an active account."
            elif TOTPDevice.objects.filter(user=user, confirmed=True).exists():
                request.session[_PENDING] = {"user": user.pk, "since": time.time(), "next": _next_url(request)}
                return redirect("accounts:login_otp")
            else:
                login(request, user)
                actions.do_record_login(request, user, "password")
                return redirect(_next_url(request))
    return render(request, "accounts/login.html", {"form": form, "error": error, "next": _next_url(request)})


def login_otp_view(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(_PENDING)
    if not pending or time.time() - pending["since"] > _PENDING_SECONDS:
        request.session.pop(_PENDING, None)
        messages.error(request, "Your sign-in timed out; enter your e-mail and password again.")
        return redirect("accounts:login")
    user = get_object_or_404(User, pk=pending["user"], is_active=True)
    form = TokenForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        wait = actions.login_blocked_for(user.email, client_ip(request))
        if wait:
            error = _blocked_message(wait)
        else:
            devices = list(TOTPDevice.objects.filter(user=user, confirmed=True))
            waits = [m for m in (actions.totp_wait_message(d) for d in devices) if m]
            token = form.cleaned_data["token"].strip()
            device = None if waits else next((d for d in devices if d.verify_token(token)), None)
            if waits:
                error = waits[0]
            elif device is None:
                actions.do_record_login_failure(request, user.email, "wrong two-factor code")
                error = "That code is not valid. Codes change every 30 seconds; try the current one."
            else:
                request.session.pop(_PENDING, None)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                otp_login(request, device)
                actions.do_record_login(request, user, "password+totp")
                return redirect(pending.get("next") or "/")
    return render(request, "accounts/login_otp.html", {"form": form, "error": error})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if isinstance(request.user, User):
        actions.do_record_logout(request, request.user)
    logout(request)
    messages.success(request, "You have signed out.")
    return redirect("accounts:login")


@login_required
def security_view(request: HttpRequest) -> HttpResponse:
    has_totp = TOTPDevice.objects.filter(user=request.user, confirmed=True).exists()
    return render(request, "accounts/security.html", {"has_totp": has_totp})


@login_required
def password_change_view(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_change_password(request, request.user, form.cleaned_data["new_password1"])
        except ValidationError as exc:
            form.add_error("new_password1", exc)
        else:
            update_session_auth_hash(request, request.user)
            messages.success(request, "Your password has been changed.")
            return redirect("accounts:security")
    return render(request, "accounts/password_change.html", {"form": form})


@login_required
def totp_setup_view(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    if request.method == "POST" and "start" in request.POST:
        actions.do_start_totp(request.user)
        return redirect("accounts:totp_setup")
    device = TOTPDevice.objects.filter(user=request.user, confirmed=False).first()
    form = TokenForm(request.POST or None)
    if device is not None and request.method == "POST" and form.is_valid():
        try:
            actions.do_confirm_totp(request, request.user, device, form.cleaned_data["token"])
        except ValidationError as exc:
            form.add_error("token", exc.message_dict["token"])
        else:
            messages.success(request, "Two-factor sign-in is on. You will be asked for a code at every sign-in.")
            return redirect("accounts:security")
    qr_svg = segno.make(device.config_url).svg_inline(scale=4) if device else ""
    secret = device.bin_key.hex() if device else ""
    return render(
        request,
        "accounts/totp_setup.html",
        {
            "device": device,
            "form": form,
            "qr_svg": qr_svg,
            "config_url": device.config_url if device else "",
            "secret": secret,
        },
    )


@login_required
def totp_disable_view(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    form = DisableTotpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            actions.do_disable_totp(request, request.user, form.cleaned_data["password"])
        except ValidationError as exc:
            form.add_error("password", exc.message_dict["password"])
        else:
            messages.success(request, "Two-factor sign-in is off.")
            return redirect("accounts:security")
    return render(request, "accounts/totp_disable.html", {"form": form})


@require_roles(Role.IT_ADMIN)
def roles_view(request: HttpRequest) -> HttpResponse:
    users = User.objects.order_by("email").prefetch_related("role_assignments")
    q = request.GET.get("q", "").strip()
    if q:
        users = users.filter(Q(email__icontains=q) | Q(display_name__icontains=q))
    only = request.GET.get("only") == "granted"
    if only:
        users = users.filter(role_assignments__isnull=False).distinct()
    page = Paginator(users, 50).get_page(request.GET.get("page"))
    return render(request, "accounts/roles.html", {"page": page, "q": q, "only": only, "form": RoleChangeForm()})


@require_roles(Role.IT_ADMIN)
@require_POST
def role_change_view(request: HttpRequest, pk: int, op: str) -> HttpResponseBase:
    assert isinstance(request.user, User)
    target = get_object_or_404(User, pk=pk)
    form = RoleChangeForm(request.POST)
    if not form.is_valid() or op not in ("grant", "revoke"):
        messages.error(request, "Choose a role to change.")
        return redirect("accounts:roles")
    role = Role(form.cleaned_data["role"])
    try:
        if op == "grant":
            actions.do_grant_role(request, request.user, target, role)
            messages.success(request, f"{target.email} is now {role.label}.")
        else:
            actions.do_revoke_role(request, request.user, target, role)
            messages.success(request, f"{target.email} is no longer {role.label}.")
    except ValidationError as exc:
        for msgs in exc.message_dict.values():
            for m in msgs:
                messages.error(request, m)
    return redirect("accounts:roles")
