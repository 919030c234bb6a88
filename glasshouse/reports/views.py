"""Pages for IT and security: the reports (overview, after hours, software utilisation, office
vs remote) with their exports, the classification rules and the uncategorised queue.

IT admins and security analysts may look (MONITORING_ROLES); only IT admins change rules. HR
partners, managers, employees and auditors get 403: these are monitoring reports, and HR sees
monitoring-derived data only through `insights` (purpose separation). Thin: reads go through
the report modules and `reports.classify`, writes through `reports.actions`.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Sum
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from glasshouse.access.roles import has_any_role
from glasshouse.access.views import require_roles
from glasshouse.activity.models import Category, InternedString, TeamDailyUsage, UsageKind
from glasshouse.audit.actions import record
from glasshouse.core.roles import MONITORING_ROLES, Role
from glasshouse.org.models import Team
from glasshouse.reports import actions, charts, exports
from glasshouse.reports.afterhours import after_hours
from glasshouse.reports.afterhours import export as after_hours_export
from glasshouse.reports.classify import RuleBook
from glasshouse.reports.exports import Report
from glasshouse.reports.forms import (
    CategoryForm,
    CheckForm,
    ClassifyForm,
    OverviewFilterForm,
    RuleForm,
    SoftwareFilterForm,
)
from glasshouse.reports.locations import comparison
from glasshouse.reports.locations import export as locations_export
from glasshouse.reports.models import RULE_CATEGORIES, ClassificationRule
from glasshouse.reports.overview import Filters, office_choices, overview
from glasshouse.reports.overview import export as overview_export
from glasshouse.reports.software import RECLAIM_DAYS, SHOWN, Utilisation, reclaim, utilisation
from glasshouse.reports.software import export as software_export

QUEUE_DAYS = 30
QUEUE_SIZE = 50
EXPORTS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def _is_it_admin(request: HttpRequest) -> bool:
    return has_any_role(request.user, {Role.IT_ADMIN})


def _apply_errors(form: Form, exc: ValidationError) -> None:
    for name, errors in exc.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)


def _filter_form(
    request: HttpRequest, form_class: type[OverviewFilterForm] = OverviewFilterForm
) -> tuple[OverviewFilterForm, dict[int, int | None]]:
    teams = list(Team.objects.only("id", "name", "parent_id"))
    return form_class(request.GET, teams, office_choices()), {t.pk: t.parent_id for t in teams}


def _refused_export(form: OverviewFilterForm) -> HttpResponse:
    problems = "; ".join(f"{name}: {' '.join(str(e) for e in errs)}" for name, errs in form.errors.items())
    return HttpResponse(f"Nothing exported: {problems}\n", status=400, content_type="text/plain; charset=utf-8")


def _export(request: HttpRequest, report: Report, fmt: str, query: str, filters: Filters) -> HttpResponse:
    """Every report's export: rendered from the report's tables and audited."""
    body = exports.render(report, fmt)
    with transaction.atomic():
        record(
            actor=request.user,
            action=f"reports.{report.slug}.export",
            target_label=f"{report.slug} {query}",
            after={"format": fmt},
            request=request,
        )
    response = HttpResponse(body, content_type=EXPORTS[fmt])
    name = f"glasshouse-{report.slug}-{filters.first_day}-{filters.last_day}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _page_context(request: HttpRequest, url_name: str, export_name: str, query: str) -> dict[str, object]:
    """The export links and the shareable link. The filters live in the query string, so the
    page's address is the link: it carries no rights of its own, and whoever opens it passes the
    same role check."""
    return {
        "query": query,
        "action": reverse(url_name),
        "export_name": export_name,
        "share_url": request.build_absolute_uri(f"{reverse(url_name)}?{query}"),
    }


# --- overview --------------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def overview_view(request: HttpRequest) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return render(
            request, "reports/overview.html", {"form": form, "action": reverse("reports:overview")}, status=400
        )
    ov = overview(form.filters(), parents)
    return render(
        request,
        "reports/overview.html",
        {
            "form": form,
            "ov": ov,
            **_page_context(request, "reports:overview", "reports:export", ov.filters.query_string()),
            "weekly_chart": charts.weekly_chart(ov),
            "category_bar": charts.category_bar(ov),
            "colours": {int(k): v for k, v in charts.COLOURS.items()},
        },
    )


@require_roles(*MONITORING_ROLES)
def export_view(request: HttpRequest, fmt: str) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return _refused_export(form)
    ov = overview(form.filters(), parents)
    return _export(request, overview_export(ov), fmt, ov.filters.query_string(), ov.filters)


# --- after hours -----------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def after_hours_view(request: HttpRequest) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return render(
            request, "reports/after_hours.html", {"form": form, "action": reverse("reports:after_hours")}, status=400
        )
    ah = after_hours(form.filters(), parents)
    return render(
        request,
        "reports/after_hours.html",
        {
            "form": form,
            "ah": ah,
            **_page_context(request, "reports:after_hours", "reports:after_hours_export", ah.filters.query_string()),
            "team_chart": charts.after_hours_by_group(ah.groups),
            "week_chart": charts.after_hours_by_week(ah.weeks),
            "colours": charts.AFTER_HOURS_COLOURS,
        },
    )


@require_roles(*MONITORING_ROLES)
def after_hours_export_view(request: HttpRequest, fmt: str) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return _refused_export(form)
    ah = after_hours(form.filters(), parents)
    return _export(request, after_hours_export(ah), fmt, ah.filters.query_string(), ah.filters)


# --- software utilisation --------------------------------------------------------------------


def _software(
    request: HttpRequest, form: SoftwareFilterForm, parents: dict[int, int | None]
) -> tuple[Utilisation, str]:
    f = form.filters()
    util = utilisation(f, parents)
    params = form.reclaim_params()
    if params:
        util.reclaim = reclaim(f, parents, params["licence_kind"], params["licence"], request.user)
        if util.reclaim.people is not None:
            # A list of names drawn from monitoring data: who looked, and at which list, is audited.
            with transaction.atomic():
                record(
                    actor=request.user,
                    action="reports.licence_reclaim.view",
                    target_label=f"{params['licence_kind']} {params['licence']}",
                    after={"people": util.reclaim.count, "filters": f.query_string()},
                    request=request,
                )
    return util, urlencode({**f.params(), **params})


@require_roles(*MONITORING_ROLES)
def software_view(request: HttpRequest) -> HttpResponse:
    form, parents = _filter_form(request, SoftwareFilterForm)
    assert isinstance(form, SoftwareFilterForm)
    if not form.is_valid():
        return render(
            request, "reports/software.html", {"form": form, "action": reverse("reports:software")}, status=400
        )
    util, query = _software(request, form, parents)
    return render(
        request,
        "reports/software.html",
        {
            "form": form,
            "util": util,
            **_page_context(request, "reports:software", "reports:software_export", query),
            "app_chart": charts.users_chart(util.apps),
            "reclaim_days": RECLAIM_DAYS,
            "shown": SHOWN,
        },
    )


@require_roles(*MONITORING_ROLES)
def software_export_view(request: HttpRequest, fmt: str) -> HttpResponse:
    form, parents = _filter_form(request, SoftwareFilterForm)
    assert isinstance(form, SoftwareFilterForm)
    if not form.is_valid():
        return _refused_export(form)
    util, query = _software(request, form, parents)
    return _export(request, software_export(util), fmt, query, util.filters)


# --- office vs remote ------------------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def locations_view(request: HttpRequest) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return render(
            request, "reports/locations.html", {"form": form, "action": reverse("reports:locations")}, status=400
        )
    cmp = comparison(form.filters(), parents)
    return render(
        request,
        "reports/locations.html",
        {
            "form": form,
            "cmp": cmp,
            **_page_context(request, "reports:locations", "reports:locations_export", cmp.filters.query_string()),
            "active_chart": charts.locations_chart(cmp.locations),
        },
    )


@require_roles(*MONITORING_ROLES)
def locations_export_view(request: HttpRequest, fmt: str) -> HttpResponse:
    form, parents = _filter_form(request)
    if not form.is_valid():
        return _refused_export(form)
    cmp = comparison(form.filters(), parents)
    return _export(request, locations_export(cmp), fmt, cmp.filters.query_string(), cmp.filters)


# --- classification rules --------------------------------------------------------------------


def _rules_page(request: HttpRequest, form: RuleForm | None = None, status: int = 200) -> HttpResponse:
    teams = list(Team.objects.only("id", "name", "parent_id"))
    rules = list(ClassificationRule.objects.select_related("team").order_by("team__name", "match", "value"))
    book = RuleBook.load()
    org_rules = [r for r in rules if r.team_id is None]
    team_rules = [r for r in rules if r.team_id is not None]
    check = CheckForm(request.GET if "check_value" in request.GET else None, teams=teams)
    decision = None
    if check.is_bound and check.is_valid():
        team_pk = check.cleaned_data["check_team"]
        rule = book.decide(
            check.cleaned_data["check_kind"], check.cleaned_data["check_value"], int(team_pk or 0) or None
        )
        by_pk = {r.pk: r for r in rules}
        decision = {"rule": by_pk.get(rule.pk) if rule else None, "value": check.cleaned_data["check_value"]}
    return render(
        request,
        "reports/rules.html",
        {
            "org_rules": org_rules,
            "team_rules": team_rules,
            "form": form or RuleForm(teams=teams),
            "check": check,
            "decision": decision,
            "categories": RULE_CATEGORIES,
            "can_edit": _is_it_admin(request),
        },
        status=status,
    )


@require_roles(*MONITORING_ROLES)
def rules_view(request: HttpRequest) -> HttpResponse:
    return _rules_page(request)


@require_roles(Role.IT_ADMIN)
@require_POST
def rule_add_view(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST, teams=list(Team.objects.only("id", "name")))
    if form.is_valid():
        try:
            rule = actions.do_add_rule(
                request.user,
                form.cleaned_data["team"],
                form.cleaned_data["match"],
                form.cleaned_data["value"],
                form.cleaned_data["category"],
                request=request,
            )
        except ValidationError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Rule added: {rule}. Reports are recomputed.")
            return redirect("reports:rules")
    return _rules_page(request, form, status=400)


@require_roles(Role.IT_ADMIN)
@require_POST
def rule_change_view(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(ClassificationRule, pk=pk)
    form = CategoryForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing changed: choose productive, neutral or unproductive.")
        return redirect("reports:rules")
    rule = actions.do_change_rule(request.user, rule, form.cleaned_data["category"], request=request)
    messages.success(request, f"Rule changed: {rule}. Reports are recomputed.")
    return redirect("reports:rules")


@require_roles(Role.IT_ADMIN)
@require_POST
def rule_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(ClassificationRule, pk=pk)
    label = str(rule)
    actions.do_remove_rule(request.user, rule, request=request)
    messages.success(request, f"Rule removed: {label}. Reports are recomputed.")
    return redirect("reports:rules")


# --- the uncategorised queue -----------------------------------------------------------------


@require_roles(*MONITORING_ROLES)
def uncategorised_view(request: HttpRequest) -> HttpResponse:
    """Applications and sites nobody has classified, biggest first by time in the last 30 days
    (members' local days), so IT classifies what matters most first."""
    since = timezone.now().date() - dt.timedelta(days=QUEUE_DAYS)
    rows = list(
        TeamDailyUsage.objects.filter(
            day__gte=since, category=Category.UNCATEGORISED, kind__in=(UsageKind.APP, UsageKind.SITE)
        )
        .values("kind", "subject_id", "subject__value")
        .annotate(total=Sum("seconds"), teams=Count("team_id", distinct=True))
        .order_by("-total", "subject__value")[:QUEUE_SIZE]
    )
    for r in rows:
        r["hours"] = r["total"] / 3600
        r["kind_label"] = UsageKind(r["kind"]).label
    return render(
        request,
        "reports/uncategorised.html",
        {"rows": rows, "days": QUEUE_DAYS, "categories": RULE_CATEGORIES, "can_edit": _is_it_admin(request)},
    )


@require_roles(Role.IT_ADMIN)
@require_POST
def classify_view(request: HttpRequest) -> HttpResponse:
    form = ClassifyForm(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            "Nothing classified: " + "; ".join(f"{k}: {' '.join(str(e) for e in v)}" for k, v in form.errors.items()),
        )
        return redirect("reports:uncategorised")
    subject = get_object_or_404(InternedString, pk=form.cleaned_data["subject"])
    try:
        rule = actions.do_classify_subject(
            request.user, form.cleaned_data["kind"], subject, form.cleaned_data["category"], request=request
        )
    except ValidationError as exc:
        messages.error(request, "Nothing classified: " + " ".join(exc.messages))
    else:
        messages.success(request, f"{subject.value} is now {rule.get_category_display()} for the organisation.")
    return redirect(f"{reverse('reports:uncategorised')}?{urlencode({'done': subject.pk})}")
