"""The overview report: numbers from the rollups, filters (team subtree, office/remote, dates),
the productive share following a rule change, the exports carrying the same numbers, the
shareable link honouring the opener's role, and a bounded number of queries."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from django.urls import reverse
from openpyxl import load_workbook
from pypdf import PdfReader

from conftest import ClientFor, Personas
from glasshouse.activity.models import Category
from glasshouse.activity.rollups import roll_up_pending
from glasshouse.ingest.tests.helpers import T0, Agent, window
from glasshouse.org.models import Team
from glasshouse.reports import actions

pytestmark = pytest.mark.django_db

# T0 is Wednesday 15 January 2025; the report covers that week and the next.
WEEK = {"from": "2025-01-13", "to": "2025-01-26"}


def idle(start: float, end: float, state: str) -> dict[str, Any]:
    return {"kind": "idle", "start": start, "end": end, "state": state}


def seed(personas: Personas) -> None:
    """Eve (sales, remote): 1 h code, 30 min solitaire, 80 min active + 10 min idle.
    Ida (IT, London office): 1 h code the next week."""
    eve = Agent.enrolled(personas.person("employee"))
    eve.send(
        {
            "batch_seq": 1,
            "spans": [
                window(T0, T0 + 3600, app="code"),
                window(T0 + 3600, T0 + 5400, app="solitaire"),
                idle(T0, T0 + 4800, "active"),
                idle(T0 + 4800, T0 + 5400, "idle"),
            ],
        }
    )
    ida = Agent.enrolled(personas.person("it_admin"))
    ida.send({"batch_seq": 1, "spans": [window(T0 + 7 * 86400, T0 + 7 * 86400 + 3600, app="code")]})
    roll_up_pending()


def get(client_for: ClientFor, who: str = "it_admin", **params: str | int) -> Any:
    return client_for(who).get(reverse("reports:overview"), {**WEEK, **params})


def test_overview_numbers_filters_and_recompute(personas: Personas, client_for: ClientFor) -> None:
    seed(personas)
    ov = get(client_for).context["ov"]
    assert (ov.active, ov.idle) == (4800.0, 600.0)
    assert ov.productive_share == 0.0  # nothing classified yet
    assert [(i.name, i.seconds, i.category) for i in ov.top_apps] == [
        ("code", 7200.0, "uncategorised"),
        ("solitaire", 1800.0, "uncategorised"),
    ]
    assert [(w.start, w.app) for w in ov.weeks] == [(dt.date(2025, 1, 13), 5400.0), (dt.date(2025, 1, 20), 3600.0)]
    # Classifying code as productive changes the share: 7200 of 9000 seconds.
    rule = actions.do_add_rule(personas.it_admin, None, "app", "code", int(Category.PRODUCTIVE))
    ov = get(client_for).context["ov"]
    assert ov.productive_share == pytest.approx(0.8)
    assert [w.productive_share for w in ov.weeks] == [pytest.approx(2 / 3), 1.0]
    # A sales override: sales members' code time is neutral, IT's stays productive.
    actions.do_add_rule(personas.it_admin, personas.sales_team, "app", "code", int(Category.NEUTRAL))
    ov = get(client_for).context["ov"]
    assert ov.productive_share == pytest.approx(0.4)
    assert ov.top_apps[0].category == "mixed"
    actions.do_remove_rule(personas.it_admin, rule)
    # Filters: team subtree, remote/office, dates.
    company = get(client_for, team=personas.company.pk).context["ov"]
    assert company.app_total == 9000.0
    sales = get(client_for, team=personas.sales_team.pk).context["ov"]
    assert (sales.app_total, sales.active) == (5400.0, 4800.0)
    remote = get(client_for, office="remote").context["ov"]
    assert remote.app_total == 5400.0
    london = get(client_for, office=str(personas.office.pk)).context["ov"]
    assert london.app_total == 3600.0
    assert get(client_for, office="remote", team=personas.it_team.pk).context["ov"].app_total == 0
    first_week = get(client_for, to="2025-01-19").context["ov"]
    assert first_week.app_total == 5400.0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2025-02-01", "to": "2025-01-01"}, "to"),
        ({"from": "yesterday"}, "from_"),
        ({"office": "999"}, "office"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(
    personas: Personas, client_for: ClientFor, params: dict[str, str], field: str
) -> None:
    response = client_for("security").get(reverse("reports:overview"), params)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    export = client_for("security").get(reverse("reports:export", kwargs={"fmt": "csv"}), params)
    assert export.status_code == 400
    assert export.content.startswith(b"Nothing exported:")


def test_exports_carry_the_page_numbers(personas: Personas, client_for: ClientFor) -> None:
    seed(personas)
    actions.do_add_rule(personas.it_admin, None, "app", "code", int(Category.PRODUCTIVE))
    actions.do_add_rule(personas.it_admin, None, "app", "=cmd*", int(Category.NEUTRAL))
    client = client_for("security")

    def export(fmt: str) -> Any:
        response = client.get(reverse("reports:export", kwargs={"fmt": fmt}), WEEK)
        assert response.status_code == 200
        assert "attachment" in response["Content-Disposition"]
        return response

    rows = list(csv.DictReader(io.StringIO(export("csv").content.decode())))
    by_item = {(r["section"], r["item"]): r for r in rows}
    assert by_item[("summary", "productive share")]["percent"] == "80.0"
    assert by_item[("summary", "active")]["hours"] == "1.33"
    assert by_item[("top apps", "code")]["hours"] == "2.0"
    assert by_item[("top apps", "code")]["category"] == "productive"
    assert by_item[("weeks", "2025-01-13")]["percent"] == "66.7"

    book = load_workbook(io.BytesIO(export("xlsx").content))
    assert book.sheetnames == ["Summary", "Categories", "Top applications", "Top sites", "Weeks"]
    apps = [[c.value for c in row] for row in book["Top applications"].iter_rows(min_row=3)]
    assert apps[0] == ["top apps", "code", "productive", 2, None]
    summary = {row[1]: row[4] for row in book["Summary"].iter_rows(min_row=3, values_only=True)}
    assert summary["productive share"] == 80

    pdf = export("pdf").content
    assert pdf.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Activity overview" in text
    for expected in ("solitaire", "80.0", "66.7"):
        assert expected in text


def test_shared_link_opens_only_for_roles_that_may_see_it(personas: Personas, client_for: ClientFor) -> None:
    seed(personas)
    page = get(client_for, team=personas.sales_team.pk)
    link = page.context["share_url"]
    assert f"team={personas.sales_team.pk}" in link
    path = link.split("testserver", 1)[1]
    assert client_for("security").get(path).context["ov"].app_total == 5400.0
    for name in ("hr", "manager", "employee", "auditor", "outsider"):
        assert client_for(name).get(path).status_code == 403
        assert client_for(name).get(reverse("reports:export", kwargs={"fmt": "csv"}), WEEK).status_code == 403
    assert client_for("anonymous").get(path).status_code == 302


def test_overview_query_count_does_not_grow_with_teams_or_data(
    personas: Personas, client_for: ClientFor, django_assert_max_num_queries: Any
) -> None:
    seed(personas)
    client = client_for("it_admin")
    client.get(reverse("reports:overview"), WEEK)  # warm the session
    with django_assert_max_num_queries(12):
        assert client.get(reverse("reports:overview"), {**WEEK, "team": str(personas.company.pk)}).status_code == 200
    for n in range(20):
        Team.objects.create(name=f"Team {n}", parent=personas.company)
    actions.do_add_rule(personas.it_admin, personas.sales_team, "app_pattern", "*", int(Category.NEUTRAL))
    with django_assert_max_num_queries(12):
        assert client.get(reverse("reports:overview"), {**WEEK, "office": "remote"}).status_code == 200
