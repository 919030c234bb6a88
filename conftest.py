"""Named personas shared by every test: one person per role, plus an outsider with no role.

`personas` builds a tiny organisation: an IT team and an HR team under a company root team,
a manager with one direct report, and a login for each persona with PERSONA_PASSWORD.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from glasshouse.accounts.models import RoleAssignment, User
from glasshouse.core.roles import Role
from glasshouse.org.models import Office, Person, Team

PERSONA_PASSWORD = "persona-password-123"


@dataclass
class Personas:
    it_admin: User
    security: User
    hr: User
    manager: User
    employee: User
    auditor: User
    outsider: User
    office: Office
    company: Team
    it_team: Team
    people_team: Team
    sales_team: Team

    def by_name(self, name: str) -> User:
        user: User = getattr(self, name)
        return user

    def person(self, name: str) -> Person:
        person: Person = self.by_name(name).person
        return person


PERSONA_NAMES = ("it_admin", "security", "hr", "manager", "employee", "auditor", "outsider")


@functools.cache
def persona_password_hash() -> str:
    """Argon2 is slow on purpose; hash the shared persona password once per test session."""
    return make_password(PERSONA_PASSWORD)


def make_user(email: str, name: str) -> User:
    return User.objects.create(email=email, display_name=name, password=persona_password_hash())


def make_person(
    email: str, name: str, number: str, team: Team, office: Office | None, manager: Person | None = None
) -> Person:
    user = make_user(email, name)
    return Person.objects.create(
        user=user,
        full_name=name,
        email=email,
        employee_number=number,
        job_title="Staff",
        team=team,
        manager=manager,
        office=office,
        time_zone="Europe/London",
        start_date=dt.date(2022, 1, 10),
    )


@pytest.fixture
def personas(db: None) -> Personas:
    office = Office.objects.create(name="London", city="London", country="UK", time_zone="Europe/London")
    company = Team.objects.create(name="Company")
    it_team = Team.objects.create(name="IT", parent=company)
    people_team = Team.objects.create(name="People", parent=company)
    sales_team = Team.objects.create(name="Sales", parent=company)
    it_admin = make_person("it@example.test", "Ida Admin", "E001", it_team, office)
    security = make_person("sec@example.test", "Sam Secure", "E002", it_team, office)
    hr = make_person("hr@example.test", "Hana Partner", "E003", people_team, office)
    manager = make_person("manager@example.test", "Max Manager", "E004", sales_team, None)
    employee = make_person("employee@example.test", "Eve Employee", "E005", sales_team, None, manager=manager)
    auditor = make_person("auditor@example.test", "Aud Itor", "E006", company, office)
    outsider = make_user("outsider@example.test", "Olly Outsider")
    for person, role in (
        (it_admin, Role.IT_ADMIN),
        (security, Role.SECURITY_ANALYST),
        (hr, Role.HR_PARTNER),
        (auditor, Role.AUDITOR),
    ):
        assert person.user is not None
        RoleAssignment.objects.create(user=person.user, role=role)

    def user(p: Person) -> User:
        assert p.user is not None
        return p.user

    return Personas(
        it_admin=user(it_admin),
        security=user(security),
        hr=user(hr),
        manager=user(manager),
        employee=user(employee),
        auditor=user(auditor),
        outsider=outsider,
        office=office,
        company=company,
        it_team=it_team,
        people_team=people_team,
        sales_team=sales_team,
    )


ClientFor = Callable[[str], Client]


@pytest.fixture
def client_for(personas: Personas) -> ClientFor:
    """client_for("hr") -> a CSRF-enforcing test client signed in as that persona."""

    def make(name: str) -> Client:
        c = Client(enforce_csrf_checks=True)
        if name != "anonymous":
            c.force_login(personas.by_name(name))
        return c

    return make


@pytest.fixture(autouse=True)
def keep_spans_forever(settings: Any) -> None:
    """Test batches use fixed dates in January 2025, which the default span retention (180 days)
    would refuse to store; the retention tests set SPAN_RETENTION_DAYS themselves."""
    settings.SPAN_RETENTION_DAYS = 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests of PostgreSQL-only storage are deselected on SQLite (the suite runs on both, so
    they run in the PostgreSQL pass), rather than reported as skipped."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    kept = [item for item in items if item.get_closest_marker("postgresql_only") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
