"""After hours, software utilisation and office vs remote: numbers from rollups seeded directly
(hours in UTC, days local), each person's zone, working hours and work days (DST, overnight
shifts, a half-hour start), the filters, the exports, the licence-reclaim privacy choice, the
shareable link and bounded query counts."""

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
from glasshouse.activity.models import Category, DailyUsage, HourlyUsage, UsageKind
from glasshouse.activity.sinks import intern_strings
from glasshouse.audit.models import AuditEntry
from glasshouse.org.models import Office, Person, Team
from glasshouse.reports.afterhours import Schedule

pytestmark = pytest.mark.django_db

MARCH = {"from": "2025-03-03", "to": "2025-03-16"}
UTC = dt.UTC


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, tzinfo=UTC)


def seed_hours(personas: Personas) -> None:
    """Eve (Sales, remote) in New York, 9-17 Mon-Fri; US clocks go forward on Sunday 9 March.
    Max (Sales, remote) on the overnight shift 22:00-06:00 UTC, Sunday to Thursday nights.
    Ida (IT, London office) starts at 08:30 London time (UTC in March)."""
    eve, max_, ida = (personas.person(n) for n in ("employee", "manager", "it_admin"))
    Person.objects.filter(pk=eve.pk).update(time_zone="America/New_York")
    Person.objects.filter(pk=max_.pk).update(
        time_zone="UTC", work_start=dt.time(22), work_end=dt.time(6), work_days="sun,mon,tue,wed,thu"
    )
    Person.objects.filter(pk=ida.pk).update(work_start=dt.time(8, 30))
    active = intern_strings(["active"])["active"]
    rows = [
        (eve, at(3, 14), 3600),  # Mon 09:00 EST: working
        (eve, at(3, 23), 1800),  # Mon 18:00: after hours
        (eve, at(8, 15), 1200),  # Sat 10:00: weekend
        (eve, at(10, 13), 3600),  # Mon 09:00 EDT (08:00 had the clocks not changed): working
        (eve, at(10, 21), 600),  # Mon 17:00 EDT: after hours
        (eve, at(2, 23), 999),  # Sun 2 March 18:00 local: before the period
        (eve, dt.datetime(2025, 3, 17, 3, tzinfo=UTC), 300),  # Sun 16 March 23:00 local: weekend, in the period
        (max_, at(7, 2), 3600),  # Fri 02:00: Thursday night's shift, working
        (max_, at(8, 2), 600),  # Sat 02:00: Friday is no shift day, so weekend
        (max_, at(9, 23), 1800),  # Sun 23:00: Sunday night's shift
        (ida, at(3, 8), 3600),  # Mon 08:00-09:00, working from 08:30: half and half
    ]
    HourlyUsage.objects.bulk_create(
        HourlyUsage(person=p, hour=h, kind=UsageKind.STATE, subject_id=active, seconds=s) for p, h, s in rows
    )


def get(client_for: ClientFor, name: str, who: str = "it_admin", **params: str | int) -> Any:
    return client_for(who).get(reverse(f"reports:{name}"), {**MARCH, **params})


def test_after_hours_in_each_persons_own_zone_and_hours(personas: Personas, client_for: ClientFor) -> None:
    seed_hours(personas)
    ah = get(client_for, "after_hours").context["ah"]
    by_team = {g.name: (g.tally.active, g.tally.after_hours, g.tally.weekend) for g in ah.groups}
    assert by_team == {
        "Company": (0, 0, 0),
        "IT": (3600, 1800, 0),
        "People": (0, 0, 0),
        "Sales": (17100, 4500, 2100),
    }
    assert (ah.total.active, ah.total.after_hours, ah.total.weekend) == (20700, 6300, 2100)
    assert [(start, t.active, t.after_hours, t.weekend) for start, t in ah.weeks] == [
        (dt.date(2025, 3, 3), 16200, 5400, 1800),
        (dt.date(2025, 3, 10), 4500, 900, 300),
    ]
    sales = get(client_for, "after_hours", team=personas.sales_team.pk).context["ah"]
    assert [g.name for g in sales.groups] == ["Sales"]
    assert sales.groups[0].tally.after_hours_share == pytest.approx(4500 / 17100)
    london = get(client_for, "after_hours", office=str(personas.office.pk)).context["ah"]
    assert london.total.active == 3600
    first_week = get(client_for, "after_hours", to="2025-03-09").context["ah"]
    assert first_week.total.active == 16200


