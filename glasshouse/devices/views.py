"""Pages for IT: device inventory, enrolment tokens and agent policies.

IT admins and security analysts may look; only IT admins change anything. Thin: reads go
through `for_user()`, writes through `devices.actions`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from glasshouse.access.roles import has_any_role
from glasshouse.access.views import require_roles
from glasshouse.core.roles import MONITORING_ROLES, Role
from glasshouse.devices import actions
from glasshouse.devices.forms import AssignForm, PolicyForm, TokenForm
from glasshouse.devices.models import AgentPolicy, Device, EnrollmentToken
from glasshouse.devices.policy import default_policy
from glasshouse.org.models import Person, Team

PAGE_SIZE = 50


def _is_it_admin(request: HttpRequest) -> bool:
    return has_any_role(request.user, {Role.IT_ADMIN})


def _apply_errors(form: Form, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@require_roles(*MONITORING_ROLES)
def inventory_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    devices = Device.objects.for_user(request.user).select_related("person")
    if q:
        devices = devices.filter(
            Q(hostname__icontains=q) | Q(username__icontains=q) | Q(person__full_name__icontains=q)
        )
    page = Paginator(devices, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "devices/inventory.html",
        {
            "page_obj": page,
            "q": q,
            "query": f"q={q}" if q else "",
            "can_edit": _is_it_admin(request),
            "any_devices": Device.objects.exists(),
        },
    )


@require_roles(Role.IT_ADMIN)
@require_POST
def device_revoke_view(request: HttpRequest, pk: str) -> HttpResponse:
    device = get_object_or_404(Device.objects.for_user(request.user), pk=pk)
    actions.do_revoke_device(request.user, device, request=request)
    messages.success(request, f"{device.hostname} is revoked; its next request will be refused.")
    return redirect("devices:inventory")


@require_roles(Role.IT_ADMIN)
@require_POST
def device_assign_view(request: HttpRequest, pk: str) -> HttpResponse:
    device = get_object_or_404(Device.objects.for_user(request.user), pk=pk)
    form = AssignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid e-mail address, or leave it blank to unassign.")
        return redirect("devices:inventory")
    email = form.cleaned_data["email"]
    person = None
    if email:
        person = Person.objects.active().filter(email__iexact=email).first()
        if person is None:
            messages.error(request, f"Nobody active in the organisation has the e-mail {email}.")
            return redirect("devices:inventory")
    actions.do_assign_device(request.user, device, person, request=request)
    messages.success(request, f"{device.hostname} now belongs to {person or 'nobody'}.")
    return redirect("devices:inventory")


@require_roles(*MONITORING_ROLES)
def tokens_view(request: HttpRequest) -> HttpResponse:
    can_edit = _is_it_admin(request)
    form = TokenForm()
    created: actions.NewToken | None = None
    status = 200
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only IT admins create enrolment tokens.")
        form = TokenForm(request.POST)
        if form.is_valid():
            created = _create_token(request, form)
            if created is not None:
                form = TokenForm()
        if created is None:
            status = 400
    tokens = EnrollmentToken.objects.for_user(request.user).select_related("created_by", "person")
    page = Paginator(tokens, PAGE_SIZE).get_page(request.GET.get("page"))
    context: dict[str, Any] = {
        "form": form,
        "page_obj": page,
        "can_edit": can_edit,
        "created": created,
        "server_url": request.build_absolute_uri("/").rstrip("/"),
    }
    # Rendered, not redirected: the token secret is shown on this one response and never again.
    return render(request, "devices/tokens.html", context, status=status)


def _create_token(request: HttpRequest, form: TokenForm) -> actions.NewToken | None:
    data = form.cleaned_data
    person = None
    if data["person_email"]:
        person = Person.objects.active().filter(email__iexact=data["person_email"]).first()
        if person is None:
            form.add_error("person_email", "Nobody active in the organisation has this e-mail.")
            return None
    try:
        return actions.do_create_token(
            request.user,
            label=data["label"],
            expires_at=timezone.now() + dt.timedelta(days=data["expires_in_days"]),
            max_uses=data["max_uses"],
            person=person,
            request=request,
        )
    except ValidationError as exc:
        _apply_errors(form, exc)
        return None


@require_roles(Role.IT_ADMIN)
@require_POST
def token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(EnrollmentToken.objects.for_user(request.user), pk=pk)
    actions.do_revoke_token(request.user, token, request=request)
    messages.success(request, f"Token {token} is revoked; devices already enrolled keep working.")
    return redirect("devices:tokens")


@require_roles(*MONITORING_ROLES)
def policies_view(request: HttpRequest) -> HttpResponse:
    team_policies = AgentPolicy.objects.filter(team__isnull=False).select_related("team")
    covered = {p.team_id for p in team_policies}
    return render(
        request,
        "devices/policies.html",
        {
            "default": default_policy(),
            "team_policies": team_policies,
            "teams_without": [t for t in Team.objects.all() if t.pk not in covered],
            "can_edit": _is_it_admin(request),
        },
    )


@require_roles(Role.IT_ADMIN)
def policy_edit_view(request: HttpRequest, team_pk: int | None = None) -> HttpResponse:
    team = get_object_or_404(Team, pk=team_pk) if team_pk is not None else None
    existing = AgentPolicy.objects.filter(team=team).first()
    # A new team policy starts from what the team gets today (its nearest ancestor's or the default).
    from glasshouse.devices.policy import policy_for_team

    start = existing or policy_for_team(team)
    form = PolicyForm(initial=actions.policy_snapshot(start))
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                actions.do_update_policy(request.user, team, form.cleaned_data, request=request)
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, f"Saved the policy for {team or 'the organisation'}; agents pick it up.")
                return redirect("devices:policies")
    title = f"Agent policy for {team}" if team else "Organisation default agent policy"
    return render(
        request,
        "devices/policy_form.html",
        {"form": form, "title": title, "team": team, "existing": existing, "cancel": reverse("devices:policies")},
        status=400 if form.errors else 200,
    )


@require_roles(Role.IT_ADMIN)
@require_POST
def policy_delete_view(request: HttpRequest, team_pk: int) -> HttpResponse:
    policy = get_object_or_404(AgentPolicy, team_id=team_pk)
    actions.do_delete_team_policy(request.user, policy, request=request)
    messages.success(request, f"{policy.team} now follows its parent team's policy or the default.")
    return redirect("devices:policies")
