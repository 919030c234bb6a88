"""The organisation pages as people meet them: who may open what, what each role sees, forms
that refuse bad input with the reason, and the CSV upload from form to result."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from conftest import ClientFor, Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.org import actions, csvio
from glasshouse.org.models import ImportStatus, PeopleImport, Person, Team
from glasshouse.org.tests.factories import people_rows, to_csv
from glasshouse.org.tests.helpers import post

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

PROFILE_LINK = re.compile(r'href="/org/people/\d+/"')
ADMIN_ONLY = ["org:import", "org:export", "org:import_template", "org:person_new", "org:team_new", "org:office_new"]


@pytest.mark.parametrize("persona", ["hr", "it_admin"])
def test_hr_and_it_reach_import_export_and_editing(client_for: ClientFor, personas: Personas, persona: str) -> None:
    client = client_for(persona)
    for name in ADMIN_ONLY:
        assert client.get(reverse(name)).status_code == 200, name
    assert client.get(reverse("org:person_edit", args=[personas.person("employee").pk])).status_code == 200


@pytest.mark.parametrize("persona", ["employee", "manager", "auditor", "security"])
def test_everyone_else_is_refused_import_export_and_editing(
    client_for: ClientFor, personas: Personas, persona: str
) -> None:
    client = client_for(persona)
    for name in ADMIN_ONLY:
        response = client.get(reverse(name))
        assert response.status_code == 403, name
        reason = re.search(r'data-testid="forbidden-reason">([^<]*)<', response.content.decode())
        assert reason is not None
        assert reason.group(1).startswith("This page is for: ")
        assert {"HR partner", "IT admin"} <= set(reason.group(1)[18:].rstrip(".").split(", "))
    people = Person.objects.count()
    response = post(client, reverse("org:person_new"), {"full_name": "Sneaky", "email": "s@example.test"})
    assert response.status_code == 403
    assert Person.objects.count() == people
    assert not AuditEntry.objects.filter(action="org.people.export").exists()


def test_an_outsider_is_told_to_ask_it_to_link_their_account(client_for: ClientFor) -> None:
    response = client_for("outsider").get(reverse("org:people"))
    assert response.status_code == 403
    assert "Ask an IT admin to link your account" in response.content.decode()


def profile(client: Client, person: Person) -> str:
    response = client.get(reverse("org:person", args=[person.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("viewer", "sees"),
    [("employee", True), ("manager", True), ("hr", True), ("it_admin", True), ("auditor", False), ("security", False)],
)
def test_employment_details_are_shown_to_the_person_their_managers_and_hr_only(
    client_for: ClientFor, personas: Personas, viewer: str, sees: bool
) -> None:
    page = profile(client_for(viewer), personas.person("employee"))
    assert "Eve Employee" in page
    assert "Max Manager" in page  # everyone sees the reporting line
    assert ('data-testid="employment"' in page) is sees
    assert ("E005" in page) is sees
    assert ("Working hours" in page) is sees


def test_a_manager_does_not_see_their_own_managers_employment_details(
    client_for: ClientFor, personas: Personas
) -> None:
    page = profile(client_for("employee"), personas.person("manager"))
    assert "E004" not in page
    assert "Eve Employee" in page  # listed among Max's direct reports


def test_the_directory_searches_filters_and_pages(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("employee")
    page = client.get(reverse("org:people"), {"q": "hr@"}).content.decode()
    assert "1 person" in page
    assert "Eve Employee" not in page
    rows = people_rows(60, teams=[], offices=[])
    assert actions.run_import(actions.do_create_import(None, "x.csv", to_csv(rows), background=False).pk).status == (
        ImportStatus.DONE
    )
    first = client.get(reverse("org:people"), {"q": "Person G"}).content.decode()
    assert "60 people" in first
    assert "Page 1 of 2" in first
    assert len(PROFILE_LINK.findall(first)) == 50
    second = client.get(reverse("org:people"), {"q": "Person G", "page": "2"}).content.decode()
    assert len(PROFILE_LINK.findall(second)) == 10
    remote = client.get(reverse("org:people"), {"location": "remote", "team": str(personas.sales_team.pk)})
    assert "2 people" in remote.content.decode()  # Max and Eve, both remote in Sales


def test_an_htmx_search_returns_only_the_results(client_for: ClientFor) -> None:
    response = client_for("employee").get(reverse("org:people"), {"q": "eve"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "Eve Employee" in body
    assert "<html" not in body


def test_employment_filters_only_work_for_hr(client_for: ClientFor, personas: Personas) -> None:
    employee = personas.person("employee")
    employee.employment_type = "contractor"
    employee.save()
    by_hr = client_for("hr").get(reverse("org:people"), {"employment_type": "contractor"}).content.decode()
    assert "1 person" in by_hr
    by_colleague = client_for("auditor").get(reverse("org:people"), {"employment_type": "contractor"})
    assert "6 people" in by_colleague.content.decode()


def test_the_org_chart_loads_each_level_when_opened(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("employee")
    chart = client.get(reverse("org:chart")).content.decode()
    children_url = reverse("org:chart_children", args=[personas.person("manager").pk])
    assert f'hx-get="{children_url}"' in chart
    assert "Eve Employee" not in chart  # not loaded until Max is opened
    children = client.get(children_url, HTTP_HX_REQUEST="true").content.decode()
    assert "Eve Employee" in children
    assert "<html" not in children


def test_my_team_lists_direct_and_indirect_reports(client_for: ClientFor, personas: Personas) -> None:
    employee = personas.person("employee")
    intern = Person.objects.create(full_name="Ian Intern", email="ian@example.test", employee_number="E010")
    intern.manager = employee
    intern.save()
    page = client_for("manager").get(reverse("org:my_team")).content.decode()
    assert "1 direct report, 2 people in all" in page
    assert "Eve Employee" in page
    assert "Ian Intern" in page
    assert client_for("employee").get(reverse("org:my_team")).status_code == 200  # Eve now manages Ian


def test_teams_show_member_counts_through_the_tree(client_for: ClientFor) -> None:
    page = client_for("employee").get(reverse("org:teams")).content.decode()
    assert "6 in total" in page  # everyone sits somewhere under Company
    assert "2 members" in page  # Sales: Max and Eve


def test_adding_a_person_through_the_form(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("hr")
    form = {
        "full_name": "Nina New",
        "email": "nina@example.test",
        "employee_number": "E200",
        "team": str(personas.sales_team.pk),
        "manager": "MANAGER@example.test",
        "office": "",
        "time_zone": "Europe/Berlin",
        "work_start": "09:00",
        "work_end": "17:00",
        "work_days": ["mon", "tue"],
        "employment_type": "employee",
        "start_date": "2025-01-06",
        "status": "active",
    }
    response = post(client, reverse("org:person_new"), form)
    nina = Person.objects.get(email="nina@example.test")
    assert response.status_code == 302
    assert response["Location"] == reverse("org:person", args=[nina.pk])
    assert nina.manager == personas.person("manager")
    assert nina.work_days == "mon,tue"
    assert AuditEntry.objects.filter(action="org.person.create", target_id=str(nina.pk)).exists()


def test_the_person_form_shows_why_it_refused(client_for: ClientFor, personas: Personas) -> None:
    manager = personas.person("manager")
    response = post(
        client_for("hr"),
        reverse("org:person_edit", args=[manager.pk]),
        {
            "full_name": "Max Manager",
            "email": "hr@example.test",
            "employee_number": "E004",
            "manager": "employee@example.test",
            "time_zone": "Europe/London",
            "work_start": "09:00",
            "work_end": "17:00",
            "work_days": ["mon"],
            "employment_type": "employee",
            "start_date": "2022-01-10",
            "status": "active",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Nothing was saved" in page
    assert "already used by Hana Partner" in page
    assert "Max Manager → Eve Employee → Max Manager" in page
    manager.refresh_from_db()
    assert manager.email == "manager@example.test"


def test_moving_a_team_under_its_own_sub_team_is_refused_on_the_page(client_for: ClientFor, personas: Personas) -> None:
    response = post(
        client_for("it_admin"),
        reverse("org:team_edit", args=[personas.company.pk]),
        {"name": "Company", "parent": str(personas.sales_team.pk)},
    )
    assert response.status_code == 200
    assert "Company → Sales → Company" in response.content.decode()
    assert Team.objects.get(pk=personas.company.pk).parent is None


def test_export_downloads_every_field_and_is_audited(client_for: ClientFor) -> None:
    response = client_for("hr").get(reverse("org:export"))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="people-')
    lines = response.content.decode().splitlines()
    assert lines[0] == ",".join(csvio.COLUMN_NAMES)
    assert len(lines) == 7
    assert AuditEntry.objects.get(action="org.people.export").actor_label == "hr@example.test"


def upload(client: Client, data: bytes) -> Response:
    return post(client, reverse("org:import"), {"file": SimpleUploadedFile("people.csv", data, "text/csv")})


def test_upload_then_status_page_shows_the_result(
    client_for: ClientFor, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    client = client_for("hr")
    rows = people_rows(3, teams=["Sales"], offices=["London"])
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[attr-defined]
        response = upload(client, to_csv(rows))
    job = PeopleImport.objects.get()
    assert response["Location"] == reverse("org:import_status", args=[job.pk])
    assert len(callbacks) == 1  # the background run, started once the upload is committed
    waiting = client.get(reverse("org:import_status", args=[job.pk])).content.decode()
    assert 'hx-trigger="every 500ms"' in waiting
    actions.run_import(job.pk)
    done = client.get(reverse("org:import_status", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "Imported 3 rows: 3 people added, 0 updated, 0 unchanged." in done
    assert "hx-trigger" not in done  # polling stops


def test_a_refused_import_lists_each_problem_by_row_and_column(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    rows = people_rows(2, teams=["Sales"], offices=["London"])
    rows[1]["time_zone"] = "Atlantis/Capital"
    with_errors = to_csv(rows)
    job = actions.do_create_import(None, "people.csv", with_errors, background=False)
    actions.run_import(job.pk)
    page = client.get(reverse("org:import_status", args=[job.pk])).content.decode()
    assert "Refused" in page
    assert "<td>3</td><td><code>time_zone</code></td><td>Atlantis/Capital</td>" in page
    assert "Unknown time zone" in page


def test_an_unreadable_upload_is_refused_on_the_form(client_for: ClientFor) -> None:
    response = upload(client_for("hr"), b"\xff\xfe\x00binary")
    assert response.status_code == 200
    assert "not a CSV text file" in response.content.decode()
    assert not PeopleImport.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_import_runs_in_the_background_and_the_page_follows_it(
    client_for: ClientFor, django_capture_on_commit_callbacks: Callable[..., object]
) -> None:
    client = client_for("hr")
    rows = people_rows(1500, teams=["Sales"], offices=["London"])
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
        upload(client, to_csv(rows))
    job = PeopleImport.objects.get()
    url = reverse("org:import_status", args=[job.pk])
    deadline = time.monotonic() + 60
    while PeopleImport.objects.get(pk=job.pk).status not in (ImportStatus.DONE, ImportStatus.INVALID):
        assert time.monotonic() < deadline, "the import never finished"
        time.sleep(0.1)
    page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Imported 1,500 rows: 1,500 people added" in page
    assert Person.objects.filter(employee_number__startswith="G").count() == 1500
