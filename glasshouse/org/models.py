"""The organisation: offices, the team tree, people and their reporting lines.

Every write goes through `org.actions`, which refuses cycles in the team tree and in reporting
lines and writes an audit row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from glasshouse.accounts.models import User

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@functools.cache
def valid_time_zone(name: str) -> bool:
    # Cached: a 10,000-row import repeats a handful of zones.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Office(models.Model):
    name = models.CharField(max_length=100, unique=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    name = models.CharField(max_length=150, unique=True)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def ancestors(self) -> list[Team]:
        chain: list[Team] = []
        node = self.parent
        while node is not None and node not in chain:
            chain.append(node)
            node = node.parent
        return chain


class EmploymentType(models.TextChoices):
    EMPLOYEE = "employee", "Employee"
    CONTRACTOR = "contractor", "Contractor"
    INTERN = "intern", "Intern"


class PersonStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ON_LEAVE = "on_leave", "On leave"
    LEFT = "left", "Left"


class PersonQuerySet(models.QuerySet["Person"]):
    def for_user(self, user: User) -> PersonQuerySet:
        """The directory: every signed-in person sees who works here (names, titles, teams).

        Sensitive fields are gated per person by `org.permissions.can_see_employment`.
        """
        if not user.is_authenticated or not user.is_active:
            return self.none()
        return self.all()

    def active(self) -> PersonQuerySet:
        return self.exclude(status=PersonStatus.LEFT)


class Person(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="person"
    )
    full_name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    employee_number = models.CharField(max_length=32, unique=True)
    job_title = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True, related_name="members")
    manager = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="direct_reports")
    # No office means the person works remotely.
    office = models.ForeignKey(Office, on_delete=models.PROTECT, null=True, blank=True, related_name="people")
    time_zone = models.CharField(max_length=64, default="UTC")
    work_start = models.TimeField(default=dt.time(9, 0))
    work_end = models.TimeField(default=dt.time(17, 0))
    # Comma-separated lower-case weekday abbreviations, e.g. "mon,tue,wed,thu,fri".
    work_days = models.CharField(max_length=27, default="mon,tue,wed,thu,fri")
    employment_type = models.CharField(max_length=16, choices=EmploymentType.choices, default=EmploymentType.EMPLOYEE)
    start_date = models.DateField(default=timezone.localdate)
    status = models.CharField(max_length=16, choices=PersonStatus.choices, default=PersonStatus.ACTIVE)

    objects = PersonQuerySet.as_manager()

    class Meta:
        ordering = ["full_name"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(manager=models.F("pk")), name="person_not_own_manager"),
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def is_remote(self) -> bool:
        return self.office_id is None

    @property
    def location_label(self) -> str:
        return "Remote" if self.office is None else self.office.name

    @property
    def work_days_list(self) -> list[str]:
        return [d for d in self.work_days.split(",") if d]

    def chain_of_command(self) -> list[Person]:
        chain: list[Person] = []
        node = self.manager
        while node is not None and node not in chain:
            chain.append(node)
            node = node.manager
        return chain


class ImportStatus(models.TextChoices):
    VALIDATING = "validating", "Validating"
    INVALID = "invalid", "Refused"
    IMPORTING = "importing", "Importing"
    DONE = "done", "Imported"
    FAILED = "failed", "Failed"


class PeopleImport(models.Model):
    """One CSV upload. Validation and writing run off the request so the page can show progress."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    filename = models.CharField(max_length=255)
    content = models.TextField()
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.VALIDATING)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    # [{"row": 3, "field": "email", "value": "...", "message": "..."}], rows numbered as a spreadsheet shows them.
    errors: models.JSONField[Any, Any] = models.JSONField(default=list)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import of {self.filename}"

    @property
    def percent(self) -> int:
        if self.total_rows == 0:
            return 0 if self.status in (ImportStatus.VALIDATING,) else 100
        return min(100, round(100 * self.processed_rows / self.total_rows))

    @property
    def finished(self) -> bool:
        return self.status in (ImportStatus.INVALID, ImportStatus.DONE, ImportStatus.FAILED)
