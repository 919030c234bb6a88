"""Typed shapes of the organisation API. Employment details are null unless the caller may see
them (`org.permissions.can_see_employment`)."""

from __future__ import annotations

import datetime as dt

from ninja import Schema
from pydantic import Field

from glasshouse.org.models import EmploymentType, PersonStatus
from glasshouse.org.validation import DEFAULT_WORK_DAYS


class TeamRef(Schema):
    id: int
    name: str


class PersonRef(Schema):
    id: int
    full_name: str


class OfficeRef(Schema):
    id: int
    name: str


class Employment(Schema):
    employee_number: str
    employment_type: str
    start_date: dt.date
    status: str
    # Wall-clock times in the person's time_zone, "HH:MM": a JSON Schema "time" would demand
    # a UTC offset, which a working day that follows its zone through DST does not have.
    work_start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["09:00"])
    work_end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["17:30"])
    work_days: list[str]


class PersonOut(Schema):
    id: int
    full_name: str
    email: str
    job_title: str
    team: TeamRef | None
    manager: PersonRef | None
    office: OfficeRef | None = Field(description="null when the person works remotely")
    time_zone: str
    employment: Employment | None = Field(
        description="null unless you are HR, IT, the person, or above them in reporting lines"
    )


class PeoplePage(Schema):
    count: int
    limit: int
    offset: int
    items: list[PersonOut]


class TeamOut(Schema):
    id: int
    name: str
    parent_id: int | None
    members: int = Field(description="active people in this team, not counting sub-teams")


class PersonIn(Schema):
    """A new person. `team`, `manager` and `office` are ids; no office means remote."""

    full_name: str
    email: str
    employee_number: str
    job_title: str = ""
    team: int | None = None
    manager: int | None = None
    office: int | None = None
    time_zone: str = "UTC"
    work_start: dt.time = dt.time(9, 0)
    work_end: dt.time = dt.time(17, 0)
    work_days: list[str] = Field(default_factory=lambda: list(DEFAULT_WORK_DAYS))
    employment_type: str = EmploymentType.EMPLOYEE.value
    start_date: dt.date | None = Field(default=None, description="today when left out")
    status: str = PersonStatus.ACTIVE.value
