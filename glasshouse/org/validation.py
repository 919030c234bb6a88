"""Rules for a person's fields and for loops in the team tree and reporting lines.

Shared by single edits (`org.actions`) and the CSV import (`org.csvio`), so a person refused
on the form is refused in a file for the same reason, in the same words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from glasshouse.org.models import WEEKDAYS, EmploymentType, Office, Person, PersonStatus, Team, valid_time_zone

K = TypeVar("K", bound=Hashable)

DEFAULT_WORK_DAYS = WEEKDAYS[:5]


@dataclass
class PersonInput:
    """Everything a person record holds apart from the login it is linked to."""

    full_name: str
    email: str
    employee_number: str
    job_title: str = ""
    team: Team | None = None
    manager: Person | None = None
    office: Office | None = None
    time_zone: str = "UTC"
    work_start: dt.time = dt.time(9, 0)
    work_end: dt.time = dt.time(17, 0)
    work_days: tuple[str, ...] = DEFAULT_WORK_DAYS
    employment_type: str = EmploymentType.EMPLOYEE
    start_date: dt.date = field(default_factory=timezone.localdate)
    status: str = PersonStatus.ACTIVE

    def __post_init__(self) -> None:
        self.full_name = self.full_name.strip()
        # Addresses are compared case-insensitively everywhere, as logins are.
        self.email = self.email.strip().lower()
        self.employee_number = self.employee_number.strip()
        self.job_title = self.job_title.strip()
        self.time_zone = self.time_zone.strip()
        days = {d.strip().lower() for d in self.work_days}
        # Known days in week order; unknown ones kept at the end so the check can name them.
        self.work_days = tuple(d for d in WEEKDAYS if d in days) + tuple(sorted(days - set(WEEKDAYS)))

    def model_fields(self) -> dict[str, object]:
        """Values as `Person` stores them, keyed by model field name."""
        return {
            "full_name": self.full_name,
            "email": self.email,
            "employee_number": self.employee_number,
            "job_title": self.job_title,
            "team": self.team,
            "manager": self.manager,
            "office": self.office,
            "time_zone": self.time_zone,
            "work_start": self.work_start,
            "work_end": self.work_end,
            "work_days": ",".join(self.work_days),
            "employment_type": self.employment_type,
            "start_date": self.start_date,
            "status": self.status,
        }


def person_field_errors(data: PersonInput) -> dict[str, str]:
    """Problems found in the values alone, without looking at anyone else. {field: message}."""
    errors: dict[str, str] = {}
    limits = {"full_name": 200, "email": 254, "employee_number": 32, "job_title": 150}
    for name, label in (
        ("full_name", "A full name"),
        ("email", "An e-mail address"),
        ("employee_number", "An employee number"),
    ):
        if not getattr(data, name):
            errors[name] = f"{label} is required."
    for name, limit in limits.items():
        value: str = getattr(data, name)
        if len(value) > limit:
            errors[name] = f"At most {limit} characters (this has {len(value)})."
    if data.email and "email" not in errors:
        try:
            validate_email(data.email)
        except ValidationError:
            errors["email"] = f"'{data.email}' is not a valid e-mail address."
    if not valid_time_zone(data.time_zone):
        errors["time_zone"] = f"Unknown time zone '{data.time_zone}'; use a name such as Europe/London or UTC."
    unknown_days = [d for d in data.work_days if d not in WEEKDAYS]
    if unknown_days:
        errors["work_days"] = f"Unknown day {', '.join(unknown_days)}; use {', '.join(WEEKDAYS)}."
    elif not data.work_days:
        errors["work_days"] = "At least one working day is required."
    if data.work_start == data.work_end:
        errors["work_end"] = (
            "The working day must end at a different time than it starts "
            "(a shift may cross midnight, e.g. 22:00 to 06:00)."
        )
    if data.employment_type not in EmploymentType.values:
        errors["employment_type"] = f"Unknown employment type '{data.employment_type}'; use {_choices(EmploymentType)}."
    if data.status not in PersonStatus.values:
        errors["status"] = f"Unknown status '{data.status}'; use {_choices(PersonStatus)}."
    return errors


def _choices(choices: type[EmploymentType] | type[PersonStatus]) -> str:
    return ", ".join(choices.values)


def find_loops(starts: Iterable[K], parent_of: Callable[[K], K | None]) -> list[list[K]]:
    """Every loop reachable by following parents up from `starts`, each listed once.

    A loop [a, b, c] means a's parent is b, b's is c and c's is a. Nodes already walked are not
    walked again, so checking a whole file of reporting lines stays linear.
    """
    settled: set[K] = set()
    loops: list[list[K]] = []
    for start in starts:
        path: list[K] = []
        position: dict[K, int] = {}
        node: K | None = start
        while node is not None and node not in settled and node not in position:
            position[node] = len(path)
            path.append(node)
            node = parent_of(node)
        if node is not None and node in position:
            loops.append(path[position[node] :])
        settled.update(path)
    return loops


def describe_reporting_loop(names: list[str]) -> str:
    chain = " → ".join([*names, names[0]])
    return (
        f"That would make a reporting loop: {chain} (each reports to the next). "
        "Nobody can be their own manager, directly or through others."
    )


def describe_team_loop(names: list[str]) -> str:
    chain = " → ".join([*names, names[0]])
    return f"That would put a team inside itself: {chain} (each sits under the next)."
