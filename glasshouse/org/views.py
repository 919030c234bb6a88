"""Pages for the organisation: directory, profiles, teams, org chart, offices, CSV import and
export. Thin: reads go through `for_user()`/`access_*`, writes through `org.actions`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from glasshouse.access.roles import person_of
from glasshouse.access.views import require_roles
from glasshouse.core.roles import ORG_ADMIN_ROLES, Role
from glasshouse.org import actions, csvio
from glasshouse.org.forms import ImportForm, OfficeForm, PersonForm, TeamForm
from glasshouse.org.models import EmploymentType, Office, PeopleImport, Person, PersonStatus, Team
from glasshouse.org.permissions import (
    access_person_or_404,
    can_manage_org,
    can_see_employment,
    check_in_organisation,
    visible_people,
)
from glasshouse.org.queries import reports_below, team_tree, with_report_counts

V = TypeVar("V", bound=Callable[..., HttpResponseBase])
T = TypeVar("T")

PAGE_SIZE = 50
CHART_ROOTS_SHOWN = 200

org_admin_required = require_roles(*ORG_ADMIN_ROLES)


def member_required(view: V) -> V:
    """Signed in and part of the organisation (a person record or a role)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        check_in_organisation(request.user)
        return view(request, *args, **kwargs)

    return login_required(wrapper)  # type: ignore[return-value]


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _page(request: HttpRequest, items: Any) -> Any:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _query_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _form_page(request: HttpRequest, form: Form, title: str, submit: str, cancel: str) -> HttpResponse:
    return render(request, "org/form.html", {"form": form, "title": title, "submit": submit, "cancel": cancel})


def _attempt(form: Form, write: Callable[[], T]) -> T | None:
    """Run the action; on refusal put its per-field messages on the form and return None."""
    try:
        return write()
    except ValidationError as exc:
        form.add_error(None, exc)
        return None


# --- directory and profiles ---------------------------------------------------------------


@member_required
def people(request: HttpRequest) -> HttpResponse:
    admin = can_manage_org(request.user)
    found = visible_people(request.user).select_related("team", "office")
    q = request.GET.get("q", "").strip()
    if q:
        found = found.filter(Q(full_name__icontains=q) | Q(email__icontains=q) | Q(job_title__icontains=q))
    if team := request.GET.get("team", ""):
        found = found.filter(team_id=team) if team.isdigit() else found
    location = request.GET.get("location", "")
    if location == "remote":
        found = found.filter(office__isnull=True)
    elif location.isdigit():
        found = found.filter(office_id=location)
    # Employment type and status are employment details: only those who see them everywhere filter on them.
    status = request.GET.get("status", "") if admin else ""
    found = found.filter(status=status) if status in PersonStatus.values else found.active()
    if admin and (kind := request.GET.get("employment_type", "")) in EmploymentType.values:
        found = found.filter(employment_type=kind)
    context = {
        "page_obj": _page(request, found),
        "q": q,
        "filters": request.GET,
        "query": _query_without_page(request),
        "teams": Team.objects.all(),
        "offices": Office.objects.all(),
        "admin": admin,
        "employment_types": EmploymentType.choices,
        "statuses": PersonStatus.choices,
    }
    template = "org/_people_results.html" if _is_htmx(request) else "org/people.html"
    return render(request, template, context)


@member_required
def person(request: HttpRequest, pk: int) -> HttpResponse:
    shown = access_person_or_404(request.user, pk)
    context = {
        "person": shown,
        "chain": list(reversed(shown.chain_of_command())),
        "reports": with_report_counts(shown.direct_reports.active()).select_related("team"),
        "employment": can_see_employment(request.user, shown),
        "can_edit": can_manage_org(request.user),
    }
    return render(request, "org/person.html", context)


@org_admin_required
@require_http_methods(["GET", "POST"])
def person_new(request: HttpRequest) -> HttpResponse:
    form = PersonForm(request.POST or None, initial={"start_date": timezone.localdate()})
    if request.method == "POST" and form.is_valid():
        created = _attempt(form, lambda: actions.do_create_person(request.user, form.to_input(), request=request))
        if created is not None:
            messages.success(request, f"{created.full_name} added.")
            return redirect("org:person", pk=created.pk)
    return _form_page(request, form, "Add a person", "Add person", reverse("org:people"))


@org_admin_required
@require_http_methods(["GET", "POST"])
def person_edit(request: HttpRequest, pk: int) -> HttpResponse:
    shown = access_person_or_404(request.user, pk)
    form = PersonForm(request.POST or None, initial=PersonForm.initial_for(shown))
    if request.method == "POST" and form.is_valid():
        saved = _attempt(form, lambda: actions.do_update_person(request.user, shown, form.to_input(), request=request))
        if saved is not None:
            messages.success(request, f"{saved.full_name} saved.")
            return redirect("org:person", pk=saved.pk)
    cancel = reverse("org:person", kwargs={"pk": shown.pk})
    return _form_page(request, form, f"Edit {shown.full_name}", "Save", cancel)


# --- teams and offices --------------------------------------------------------------------


