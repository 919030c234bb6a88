"""Pages for IT: USB, web and app policies per team, web categories, the temporary USB access
inbox, offline access codes and the device events log.

IT admins and security analysts may look; only IT admins change anything. Thin: reads go
through `for_user()` querysets or the governing-policy helpers, writes through
`controls.actions`. A `scope` in a URL is "default" (the organisation default) or a team id.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from glasshouse.access.roles import has_any_role
from glasshouse.access.views import require_roles
from glasshouse.activity.models import DeviceEvent, EventKind
from glasshouse.controls import actions
from glasshouse.controls import validation as v
from glasshouse.controls.forms import (
    AllowEntryForm,
    AppEntryForm,
    CategoryForm,
    DecisionForm,
    DomainForm,
    EventFilterForm,
    FullUrlsForm,
    OfflineCodeForm,
    UsbOptionsForm,
    WebRuleForm,
)
from glasshouse.controls.models import (
    AppPolicy,
    CategoryDomain,
    RequestStatus,
    UsbAccessRequest,
    UsbPolicy,
    UsbPolicyVersion,
    WebCategory,
    WebPolicy,
)
from glasshouse.core.pagination import MAX_OFFSET
from glasshouse.core.roles import MONITORING_ROLES, Role
from glasshouse.devices.models import Device
from glasshouse.org.models import Team

EVENTS_PER_PAGE = 50
RECENT_DECISIONS = 50
EVENT_KINDS = {
    "usb": EventKind.USB,
    "file": EventKind.FILE,
    "app_block": EventKind.APP_BLOCK,
    "web_block": EventKind.WEB_BLOCK,
}


def _is_it_admin(request: HttpRequest) -> bool:
    return has_any_role(request.user, {Role.IT_ADMIN})


def _apply_errors(form: Form, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


def _team(scope: str) -> Team | None:
    return None if scope == "default" else get_object_or_404(Team, pk=int(scope))


def _scope_of(team: Team | None) -> str:
    return "default" if team is None else str(team.pk)


def _followed(policy: UsbPolicy | WebPolicy | AppPolicy, team: Team | None) -> str | None:
    """None when `team` has its own row; otherwise the name of what it follows."""
    if team is None or policy.team_id == team.pk:
        return None
    return policy.team.name if policy.team is not None else "the organisation default"


def _refuse_unless_it_admin(request: HttpRequest) -> None:
    if not _is_it_admin(request):
        raise PermissionDenied("Only IT admins change control policies.")


# --- overview --------------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def overview_view(request: HttpRequest) -> HttpResponse:
    """Every team and which USB, web and app policy governs it, computed from one read of the
    team tree and the policy rows (no query per team)."""
    teams = list(Team.objects.only("id", "name", "parent_id"))
    parent = {t.pk: t.parent_id for t in teams}
    names = {t.pk: t.name for t in teams}
    own = {
        "usb": set(UsbPolicy.objects.filter(team__isnull=False).values_list("team_id", flat=True)),
        "web": set(WebPolicy.objects.filter(team__isnull=False).values_list("team_id", flat=True)),
        "apps": set(AppPolicy.objects.filter(team__isnull=False).values_list("team_id", flat=True)),
    }

    def source(team_id: int, kind: str) -> str:
        node: int | None = team_id
        seen: set[int] = set()
        while node is not None and node not in seen:
            if node in own[kind]:
                return "own" if node == team_id else names[node]
            seen.add(node)
            node = parent.get(node)
        return "default"

    rows = [{"team": t, **{k: source(t.pk, k) for k in own}} for t in teams]
    return render(
        request,
        "controls/overview.html",
        {
            "rows": rows,
            "pending": UsbAccessRequest.objects.for_user(request.user).filter(status=RequestStatus.PENDING).count(),
            "can_edit": _is_it_admin(request),
        },
    )


# --- USB -------------------------------------------------------------------------------------


def _usb_page(
    request: HttpRequest,
    team: Team | None,
    options_form: UsbOptionsForm | None = None,
    allow_form: AllowEntryForm | None = None,
) -> HttpResponse:
    policy = actions.usb_in_force(team)
    if options_form is None:
        options_form = UsbOptionsForm(
            initial={
                **policy.classes(),
                "block_unknown_keyboards": policy.block_unknown_keyboards,
                "track_files": policy.track_files,
            }
        )
    failed = bool(options_form.errors or (allow_form is not None and allow_form.errors))
    return render(
        request,
        "controls/usb.html",
        {
            "team": team,
            "scope": _scope_of(team),
            "policy": policy,
            "entries": list(policy.entries.all()) if policy.pk else [],
            "followed": _followed(policy, team),
            "options_form": options_form,
            "allow_form": allow_form or AllowEntryForm(),
            "can_edit": _is_it_admin(request),
        },
        status=400 if failed else 200,
    )


@require_roles(*MONITORING_ROLES)
def usb_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    if request.method != "POST":
        return _usb_page(request, team)
    _refuse_unless_it_admin(request)
    form = UsbOptionsForm(request.POST)
    if form.is_valid():
        try:
            policy = actions.do_set_usb_options(
                request.user,
                team,
                classes=form.classes(),
                block_unknown_keyboards=form.cleaned_data["block_unknown_keyboards"],
                track_files=form.cleaned_data["track_files"],
                request=request,
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Saved. USB policy version {policy.version} is in force; agents pick it up.")
            return redirect("controls:usb", scope=scope)
    return _usb_page(request, team, options_form=form)


@require_roles(Role.IT_ADMIN)
@require_POST
def usb_allow_add_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    form = AllowEntryForm(request.POST)
    if form.is_valid():
        entry = v.AllowEntry(**form.cleaned_data)
        try:
            policy = actions.do_add_usb_allow(request.user, team, entry, request=request)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Allowed {entry.vid}:{entry.pid}; USB policy version {policy.version}.")
            return redirect("controls:usb", scope=scope)
    return _usb_page(request, team, allow_form=form)


@require_roles(Role.IT_ADMIN)
@require_POST
def usb_allow_remove_view(request: HttpRequest, scope: str, pk: int) -> HttpResponse:
    try:
        policy = actions.do_remove_usb_allow(request.user, _team(scope), pk, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Removed from the allow list; USB policy version {policy.version}.")
    return redirect("controls:usb", scope=scope)


@require_roles(Role.IT_ADMIN)
@require_POST
def usb_delete_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    policy = get_object_or_404(UsbPolicy, team=team, team__isnull=False)
    actions.do_delete_usb_policy(request.user, policy, request=request)
    messages.success(request, f"{team} now follows its parent team's USB policy or the default.")
    return redirect("controls:usb", scope=scope)


@require_roles(*MONITORING_ROLES)
def usb_history_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    versions = (
        UsbPolicyVersion.objects.filter(team=team) if team else UsbPolicyVersion.objects.filter(team__isnull=True)
    )
    return render(
        request,
        "controls/usb_history.html",
        {"team": team, "scope": scope, "versions": versions[:200]},
    )


# --- web -------------------------------------------------------------------------------------


def _web_page(
    request: HttpRequest, team: Team | None, rule_form: WebRuleForm | None = None, full_form: FullUrlsForm | None = None
) -> HttpResponse:
    policy = actions.web_in_force(team)
    failed = bool((rule_form is not None and rule_form.errors) or (full_form is not None and full_form.errors))
    return render(
        request,
        "controls/web.html",
        {
            "team": team,
            "scope": _scope_of(team),
            "policy": policy,
            "rules": list(policy.rules.all()) if policy.pk else [],
            "followed": _followed(policy, team),
            "rule_form": rule_form or WebRuleForm(),
            "full_form": full_form or FullUrlsForm(initial={"full_urls": policy.full_urls}),
            "categories": WebCategory.objects.all(),
            "can_edit": _is_it_admin(request),
        },
        status=400 if failed else 200,
    )


@require_roles(*MONITORING_ROLES)
def web_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    if request.method != "POST":
        return _web_page(request, team)
    _refuse_unless_it_admin(request)
    form = FullUrlsForm(request.POST)
    if form.is_valid():
        actions.do_set_full_urls(request.user, team, form.cleaned_data["full_urls"], request=request)
        messages.success(request, "Saved; agents pick it up on their next policy check.")
        return redirect("controls:web", scope=scope)
    return _web_page(request, team, full_form=form)


@require_roles(Role.IT_ADMIN)
@require_POST
def web_rule_add_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    form = WebRuleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        rule = v.WebRuleInput(
            action=data["action"],
            kind=data["kind"],
            value=data["value"],
            days=tuple(data["days"]),
            start=data["start"],
            end=data["end"],
        )
        try:
            actions.do_add_web_rule(request.user, team, rule, request=request)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Added: {rule.action} {rule.kind} {rule.value}.")
            return redirect("controls:web", scope=scope)
    return _web_page(request, team, rule_form=form)


@require_roles(Role.IT_ADMIN)
@require_POST
def web_rule_remove_view(request: HttpRequest, scope: str, pk: int) -> HttpResponse:
    try:
        actions.do_remove_web_rule(request.user, _team(scope), pk, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Rule removed; agents lift it on their next policy check.")
    return redirect("controls:web", scope=scope)


@require_roles(Role.IT_ADMIN)
@require_POST
def web_delete_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    policy = get_object_or_404(WebPolicy, team=team, team__isnull=False)
    actions.do_delete_web_policy(request.user, policy, request=request)
    messages.success(request, f"{team} now follows its parent team's web rules or the default.")
    return redirect("controls:web", scope=scope)


# --- categories ------------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def categories_view(request: HttpRequest) -> HttpResponse:
    form = CategoryForm()
    if request.method == "POST":
        _refuse_unless_it_admin(request)
        form = CategoryForm(request.POST)
        if form.is_valid():
            try:
                category = actions.do_create_category(
                    request.user, form.cleaned_data["name"], form.cleaned_data["description"], request=request
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, f"Created {category.name}; add its domains below.")
                return redirect("controls:category", pk=category.pk)
    categories = WebCategory.objects.annotate(domain_count=Count("domains"))
    return render(
        request,
        "controls/categories.html",
        {"categories": categories, "form": form, "can_edit": _is_it_admin(request)},
        status=400 if form.errors else 200,
    )


@require_roles(*MONITORING_ROLES)
def category_view(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(WebCategory, pk=pk)
    form = DomainForm()
    if request.method == "POST":
        _refuse_unless_it_admin(request)
        form = DomainForm(request.POST)
        if form.is_valid():
            try:
                row = actions.do_add_category_domain(
                    request.user, category, form.cleaned_data["domain"], request=request
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
            else:
                messages.success(request, f"Added {row.domain} to {category.name}.")
                return redirect("controls:category", pk=pk)
    return render(
        request,
        "controls/category.html",
        {
            "category": category,
            "domains": category.domains.all(),
            "used_by": actions.rules_using(category),
            "form": form,
            "can_edit": _is_it_admin(request),
        },
        status=400 if form.errors else 200,
    )


@require_roles(Role.IT_ADMIN)
@require_POST
def category_domain_remove_view(request: HttpRequest, pk: int, domain_pk: int) -> HttpResponse:
    row = get_object_or_404(CategoryDomain.objects.select_related("category"), pk=domain_pk, category_id=pk)
    actions.do_remove_category_domain(request.user, row, request=request)
    messages.success(request, f"Removed {row.domain} from {row.category.name}.")
    return redirect("controls:category", pk=pk)


@require_roles(Role.IT_ADMIN)
@require_POST
def category_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(WebCategory, pk=pk)
    try:
        actions.do_delete_category(request.user, category, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("controls:category", pk=pk)
    messages.success(request, f"Deleted the category {category.name}.")
    return redirect("controls:categories")


# --- apps ------------------------------------------------------------------------------------


def _apps_page(request: HttpRequest, team: Team | None, form: AppEntryForm | None = None) -> HttpResponse:
    policy = actions.apps_in_force(team)
    return render(
        request,
        "controls/apps.html",
        {
            "team": team,
            "scope": _scope_of(team),
            "policy": policy,
            "entries": list(policy.entries.all()) if policy.pk else [],
            "followed": _followed(policy, team),
            "form": form or AppEntryForm(),
            "can_edit": _is_it_admin(request),
        },
        status=400 if form is not None and form.errors else 200,
    )


@require_roles(*MONITORING_ROLES)
def apps_view(request: HttpRequest, scope: str) -> HttpResponse:
    return _apps_page(request, _team(scope))


@require_roles(Role.IT_ADMIN)
@require_POST
def app_add_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    form = AppEntryForm(request.POST)
    if form.is_valid():
        entry = v.AppEntry(form.cleaned_data["name"], form.cleaned_data["path"])
        try:
            actions.do_add_app(request.user, team, entry, request=request)
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"{entry.describe()} is blocked; agents stop it from their next policy check.")
            return redirect("controls:apps", scope=scope)
    return _apps_page(request, team, form)


@require_roles(Role.IT_ADMIN)
@require_POST
def app_remove_view(request: HttpRequest, scope: str, pk: int) -> HttpResponse:
    try:
        actions.do_remove_app(request.user, _team(scope), pk, request=request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Removed from the block list.")
    return redirect("controls:apps", scope=scope)


@require_roles(Role.IT_ADMIN)
@require_POST
def apps_delete_view(request: HttpRequest, scope: str) -> HttpResponse:
    team = _team(scope)
    policy = get_object_or_404(AppPolicy, team=team, team__isnull=False)
    actions.do_delete_app_policy(request.user, policy, request=request)
    messages.success(request, f"{team} now follows its parent team's block list or the default.")
    return redirect("controls:apps", scope=scope)


# --- temporary USB access --------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def usb_requests_view(request: HttpRequest) -> HttpResponse:
    requests = UsbAccessRequest.objects.for_user(request.user).select_related("device", "person", "decided_by")
    return render(
        request,
        "controls/usb_requests.html",
        {
            "pending": requests.filter(status=RequestStatus.PENDING).order_by("created_at", "id"),
            "decided": requests.exclude(status=RequestStatus.PENDING).order_by("-decided_at", "-id")[:RECENT_DECISIONS],
            "form": DecisionForm(),
            "can_edit": _is_it_admin(request),
        },
    )


@require_roles(Role.IT_ADMIN)
@require_POST
def usb_request_decide_view(request: HttpRequest, pk: int) -> HttpResponse:
    access = get_object_or_404(UsbAccessRequest.objects.for_user(request.user).select_related("device"), pk=pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose approve or deny; a note has at most 500 characters.")
        return redirect("controls:usb_requests")
    approve = form.cleaned_data["decision"] == "approve"
    try:
        access = actions.do_decide_usb_request(
            request.user, access, approve=approve, note=form.cleaned_data["note"], request=request
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if approve and access.until is not None:
            messages.success(
                request,
                f"Approved {access.vid}:{access.pid} on {access.device.hostname} until {access.until:%H:%M} UTC.",
            )
        else:
            messages.success(request, f"Denied {access.vid}:{access.pid} on {access.device.hostname}.")
    return redirect("controls:usb_requests")


@require_roles(Role.IT_ADMIN)
def offline_code_view(request: HttpRequest) -> HttpResponse:
    form = OfflineCodeForm()
    issued: actions.IssuedCode | None = None
    if request.method == "POST":
        form = OfflineCodeForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                issued = actions.do_issue_offline_code(
                    request.user,
                    data["device"],
                    vid=data["vid"],
                    pid=data["pid"],
                    serial=data["serial"],
                    minutes=data["minutes"],
                    request=request,
                )
            except ValidationError as exc:
                _apply_errors(form, exc)
    context: dict[str, Any] = {"form": form, "issued": issued, "any_devices": Device.objects.active().exists()}
    # Rendered, not redirected: the code is shown on this one response.
    return render(request, "controls/offline_code.html", context, status=400 if form.errors else 200)


# --- events ----------------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def events_view(request: HttpRequest) -> HttpResponse:
    """USB, removable-media file, app and site events, organisation-wide, newest first. Pages
    are read with one extra row instead of a count, which stays fast on a large table."""
    form = EventFilterForm(request.GET or None)
    form.fields["kind"].choices = [("", "any"), *((k, EventKind(n).label) for k, n in EVENT_KINDS.items())]  # type: ignore[attr-defined]
    events = DeviceEvent.objects.select_related("device").order_by("-time", "-id")
    params: dict[str, str] = {}
    if form.is_valid():
        data = form.cleaned_data
        if data["kind"]:
            events = events.filter(kind=EVENT_KINDS[data["kind"]])
            params["kind"] = data["kind"]
        if data["since"]:
            events = events.filter(time__gte=dt.datetime.combine(data["since"], dt.time.min, tzinfo=dt.UTC))
            params["since"] = data["since"].isoformat()
        if data["until"]:
            events = events.filter(
                time__lt=dt.datetime.combine(data["until"], dt.time.min, tzinfo=dt.UTC) + dt.timedelta(days=1)
            )
            params["until"] = data["until"].isoformat()
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    offset = min((page - 1) * EVENTS_PER_PAGE, MAX_OFFSET)
    rows = list(events[offset : offset + EVENTS_PER_PAGE + 1])
    query = urlencode(params)
    return render(
        request,
        "controls/events.html",
        {
            "form": form,
            "events": [{"event": e, "summary": describe_event(e)} for e in rows[:EVENTS_PER_PAGE]],
            "page": page,
            "has_next": len(rows) > EVENTS_PER_PAGE,
            "query": query,
            "filtered": bool(params),
        },
        status=400 if form.errors else 200,
    )


def describe_event(event: DeviceEvent) -> str:
    """One line for the log from the event's stored fields (docs/agent-protocol.md)."""
    d: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    if event.kind == EventKind.USB:
        if d.get("action") == "policy":
            return f"applied USB policy version {d.get('version', '?')}"
        device = " ".join(str(d[k]) for k in ("vendor", "product") if d.get(k))
        ids = f"{d.get('vid', '????')}:{d.get('pid', '????')}"
        serial = f" serial {d['serial']}" if d.get("serial") else ""
        verdict = f" → {d['verdict']}" if d.get("verdict") else ""
        offline = " (offline code)" if d.get("offline") else ""
        what = f"{d.get('action', '?')} {ids}{serial} {device} [{d.get('class', '?')}]"
        return f"{what}{verdict}{offline}".replace("  ", " ")
    if event.kind == EventKind.FILE:
        size = d.get("size")
        by = f" by {d['exe']}" if d.get("exe") else ""
        return f"wrote {d.get('path', '?')} ({size} bytes){by}"
    if event.kind == EventKind.APP_BLOCK:
        return f"stopped {d.get('name', '?')}" + (f" ({d['exe']})" if d.get("exe") else "")
    if event.kind == EventKind.WEB_BLOCK:
        return f"blocked {d.get('url') or d.get('domain', '?')}"
    return ""