def test_schedule_places_hours_across_dst_and_midnight() -> None:
    london = Schedule.of("Europe/London", dt.time(9), dt.time(17), "mon,tue,wed,thu,fri")
    # Sunday 26 October 2025, clocks go back: 00:00 and 01:00 UTC are both 01:00 local, Sunday.
    assert london.place(dt.datetime(2025, 10, 26, 0, tzinfo=UTC)) == (dt.date(2025, 10, 26), 0.0)
    # Monday 27 October 08:00 UTC is 08:00 GMT (09:00 BST the week before).
    assert london.place(dt.datetime(2025, 10, 27, 8, tzinfo=UTC)) == (dt.date(2025, 10, 27), 0.0)
    assert london.place(dt.datetime(2025, 10, 20, 8, tzinfo=UTC)) == (dt.date(2025, 10, 20), 1.0)
    # India is UTC+05:30: 03:00 UTC is 08:30-09:30 local, half inside a 09:00 start.
    india = Schedule.of("Asia/Kolkata", dt.time(9), dt.time(17), "mon,tue,wed,thu,fri")
    assert india.place(dt.datetime(2025, 3, 3, 3, tzinfo=UTC)) == (dt.date(2025, 3, 3), 0.5)
    # A night shift (22:00-06:00, Monday nights only): Tuesday 03:00 belongs to Monday.
    night = Schedule.of("UTC", dt.time(22), dt.time(6), "mon")
    assert night.place(dt.datetime(2025, 3, 4, 3, tzinfo=UTC)) == (dt.date(2025, 3, 3), 1.0)
    assert night.place(dt.datetime(2025, 3, 5, 3, tzinfo=UTC)) == (dt.date(2025, 3, 5), 0.0)


def seed_days(personas: Personas) -> None:
    eve, max_, ida = (personas.person(n) for n in ("employee", "manager", "it_admin"))
    ids = intern_strings(["active", "code", "solitaire", "Slack", "Photoshop", "figma.com"])
    A, S = UsageKind.APP, UsageKind.SITE

    def d(p: Person, day: dt.date, kind: int, subject: str, seconds: float, category: int = 0) -> DailyUsage:
        return DailyUsage(person=p, day=day, kind=kind, subject_id=ids[subject], seconds=seconds, category=category)

    def mar(n: int) -> dt.date:
        return dt.date(2025, 3, n)

    DailyUsage.objects.bulk_create(
        [
            d(eve, mar(3), UsageKind.STATE, "active", 7200),
            d(eve, mar(4), UsageKind.STATE, "active", 3600),
            d(max_, mar(3), UsageKind.STATE, "active", 1800),
            d(ida, mar(3), UsageKind.STATE, "active", 3600),
            d(eve, mar(3), A, "code", 3600, Category.PRODUCTIVE),
            d(eve, mar(3), A, "solitaire", 1800, Category.UNPRODUCTIVE),
            d(ida, mar(3), A, "code", 3600, Category.PRODUCTIVE),
            d(eve, mar(3), A, "Slack", 3600),
            d(eve, mar(4), A, "Slack", 1800),
            d(max_, mar(3), A, "Slack", 600),
            d(ida, mar(5), A, "Slack", 1200),
            d(eve, mar(3), S, "figma.com", 900),
            d(eve, dt.date(2025, 1, 20), A, "Photoshop", 600),
            d(eve, dt.date(2025, 4, 5), A, "Photoshop", 600),  # after the report: does not count
            d(max_, dt.date(2025, 2, 1), A, "Photoshop", 600),
            d(ida, mar(20), A, "Photoshop", 600),
        ]
    )


