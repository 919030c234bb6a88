"""Pages for IT and security: the alerts inbox (acknowledge, comment), the rules, and the
delivery log. Thin: reads through `for_user()` / `access_*`, writes through `alerts.actions`."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from glasshouse.access.views import require_roles
from glasshouse.alerts import actions
from glasshouse.alerts.forms import CommentForm, InboxFilterForm, RuleForm
from glasshouse.alerts.models import Alert, Delivery, Rule
from glasshouse.alerts.permissions import access_alert_or_404, access_rule_or_404, can_edit_rules
from glasshouse.core.pagination import MAX_OFFSET
from glasshouse.core.roles import Role

PER_PAGE = 50
MONITORING = (Role.IT_ADMIN, Role.SECURITY_ANALYST)


def _page(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("page", "1")), MAX_OFFSET // PER_PAGE))
    except ValueError:
        return 1


@require_roles(*MONITORING)
def inbox(request: HttpRequest) -> HttpResponse:
    form = InboxFilterForm(request.GET or None)
    alerts = Alert.objects.for_user(request.user).select_related("person", "device")
    params: dict[str, str] = {}
    if form.is_valid():
        for field in ("severity", "status"):
            if value := form.cleaned_data[field]:
                alerts = alerts.filter(**{field: value})
                params[field] = value
    page = _page(request)
    offset = (page - 1) * PER_PAGE
    rows = list(alerts[offset : offset + PER_PAGE + 1])
    return render(
        request,
        "alerts/inbox.html",
        {
            "form": form,
            "alerts": rows[:PER_PAGE],
            "page": page,
            "has_next": len(rows) > PER_PAGE,
            "query": urlencode(params),
            "filtered": bool(params),
        },
        status=400 if form.errors else 200,
    )


def _detail(request: HttpRequest, alert: Alert, comment_form: CommentForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "alerts/detail.html",
        {
            "alert": alert,
            "comments": alert.comments.select_related("author"),
            "deliveries": alert.deliveries.all(),
            "comment_form": comment_form,
        },
        status=status,
    )


@require_roles(*MONITORING)
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, access_alert_or_404(request.user, pk), CommentForm())


@require_roles(*MONITORING)
@require_POST
def acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    alert = actions.do_acknowledge(request.user, access_alert_or_404(request.user, pk), request=request)
    messages.success(request, "Alert acknowledged.")
    return redirect("alerts:detail", pk=alert.pk)


@require_roles(*MONITORING)
@require_POST
def comment(request: HttpRequest, pk: int) -> HttpResponse:
    alert = access_alert_or_404(request.user, pk)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            actions.do_comment(request.user, alert, form.cleaned_data["body"], request=request)
        except ValidationError as exc:
            form.add_error("body", exc.message_dict.get("body", exc.messages))
        else:
            messages.success(request, "Comment added.")
            return redirect("alerts:detail", pk=alert.pk)
    return _detail(request, alert, form, status=400)


@require_roles(*MONITORING)
def rules(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "alerts/rules.html",
        {"rules": Rule.objects.for_user(request.user).select_related("team"), "can_edit": can_edit_rules(request.user)},
    )


def _rule_form(request: HttpRequest, rule: Rule) -> HttpResponse:
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        try:
            saved = actions.do_save_rule(request.user, form.instance, request=request)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, f"Rule “{saved.name}” saved.")
            return redirect("alerts:rules")
    status = 400 if form.errors else 200
    return render(request, "alerts/rule_form.html", {"form": form, "rule": rule}, status=status)


@require_roles(Role.IT_ADMIN)
def rule_new(request: HttpRequest) -> HttpResponse:
    return _rule_form(request, Rule())


@require_roles(Role.IT_ADMIN)
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _rule_form(request, access_rule_or_404(request.user, pk))


@require_roles(Role.IT_ADMIN)
@require_POST
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = access_rule_or_404(request.user, pk)
    actions.do_delete_rule(request.user, rule, request=request)
    messages.success(request, f"Rule “{rule.name}” deleted; its alerts stay in the inbox.")
    return redirect("alerts:rules")


@require_roles(*MONITORING)
def deliveries(request: HttpRequest) -> HttpResponse:
    page = _page(request)
    offset = (page - 1) * PER_PAGE
    rows = list(Delivery.objects.for_user(request.user).select_related("alert")[offset : offset + PER_PAGE + 1])
    return render(
        request,
        "alerts/deliveries.html",
        {"deliveries": rows[:PER_PAGE], "page": page, "has_next": len(rows) > PER_PAGE},
    )
