"""Purpose-gated person-level monitoring reads over the API (same gate as the pages)."""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Schema

from glasshouse.access.monitoring import PurposeCategory, PurposeRequired, access_person_monitoring, check_purpose
from glasshouse.activity import queries

router = Router(tags=["monitoring"])


class DayOut(Schema):
    day: dt.date
    seconds: float


class AppOut(Schema):
    app: str
    seconds: float


class PersonActivityOut(Schema):
    person_id: int
    full_name: str
    purpose: str | None
    days: list[DayOut]
    apps: list[AppOut]


@router.get("/people/{person_id}", response=PersonActivityOut)
def person_activity(
    request: HttpRequest, person_id: int, purpose_category: PurposeCategory | None = None, purpose: str = ""
) -> PersonActivityOut:
    """One person's monitoring data. Others than the person must give `purpose_category` and
    `purpose` (at least 10 characters); every such read is audited. HR and managers: 403.
    Returns focused time per local day and the top applications over the last 14 days."""
    stated = None
    if purpose_category is not None or purpose:
        stated = check_purpose(purpose_category.value if purpose_category else "", purpose)
    try:
        access = access_person_monitoring(request, person_id, stated, view="api.monitoring.person")
    except PurposeRequired as exc:
        raise ValidationError({"purpose": "State purpose_category and purpose to read this person's data."}) from exc
    activity = queries.person_activity(access.person)
    return PersonActivityOut(
        person_id=access.person.pk,
        full_name=access.person.full_name,
        purpose=access.purpose.text() if access.purpose else None,
        days=[DayOut(day=d.day, seconds=d.seconds) for d in activity.days],
        apps=[AppOut(app=a.app, seconds=a.seconds) for a in activity.apps],
    )
