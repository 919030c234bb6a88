"""The demo organisation: realistic, complete, and the same however often it is seeded."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from glasshouse.access.roles import roles_of
from glasshouse.accounts.models import RoleAssignment, User
from glasshouse.audit.models import AuditEntry
from glasshouse.core.roles import Role
from glasshouse.org.models import EmploymentType, Office, Person, PersonStatus, Team


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Person, Team, Office, User, RoleAssignment))


@pytest.mark.django_db
def test_seeding_twice_gives_the_same_organisation(settings: Settings) -> None:
    settings.DEBUG = True
    output = seed()
    first = counts()
    seed()
    assert counts() == first
    people, teams, offices, users, _ = first
    assert people >= 200
    assert teams >= 15
    assert offices == 3
    assert users == people
    assert Person.objects.filter(user__isnull=True).count() == 0
    assert Person.objects.filter(employment_type=EmploymentType.CONTRACTOR).exists()
    assert Person.objects.filter(employment_type=EmploymentType.INTERN).exists()
    assert Person.objects.filter(status=PersonStatus.ON_LEAVE).count() == 2
    assert Person.objects.filter(office__isnull=True).values("time_zone").distinct().count() > 3
    assert Person.objects.filter(manager__isnull=True).count() == 1  # the CEO
    assert Team.objects.filter(parent__parent__isnull=False).exists()  # sub-teams of departments
    assert AuditEntry.objects.filter(action="org.demo.seed").count() == 2
    assert "206 people added this run" in output


@pytest.mark.django_db
def test_every_role_has_a_working_demo_login(settings: Settings) -> None:
    settings.DEBUG = True
    output = seed()
    expected = {
        "IT admin": Role.IT_ADMIN,
        "Security analyst": Role.SECURITY_ANALYST,
        "HR partner": Role.HR_PARTNER,
        "Manager": Role.MANAGER,
        "Employee": Role.EMPLOYEE,
        "Auditor": Role.AUDITOR,
    }
    table = {line[:18].strip(): line[18:].split() for line in output.splitlines() if line[:18].strip() in expected}
    assert set(table) == set(expected)
    for label, role in expected.items():
        email, password = table[label]
        user = authenticate(email=email, password=password)
        assert user is not None, label
        assert role in roles_of(user), label
    employee = User.objects.get(email=table["Employee"][0])
    assert roles_of(employee) == {Role.EMPLOYEE}


@pytest.mark.django_db
def test_seeding_refuses_without_debug(settings: Settings) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only with DEBUG on"):
        seed()
    assert not Person.objects.exists()


@pytest.mark.django_db
def test_logins_can_be_printed_again_without_changing_anything(settings: Settings) -> None:
    with pytest.raises(CommandError, match="no demo organisation yet"):
        call_command("seed_demo", logins=True, stdout=io.StringIO())
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())
    entries = AuditEntry.objects.count()
    out = io.StringIO()
    call_command("seed_demo", logins=True, stdout=out)
    rows = [line for line in out.getvalue().splitlines() if "glasshouse-demo" in line]
    assert [row.split("  ")[0].strip() for row in rows] == [
        "IT admin",
        "Security analyst",
        "HR partner",
        "Manager",
        "Employee",
        "Auditor",
    ]
    assert AuditEntry.objects.count() == entries