@member_required
def teams(request: HttpRequest) -> HttpResponse:
    return render(request, "org/teams.html", {"tree": team_tree(), "can_edit": can_manage_org(request.user)})


@org_admin_required
@require_http_methods(["GET", "POST"])
def team_new(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if _attempt(form, lambda: actions.do_create_team(request.user, data["name"], data["parent"], request=request)):
            messages.success(request, f"Team {data['name']} created.")
            return redirect("org:teams")
    return _form_page(request, form, "New team", "Create team", reverse("org:teams"))


@org_admin_required
@require_http_methods(["GET", "POST"])
def team_edit(request: HttpRequest, pk: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=pk)
    form = TeamForm(request.POST or None, initial={"name": team.name, "parent": team.parent})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if _attempt(
            form, lambda: actions.do_update_team(request.user, team, data["name"], data["parent"], request=request)
        ):
            messages.success(request, f"Team {team.name} saved.")
            return redirect("org:teams")
    return _form_page(request, form, f"Edit team {team.name}", "Save", reverse("org:teams"))


@member_required
def offices(request: HttpRequest) -> HttpResponse:
    listed = Office.objects.annotate(n=Count("people", filter=~Q(people__status=PersonStatus.LEFT)))
    remote = Person.objects.active().filter(office__isnull=True).count()
    context = {"offices": listed, "remote": remote, "can_edit": can_manage_org(request.user)}
    return render(request, "org/offices.html", context)


@org_admin_required
@require_http_methods(["GET", "POST"])
def office_new(request: HttpRequest) -> HttpResponse:
    form = OfficeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if _attempt(
            form,
            lambda: actions.do_create_office(
                request.user, data["name"], data["time_zone"], data["city"], data["country"], request=request
            ),
        ):
            messages.success(request, f"Office {data['name']} added.")
            return redirect("org:offices")
    return _form_page(request, form, "New office", "Add office", reverse("org:offices"))


# --- org chart and my team ----------------------------------------------------------------


@member_required
def chart(request: HttpRequest) -> HttpResponse:
    # People at the top: nobody above them, or whoever was above them has left.
    roots = visible_people(request.user).active().filter(Q(manager__isnull=True) | Q(manager__status=PersonStatus.LEFT))
    context = {
        "nodes": with_report_counts(roots).select_related("team")[:CHART_ROOTS_SHOWN],
        "root_count": roots.count(),
        "shown": CHART_ROOTS_SHOWN,
    }
    return render(request, "org/chart.html", context)


@member_required
def chart_children(request: HttpRequest, pk: int) -> HttpResponse:
    """The direct reports of one person: loaded when a node is opened, so the chart stays small."""
    boss = access_person_or_404(request.user, pk)
    nodes = with_report_counts(boss.direct_reports.active()).select_related("team")
    if _is_htmx(request):
        return render(request, "org/_chart_nodes.html", {"nodes": nodes})
    return render(request, "org/chart.html", {"nodes": nodes, "boss": boss})


@require_roles(Role.MANAGER)
def my_team(request: HttpRequest) -> HttpResponse:
    me = person_of(request.user)
    assert me is not None  # MANAGER is only derived from a person with reports.
    levels = dict(reports_below(me.pk))
    names = Person.objects.filter(pk__in=levels).values_list("pk", "full_name")
    ordered = [pk for pk, name in sorted(names, key=lambda p: (levels[p[0]], p[1].lower()))]
    page_obj = _page(request, ordered)
    shown = Person.objects.filter(pk__in=page_obj.object_list).select_related("team", "office", "manager")
    by_pk = {p.pk: p for p in shown}
    rows = [(by_pk[pk], levels[pk]) for pk in page_obj.object_list]
    direct = sum(1 for level in levels.values() if level == 1)
    context = {"rows": rows, "page_obj": page_obj, "direct": direct, "total": len(levels), "query": ""}
    return render(request, "org/my_team.html", context)


# --- CSV ------------------------------------------------------------------------------------


def _csv_response(text: str, filename: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@org_admin_required
def export(request: HttpRequest) -> HttpResponse:
    text = actions.do_export_people(request.user, request=request)
    return _csv_response(text, f"people-{timezone.localdate().isoformat()}.csv")


@org_admin_required
def import_template(request: HttpRequest) -> HttpResponse:
    return _csv_response(csvio.write_people([]), "people-template.csv")


@org_admin_required
@require_http_methods(["GET", "POST"])
def import_people(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        name = upload.name or "people.csv"
        job = _attempt(form, lambda: actions.do_create_import(request.user, name, upload.read(), request=request))
        if job is not None:
            return redirect("org:import_status", pk=job.pk)
    context = {
        "form": form,
        "columns": csvio.COLUMNS,
        "remote": csvio.REMOTE,
        "recent": PeopleImport.objects.select_related("created_by")[:10],
    }
    return render(request, "org/import.html", context)


@org_admin_required
def import_status(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(PeopleImport.objects.select_related("created_by"), pk=pk)
    context = {"job": job, "summary": csvio.import_summary(job)}
    template = "org/_import_progress.html" if _is_htmx(request) else "org/import_status.html"
    return render(request, template, context)
