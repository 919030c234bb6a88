"""Role x URL expectations for every organisation page and API endpoint (joined by
`glasshouse/core/tests/test_role_matrix.py`).

The directory, profiles, teams, offices and the org chart are for anyone in the organisation;
an outsider (an account linked to no person and holding no role) gets a 403 asking IT to link it.
Editing, import and export are for HR partners and IT admins; My team for managers.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.core.tests.matrix import employee_person, employee_person_id, none, only
from glasshouse.org.models import PeopleImport

IN_ORGANISATION = ("it_admin", "security", "hr", "manager", "employee", "auditor")
ORG_ADMINS = ("it_admin", "hr")


def sales_team(p: Personas) -> dict[str, object]:
    return {"pk": p.sales_team.pk}


def manager_person(p: Personas) -> dict[str, object]:
    return {"pk": p.person("manager").pk}


def an_import(p: Personas) -> dict[str, object]:
    job = PeopleImport.objects.create(created_by=p.hr, filename="people.csv", content="")
    return {"pk": job.pk}


MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("org:people", none, only(IN_ORGANISATION)),
    ("org:person", employee_person, only(IN_ORGANISATION)),
    ("org:person_new", none, only(ORG_ADMINS)),
    ("org:person_edit", employee_person, only(ORG_ADMINS)),
    ("org:teams", none, only(IN_ORGANISATION)),
    ("org:team_new", none, only(ORG_ADMINS)),
    ("org:team_edit", sales_team, only(ORG_ADMINS)),
    ("org:offices", none, only(IN_ORGANISATION)),
    ("org:office_new", none, only(ORG_ADMINS)),
    ("org:chart", none, only(IN_ORGANISATION)),
    ("org:chart_children", manager_person, only(IN_ORGANISATION)),
    ("org:my_team", none, only(("manager",))),
    ("org:export", none, only(ORG_ADMINS)),
    ("org:import", none, only(ORG_ADMINS)),
    ("org:import_template", none, only(ORG_ADMINS)),
    ("org:import_status", an_import, only(ORG_ADMINS)),
    ("api:org_people", none, only(IN_ORGANISATION, anonymous=401)),
    ("api:org_person", employee_person_id, only(IN_ORGANISATION, anonymous=401)),
    ("api:org_teams", none, only(IN_ORGANISATION, anonymous=401)),
]
