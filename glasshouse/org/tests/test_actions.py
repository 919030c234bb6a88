"""Changing people and teams: loops refused with the names in them, field rules, audit rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from conftest import Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.org import actions
from glasshouse.org.models import Person, Team
from glasshouse.org.validation import PersonInput


def input_for(person: Person, **changes: object) -> PersonInput:
    data = PersonInput(
        full_name=person.full_name,
        email=person.email,
        employee_number=person.employee_number,
        job_title=person.job_title,
        team=person.team,
        manager=person.manager,
        office=person.office,
        time_zone=person.time_zone,
        work_start=person.work_start,
        work_end=person.work_end,
        work_days=tuple(person.work_days_list),
        employment_type=person.employment_type,
        start_date=person.start_date,
        status=person.status,
    )
    for name, value in changes.items():
        setattr(data, name, value)
    return data


def field_errors(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {field: " ".join(messages) for field, messages in exc.value.message_dict.items()}


def test_a_manager_cannot_report_to_their_own_report(personas: Personas) -> None:
    manager, employee = personas.person("manager"), personas.person("employee")
    with pytest.raises(ValidationError) as exc:
        actions.do_update_person(personas.hr, manager, input_for(manager, manager=employee))
    message = field_errors(exc)["manager"]
    assert "reporting loop" in message
    assert "Max Manager → Eve Employee → Max Manager" in message
    manager.refresh_from_db()
    assert manager.manager_id is None
    assert not AuditEntry.objects.filter(action="org.person.update").exists()


def test_an_indirect_reporting_loop_names_everyone_in_it(personas: Personas) -> None:
    hr, manager, employee = personas.person("hr"), personas.person("manager"), personas.person("employee")
    actions.do_update_person(personas.hr, manager, input_for(manager, manager=hr))
    with pytest.raises(ValidationError) as exc:
        actions.do_update_person(personas.hr, hr, input_for(hr, manager=employee))
    assert "Hana Partner → Eve Employee → Max Manager → Hana Partner" in field_errors(exc)["manager"]


def test_nobody_is_their_own_manager(personas: Personas) -> None:
    employee = personas.person("employee")
    with pytest.raises(ValidationError) as exc:
        actions.do_update_person(personas.hr, employee, input_for(employee, manager=employee))
    assert field_errors(exc)["manager"] == "A person cannot be their own manager."


def test_a_team_cannot_move_under_its_own_sub_team(personas: Personas) -> None:
    platform = actions.do_create_team(personas.hr, "Platform", personas.it_team)
    with pytest.raises(ValidationError) as exc:
        actions.do_update_team(personas.hr, personas.company, "Company", platform)
    assert "Company → Platform → IT → Company" in field_errors(exc)["parent"]
    personas.company.refresh_from_db()
    assert personas.company.parent_id is None


def test_every_bad_field_is_reported_at_once(personas: Personas) -> None:
    data = PersonInput(
        full_name="",
        email="hr@example.test",
        employee_number="E001",
        time_zone="Mars/Olympus",
        work_start=dt.time(9),
        work_end=dt.time(9),
        work_days=("mon", "funday"),
        employment_type="volunteer",
    )
    with pytest.raises(ValidationError) as exc:
        actions.do_create_person(personas.hr, data)
    errors = field_errors(exc)
    assert errors["full_name"] == "A full name is required."
    assert "already used by Hana Partner" in errors["email"]
    assert "already belongs to Ida Admin" in errors["employee_number"]
    assert "Unknown time zone 'Mars/Olympus'" in errors["time_zone"]
    assert "Unknown day funday" in errors["work_days"]
    assert "different time" in errors["work_end"]
    assert "volunteer" in errors["employment_type"]


def test_night_shifts_are_allowed_and_emails_are_stored_lower_case(personas: Personas) -> None:
    data = PersonInput(
        full_name="Nora Night",
        email="Nora.Night@Example.test",
        employee_number="E100",
        work_start=dt.time(22),
        work_end=dt.time(6),
        work_days=("sun", "mon"),
    )
    person = actions.do_create_person(personas.hr, data)
    assert person.email == "nora.night@example.test"
    assert person.work_days == "mon,sun"


def test_an_update_is_audited_with_only_what_changed(personas: Personas) -> None:
    employee = personas.person("employee")
    actions.do_update_person(
        personas.hr, employee, input_for(employee, job_title="Senior staff", team=personas.it_team)
    )
    entry = AuditEntry.objects.get(action="org.person.update")
    assert entry.before == {"job_title": "Staff", "team": "Sales"}
    assert entry.after == {"job_title": "Senior staff", "team": "IT"}
    assert entry.actor_label == "hr@example.test"


def test_creating_teams_and_offices_is_audited_and_names_are_unique(personas: Personas) -> None:
    actions.do_create_team(personas.it_admin, "Data", None)
    with pytest.raises(ValidationError) as exc:
        actions.do_create_team(personas.it_admin, "data", None)
    assert "already a team called data" in field_errors(exc)["name"]
    actions.do_create_office(personas.it_admin, "Berlin", "Europe/Berlin")
    with pytest.raises(ValidationError) as exc:
        actions.do_create_office(personas.it_admin, "Remote", "Nowhere/Here")
    assert set(field_errors(exc)) == {"name", "time_zone"}
    assert Team.objects.filter(name="Data").count() == 1
    assert AuditEntry.objects.filter(action__in=["org.team.create", "org.office.create"]).count() == 2