def test_office_vs_remote(personas: Personas, client_for: ClientFor) -> None:
    seed_hours(personas)
    seed_days(personas)
    Office.objects.create(name="Paris")
    cmp = get(client_for, "locations").context["cmp"]
    by_name = {loc.name: loc for loc in cmp.locations}
    assert list(by_name) == ["London", "Paris", "Remote"]
    remote, london, paris = by_name["Remote"], by_name["London"], by_name["Paris"]
    assert (remote.people, remote.person_days, remote.active_per_person_day) == (2, 3, 4200)
    assert remote.productive_share == pytest.approx(3600 / 11400)  # code / code + solitaire + Slack
    assert remote.after_hours_share == pytest.approx(4500 / 17100)
    assert (london.people, london.active_per_person_day, london.productive_share) == (1, 3600, 0.75)
    assert london.after_hours_share == pytest.approx(0.5)
    assert (paris.person_days, paris.active_per_person_day, paris.productive_share) == (0, None, None)
    only_remote = get(client_for, "locations", office="remote").context["cmp"]
    assert [loc.name for loc in only_remote.locations] == ["Remote"]
    it = get(client_for, "locations", team=personas.it_team.pk).context["cmp"]
    assert {loc.name: loc.people for loc in it.locations} == {"London": 1, "Paris": 0, "Remote": 0}


def test_software_utilisation_and_reclaim_names_only_for_it_admins(personas: Personas, client_for: ClientFor) -> None:
    seed_days(personas)
    month = {"from": "2025-03-01", "to": "2025-03-31"}
    util = get(client_for, "software", **month).context["util"]
    apps = {u.name: (u.users, u.seconds, u.median) for u in util.apps}
    assert apps["Slack"] == (3, 7200, 1200)
    assert apps["Photoshop"] == (1, 600, 600)
    assert [(u.name, u.users) for u in util.sites] == [("figma.com", 1)]
    assert util.reclaim is None
    # Photoshop: Eve last used it on 20 January (her April use is after the report), Max on
    # 1 February; Ida used it on 20 March, inside the 30 days.
    page = get(client_for, "software", **month, licence="Photoshop")
    reclaim = page.context["util"].reclaim
    assert reclaim.since == dt.date(2025, 3, 2)
    assert [(p.name, p.team, p.last_used) for p in reclaim.people] == [
        ("Eve Employee", "Sales", dt.date(2025, 1, 20)),
        ("Max Manager", "Sales", dt.date(2025, 2, 1)),
    ]
    assert AuditEntry.objects.filter(action="reports.licence_reclaim.view").count() == 1
    assert "licence=Photoshop" in page.context["share_url"]
    # Security analysts get the count, never the names (the query does not load them).
    seen = get(client_for, "software", who="security", **month, licence="Photoshop")
    assert (seen.context["util"].reclaim.count, seen.context["util"].reclaim.people) == (2, None)
    assert b"Eve Employee" not in seen.content
    assert b"Max Manager" not in seen.content
    csv_rows = list(
        csv.DictReader(
            io.StringIO(
                client_for("security")
                .get(reverse("reports:software_export", kwargs={"fmt": "csv"}), {**month, "licence": "Photoshop"})
                .content.decode()
            )
        )
    )
    assert {"section": "reclaim", "name": "Photoshop", "people": "2"}.items() <= next(
        r for r in csv_rows if r["section"] == "reclaim"
    ).items()
    assert "Eve Employee" not in str(csv_rows)
    it_only = get(client_for, "software", **month, licence="Photoshop", team=personas.it_team.pk)
    assert it_only.context["util"].reclaim.people == []
    site = get(client_for, "software", **month, licence="figma.com", licence_kind="site").context["util"].reclaim
    assert site.people == []


