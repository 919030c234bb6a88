"""Pages for scheduled reports: the list (IT admins and security analysts), and adding or
deleting a schedule (IT admins only). Thin: checks and writes are in `reports.scheduled`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from glasshouse.access.roles import has_any_role
from glasshouse.access.views import require_roles
from glasshouse.core.roles import MONITORING_ROLES, Role
from glasshouse.org.models import Team
from glasshouse.reports import scheduled
from glasshouse.reports.models import Frequency, ReportSchedule
from glasshouse.reports.overview import office_choices


class ScheduleForm(forms.Form):
    """Shapes input only; `scheduled.check_schedule` decides, with errors keyed by these names."""

    report = forms.ChoiceField()
    frequency = forms.ChoiceField(choices=Frequency.choices)
    team = forms.ChoiceField(required=False, label="Team (with its sub-teams)")
    office = forms.ChoiceField(required=False, label="Location")
    recipients = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="One e-mail address per line (at most 20)."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = {
            "report": [(r.name, r.label) for r in scheduled.REPORTS.values()],
            "team": [("", "Every team"), *((str(pk), n) for pk, n in Team.objects.values_list("pk", "name"))],
            "office": office_choices(),
        }
        for name, values in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = values


def _page(request: HttpRequest, form: ScheduleForm | None = None, status: int = 200) -> HttpResponse:
    schedules = list(ReportSchedule.objects.select_related("owner").prefetch_related("sent").order_by("pk"))
    rows = []
    for s in schedules:
        entry = scheduled.REPORTS.get(s.report)
        sent = list(s.sent.all())
        rows.append(
            {
                "schedule": s,
                "label": entry.label if entry else s.report,
                "filters": entry.describe(s.filters) if entry else "",
                "next_period": scheduled.period_for(s.next_run_at, s.frequency),
                "last_sent": sent[0] if sent else None,
            }
        )
    return render(
        request,
        "reports/schedules.html",
        {
            "rows": rows,
            "form": form or ScheduleForm(),
            "can_edit": has_any_role(request.user, {Role.IT_ADMIN}),
            "delay_hours": int(scheduled.SEND_DELAY.total_seconds() // 3600),
        },
        status=status,
    )


@require_roles(*MONITORING_ROLES)
def schedules_view(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_roles(Role.IT_ADMIN)
@require_POST
def schedule_add_view(request: HttpRequest) -> HttpResponse:
    form = ScheduleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            schedule = scheduled.do_create_schedule(
                request.user,
                data["report"],
                data["frequency"],
                data["recipients"],
                {"team": data["team"], "office": data["office"]},
                request=request,
            )
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            first, last = scheduled.period_for(schedule.next_run_at, schedule.frequency)
            messages.success(request, f"Scheduled. The first e-mail covers {first} to {last}.")
            return redirect("reports:schedules")
    return _page(request, form, status=400)


@require_roles(Role.IT_ADMIN)
@require_POST
def schedule_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    schedule = get_object_or_404(ReportSchedule, pk=pk)
    scheduled.do_delete_schedule(request.user, schedule, request=request)
    messages.success(request, "Schedule deleted; no more e-mails will be sent for it.")
    return redirect("reports:schedules")
