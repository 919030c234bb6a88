"""Person-level monitoring pages. Every look passes the purpose gate in `access.monitoring`.

The activity shown comes from the rollups (`activity.queries`), only after the gate granted
access for this person; the day timeline (`activity.timeline`) is the one page that reads raw
spans, behind the same gate. The live view (`activity.live`) shows per-team counts, no person.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render

from glasshouse.access.monitoring import (
    MonitoringAccess,
    PurposeCategory,
    PurposeRequired,
    access_person_monitoring,
    check_purpose,
)
from glasshouse.access.roles import person_of
from glasshouse.access.views import require_roles
from glasshouse.activity.live import ONLINE_WITHIN, SILENT_AFTER, live_status
from glasshouse.activity.queries import person_activity
from glasshouse.activity.timeline import person_day, today_for
from glasshouse.core.roles import MONITORING_ROLES
from glasshouse.org.models import Person

LIVE_POLL_SECONDS = 10


@require_roles(*MONITORING_ROLES)
def people_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    people = Person.objects.active().select_related("team", "office")
    if q:
        people = people.filter(Q(full_name__icontains=q) | Q(email__icontains=q) | Q(employee_number=q))
    page = Paginator(people, 50).get_page(request.GET.get("page"))
    return render(request, "activity/people.html", {"page": page, "q": q})


def _gate(request: HttpRequest, pk: int, view: str) -> MonitoringAccess | HttpResponse:
    """Pass the purpose gate for person `pk`, or answer with the purpose form (GET, or a POST
    with a bad purpose) or a redirect back to the same URL once a purpose was accepted."""
    errors: dict[str, list[str]] = {}
    purpose = None
    if request.method == "POST":
        try:
            purpose = check_purpose(request.POST.get("category", ""), request.POST.get("detail", ""))
        except ValidationError as exc:
            errors = exc.message_dict
    try:
        access = access_person_monitoring(request, pk, purpose, view=view)
    except PurposeRequired as needed:
        return render(
            request,
            "activity/purpose.html",
            {
                "person": needed.person,
                "categories": PurposeCategory.choices,
                "errors": errors,
                "category": request.POST.get("category", ""),
                "detail": request.POST.get("detail", ""),
            },
            status=400 if errors else 200,
        )
    if request.method == "POST":
        return redirect(request.get_full_path())
    return access


@login_required
def person_view(request: HttpRequest, pk: int) -> HttpResponse:
    access = _gate(request, pk, "activity.person")
    if isinstance(access, HttpResponse):
        return access
    activity = person_activity(access.person)
    return render(request, "activity/person.html", {"access": access, "person": access.person, "activity": activity})


@login_required
def timeline_view(request: HttpRequest, pk: int) -> HttpResponse:
    """One person's day (`?day=YYYY-MM-DD`, their own calendar day; today by default)."""
    access = _gate(request, pk, "activity.timeline")
    if isinstance(access, HttpResponse):
        return access
    person = access.person
    day_param = request.GET.get("day", "")
    try:
        day = dt.date.fromisoformat(day_param) if day_param else today_for(person)
    except ValueError:
        return HttpResponseBadRequest(f"day: {day_param!r} is not a date; use YYYY-MM-DD.", content_type="text/plain")
    return render(
        request,
        "activity/timeline.html",
        {"access": access, "person": person, "timeline": person_day(person, day)},
    )


def _live_context() -> dict[str, object]:
    return {
        "status": live_status(),
        "poll_seconds": LIVE_POLL_SECONDS,
        "min_group": settings.LIVE_MIN_GROUP,
        "status_help": {"online": _minutes(ONLINE_WITHIN), "silent": _minutes(SILENT_AFTER)},
    }


def _minutes(delta: dt.timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


@require_roles(*MONITORING_ROLES)
def live_view(request: HttpRequest) -> HttpResponse:
    return render(request, "activity/live.html", _live_context())


@require_roles(*MONITORING_ROLES)
def live_status_view(request: HttpRequest) -> HttpResponse:
    """The part of the live view htmx swaps in every LIVE_POLL_SECONDS."""
    return render(request, "activity/_live_status.html", _live_context())


@login_required
def mine_view(request: HttpRequest) -> HttpResponse:
    me = person_of(request.user)
    if me is None:
        raise PermissionDenied("Your account is not linked to a person, so there is no data about you.")
    return redirect("activity:person", pk=me.pk)
