"""The organisation API (/api/v1/org): the directory, teams, and adding people through the same
action as the web form."""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, Q
from django.http import HttpRequest
from ninja import Query, Router

from glasshouse.core.pagination import Limit, Offset
from glasshouse.org import actions
from glasshouse.org.models import Office, Person, PersonStatus, Team
from glasshouse.org.permissions import (
    access_person_or_404,
    can_manage_org,
    check_in_organisation,
    employment_visibility,
    visible_people,
)
from glasshouse.org.schemas import (
    Employment,
    OfficeRef,
    PeoplePage,
    PersonIn,
    PersonOut,
    PersonRef,
    TeamOut,
    TeamRef,
)
from glasshouse.org.validation import PersonInput

router = Router(tags=["org"])

M = TypeVar("M", bound=Model)


def person_out(person: Person, show_employment: bool) -> PersonOut:
    employment = None
    if show_employment:
        employment = Employment(
            employee_number=person.employee_number,
            employment_type=person.employment_type,
            start_date=person.start_date,
            status=person.status,
            work_start=person.work_start.strftime("%H:%M"),
            work_end=person.work_end.strftime("%H:%M"),
            work_days=person.work_days_list,
        )
    return PersonOut(
        id=person.pk,
        full_name=person.full_name,
        email=person.email,
        job_title=person.job_title,
        team=TeamRef(id=person.team.pk, name=person.team.name) if person.team else None,
        manager=PersonRef(id=person.manager.pk, full_name=person.manager.full_name) if person.manager else None,
        office=OfficeRef(id=person.office.pk, name=person.office.name) if person.office else None,
        time_zone=person.time_zone,
        employment=employment,
    )


@router.get("/people", response=PeoplePage, url_name="org_people", summary="The directory, by name")
def list_people(
    request: HttpRequest,
    limit: Limit = 50,
    offset: Offset = 0,
    search: Query[str] = "",
) -> PeoplePage:
    check_in_organisation(request.user)
    found = visible_people(request.user).active().select_related("team", "manager", "office")
    if search:
        found = found.filter(
            Q(full_name__icontains=search) | Q(email__icontains=search) | Q(job_title__icontains=search)
        )
    visible = employment_visibility(request.user)
    items = [person_out(p, visible(p)) for p in found[offset : offset + limit]]
    return PeoplePage(count=found.count(), limit=limit, offset=offset, items=items)


@router.get("/people/{person_id}", response=PersonOut, url_name="org_person")
def get_person(request: HttpRequest, person_id: int) -> PersonOut:
    check_in_organisation(request.user)
    person = access_person_or_404(request.user, person_id)
    return person_out(person, employment_visibility(request.user)(person))


@router.get("/teams", response=list[TeamOut], url_name="org_teams")
def list_teams(request: HttpRequest) -> list[TeamOut]:
    check_in_organisation(request.user)
    teams = Team.objects.annotate(n=Count("members", filter=~Q(members__status=PersonStatus.LEFT)))
    return [TeamOut(id=t.pk, name=t.name, parent_id=t.parent_id, members=t.n) for t in teams]


def _by_id(model: type[M], pk: int | None, field: str) -> M | None:
    if pk is None:
        return None
    found = model._default_manager.filter(pk=pk).first()
    if found is None:
        raise ValidationError({field: f"There is no {model._meta.verbose_name} with id {pk}."})
    return found


@router.post(
    "/people", response={201: PersonOut}, url_name="org_people", summary="Add a person (HR partners and IT admins)"
)
def create_person(request: HttpRequest, payload: PersonIn) -> tuple[int, PersonOut]:
    if not can_manage_org(request.user):
        raise PermissionDenied("Only HR partners and IT admins add people.")
    fields = payload.dict(exclude={"team", "manager", "office", "start_date", "work_days"})
    data = PersonInput(
        **fields,
        team=_by_id(Team, payload.team, "team"),
        manager=_by_id(Person, payload.manager, "manager"),
        office=_by_id(Office, payload.office, "office"),
        work_days=tuple(payload.work_days),
    )
    if payload.start_date is not None:
        data.start_date = payload.start_date
    person = actions.do_create_person(request.user, data, request=request)
    return 201, person_out(person, True)
