"""The organisation API: paging, employment details only for those allowed, and adding people
with the same rules and error shape as the form."""

from __future__ import annotations

from typing import Any

from conftest import ClientFor, Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.org.models import Person
from glasshouse.org.tests.helpers import post_json

PEOPLE = "/api/v1/org/people"


def test_the_people_list_pages_with_limit_and_offset(client_for: ClientFor) -> None:
    client = client_for("employee")
    first = client.get(PEOPLE, {"limit": 4}).json()
    assert (first["count"], first["limit"], first["offset"], len(first["items"])) == (6, 4, 0, 4)
    rest = client.get(PEOPLE, {"limit": 4, "offset": 4}).json()
    assert len(rest["items"]) == 2
    names = [p["full_name"] for p in first["items"] + rest["items"]]
    assert names == sorted(names)
    assert client.get(PEOPLE, {"limit": 201}).status_code == 422
    assert client.get(PEOPLE, {"search": "eve"}).json()["count"] == 1


def employment_of(client_for: ClientFor, viewer: str, person: Person) -> Any:
    return client_for(viewer).get(f"{PEOPLE}/{person.pk}").json()["employment"]


def test_employment_details_follow_the_same_rule_as_the_profile(client_for: ClientFor, personas: Personas) -> None:
    employee = personas.person("employee")
    assert employment_of(client_for, "auditor", employee) is None
    assert employment_of(client_for, "manager", employee)["employee_number"] == "E005"
    assert employment_of(client_for, "hr", employee)["work_days"] == ["mon", "tue", "wed", "thu", "fri"]
    listed = client_for("manager").get(PEOPLE, {"limit": 200}).json()["items"]
    visible = {p["full_name"] for p in listed if p["employment"] is not None}
    assert visible == {"Max Manager", "Eve Employee"}


def test_teams_list_with_parents_and_member_counts(client_for: ClientFor, personas: Personas) -> None:
    teams = {t["name"]: t for t in client_for("employee").get("/api/v1/org/teams").json()}
    assert teams["Sales"]["parent_id"] == personas.company.pk
    assert teams["Sales"]["members"] == 2


def test_hr_adds_a_person_through_the_api(client_for: ClientFor, personas: Personas) -> None:
    response = post_json(
        client_for("hr"),
        PEOPLE,
        {
            "full_name": "Api Person",
            "email": "api@example.test",
            "employee_number": "E300",
            "team": personas.sales_team.pk,
            "manager": personas.person("manager").pk,
            "time_zone": "Asia/Singapore",
            "work_days": ["mon", "tue", "wed"],
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["team"]["name"] == "Sales"
    assert body["office"] is None
    assert body["employment"]["work_days"] == ["mon", "tue", "wed"]
    assert AuditEntry.objects.filter(action="org.person.create", target_id=str(body["id"])).exists()


def test_bad_input_gets_a_422_naming_each_field(client_for: ClientFor, personas: Personas) -> None:
    people = Person.objects.count()
    response = post_json(
        client_for("it_admin"),
        PEOPLE,
        {
            "full_name": "Dup",
            "email": "EMPLOYEE@example.test",
            "employee_number": "E301",
            "time_zone": "Moon/Base",
            "team": 999999,
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "Invalid input"
    assert body["errors"] == {"team": ["There is no team with id 999999."]}
    response = post_json(
        client_for("it_admin"),
        PEOPLE,
        {"full_name": "Dup", "email": "EMPLOYEE@example.test", "employee_number": "E301", "time_zone": "Moon/Base"},
    )
    errors = response.json()["errors"]
    assert set(errors) == {"email", "time_zone"}
    assert "already used by Eve Employee" in errors["email"][0]
    assert Person.objects.count() == people


def test_only_hr_and_it_add_people(client_for: ClientFor) -> None:
    response = post_json(
        client_for("manager"), PEOPLE, {"full_name": "X", "email": "x@example.test", "employee_number": "X"}
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "Only HR partners and IT admins add people."


def test_an_outsider_cannot_read_the_directory(client_for: ClientFor) -> None:
    response = client_for("outsider").get(PEOPLE)
    assert response.status_code == 403
    assert "link your account" in response.json()["detail"]
