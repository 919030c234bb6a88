"""Person-level monitoring pages. Every look passes the purpose gate in `access.monitoring`.

The activity shown comes from the rollups (`activity.queries`), only after the gate granted
access for this person.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from glasshouse.access.monitoring import PurposeCategory, PurposeRequired, access_person_monitoring, check_purpose
from glasshouse.access.roles import person_of
from glasshouse.access.views import require_roles
from glasshouse.activity.queries import person_activity
from glasshouse.core.roles import MONITORING_ROLES
from glasshouse.org.models import Person


@require_roles(*MONITORING_ROLES)
def people_view(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").strip()
    people = Person.objects.active().select_related("team", "office")
    if q:
        people = people.filter(Q(full_name__icontains=q) | Q(email__icontains=q) | Q(employee_number=q))
    page = Paginator(people, 50).get_page(request.GET.get("page"))
    return render(request, "activity/people.html", {"page": page, "q": q})


@login_required
def person_view(request: HttpRequest, pk: int) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    purpose = None
    if request.method == "POST":
        try:
            purpose = check_purpose(request.POST.get("category", ""), request.POST.get("detail", ""))
        except ValidationError as exc:
            errors = exc.message_dict
    try:
        access = access_person_monitoring(request, pk, purpose, view="activity.person")
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
        return redirect("activity:person", pk=pk)
    activity = person_activity(access.person)
    return render(request, "activity/person.html", {"access": access, "person": access.person, "activity": activity})


@login_required
def mine_view(request: HttpRequest) -> HttpResponse:
    me = person_of(request.user)
    if me is None:
        raise PermissionDenied("Your account is not linked to a person, so there is no data about you.")
    return redirect("activity:person", pk=me.pk)