def test_exports_carry_the_page_numbers(personas: Personas, client_for: ClientFor) -> None:
    seed_hours(personas)
    seed_days(personas)
    client = client_for("security")

    def export(name: str, fmt: str, **params: str) -> Any:
        response = client.get(reverse(f"reports:{name}_export", kwargs={"fmt": fmt}), {**MARCH, **params})
        assert response.status_code == 200
        assert "attachment" in response["Content-Disposition"]
        return response

    rows = list(csv.DictReader(io.StringIO(export("after_hours", "csv").content.decode())))
    sales = next(r for r in rows if r["section"] == "teams" and r["team"] == "Sales")
    assert (sales["active hours"], sales["after hours"], sales["weekend hours"]) == ("4.75", "1.25", "0.58")
    assert sales["after-hours percent"] == "26.3"
    book = load_workbook(io.BytesIO(export("after_hours", "xlsx").content))
    assert book.sheetnames == ["Total", "Teams", "Weeks"]
    pdf = export("after_hours", "pdf").content
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "After-hours and weekend work" in text
    assert "26.3" in text

    rows = list(csv.DictReader(io.StringIO(export("locations", "csv").content.decode())))
    remote = next(r for r in rows if r["location"] == "Remote")
    assert (remote["people"], remote["active hours per person per day"], remote["productive percent"]) == (
        "2",
        "1.17",
        "31.6",
    )
    book = load_workbook(io.BytesIO(export("locations", "xlsx").content))
    assert [row[1] for row in book["Locations"].iter_rows(min_row=3, values_only=True)] == ["London", "Remote"]
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(export("locations", "pdf").content)).pages)
    assert "Office vs remote" in text
    assert "31.6" in text

    rows = list(csv.DictReader(io.StringIO(export("software", "csv").content.decode())))
    slack = next(r for r in rows if r["section"] == "applications" and r["name"] == "Slack")
    assert (slack["users"], slack["total hours"], slack["median hours per user"]) == ("3", "2.0", "0.33")
    assert load_workbook(io.BytesIO(export("software", "xlsx").content)).sheetnames == ["Applications", "Sites"]
    assert export("software", "pdf").content.startswith(b"%PDF")
    assert AuditEntry.objects.filter(action__endswith=".export").count() == 9


@pytest.mark.parametrize("name", ["after_hours", "software", "locations"])
def test_bad_filters_refused_and_links_checked_on_open(personas: Personas, client_for: ClientFor, name: str) -> None:
    bad = {"from": "2025-02-01", "to": "2025-01-01"}
    response = client_for("security").get(reverse(f"reports:{name}"), bad)
    assert response.status_code == 400
    assert "to" in response.context["form"].errors
    export = client_for("security").get(reverse(f"reports:{name}_export", kwargs={"fmt": "csv"}), bad)
    assert (export.status_code, export.content[:17]) == (400, b"Nothing exported:")
    link = get(client_for, name, team=personas.sales_team.pk).context["share_url"]
    path = link.split("testserver", 1)[1]
    assert f"team={personas.sales_team.pk}" in path
    assert client_for("security").get(path).status_code == 200
    for who in ("hr", "manager", "employee", "auditor", "outsider"):
        assert client_for(who).get(path).status_code == 403


@pytest.mark.parametrize("name", ["after_hours", "software", "locations"])
def test_empty_states(personas: Personas, client_for: ClientFor, name: str) -> None:
    page = get(client_for, name)
    assert page.status_code == 200
    assert b'class="empty"' in page.content


@pytest.mark.parametrize(
    ("name", "extra", "most"),
    [
        ("after_hours", {}, 12),
        ("software", {}, 12),
        # The named reclaim list writes an audit row (its hash chain costs a few queries).
        ("software", {"licence": "Photoshop"}, 20),
        ("locations", {}, 12),
    ],
)
def test_query_count_does_not_grow_with_teams_or_data(
    personas: Personas,
    client_for: ClientFor,
    django_assert_max_num_queries: Any,
    name: str,
    extra: dict[str, str],
    most: int,
) -> None:
    seed_hours(personas)
    seed_days(personas)
    client = client_for("it_admin")
    client.get(reverse(f"reports:{name}"), MARCH)  # warm the session
    with django_assert_max_num_queries(most):
        assert client.get(reverse(f"reports:{name}"), {**MARCH, **extra}).status_code == 200
    for n in range(20):
        Team.objects.create(name=f"Team {n}", parent=personas.company)
        Office.objects.create(name=f"Office {n}")
    with django_assert_max_num_queries(most):
        params = {**MARCH, **extra, "team": str(personas.company.pk)}
        assert client.get(reverse(f"reports:{name}"), params).status_code == 200
