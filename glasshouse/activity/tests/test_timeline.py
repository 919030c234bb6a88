"""One person's day timeline: what the agent uploaded, drawn at the person's own local times
(also on the day clocks go forward), behind the purpose gate, audited, refused to HR and
managers."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from conftest import ClientFor, Personas
from glasshouse.activity.timeline import person_day
from glasshouse.audit.models import AuditEntry
from glasshouse.devices.models import AgentPolicy
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = pytest.mark.django_db

# Europe/London moves from GMT to BST at 01:00 UTC on Sunday 30 March 2025: that day has 23 hours.
DST_DAY = dt.date(2025, 3, 30)


def utc(day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(2025, 3, day, hour, minute, tzinfo=dt.UTC).timestamp()


def session(at: float, event: str) -> dict[str, Any]:
    return {"kind": "session", "start": at, "end": at, "event": event, "user": "eve"}


@pytest.fixture
def seeded_day(personas: Personas) -> None:
    """Eve's Sunday 30 March 2025 (London) and its neighbours' edges."""
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)
    agent = Agent.enrolled(personas.person("employee"))
    spans = [
        # 23:30-23:50 GMT on Saturday: the day before, not drawn.
        window(utc(29, 23, 30), utc(29, 23, 50), app="nightowl"),
        # 08:00-09:30 UTC = 09:00-10:30 BST.
        window(utc(30, 8), utc(30, 9, 30), app="code"),
        {"kind": "browser", "start": utc(30, 9, 30), "end": utc(30, 9, 45), "domain": "docs.python.org"},
        {"kind": "idle", "start": utc(30, 9, 45), "end": utc(30, 10), "state": "idle"},
        {"kind": "idle", "start": utc(30, 8), "end": utc(30, 9, 45), "state": "active"},
        session(utc(30, 10), "lock"),
        session(utc(30, 10, 20), "unlock"),
        # 23:30 UTC = 00:30 BST on Monday: the next day, not drawn.
        window(utc(30, 23, 30), utc(30, 23, 45), app="tomorrow"),
    ]
    usb = {
        "kind": "usb",
        "time": utc(30, 10, 5),
        "action": "insert",
        "verdict": "blocked",
        "vid": "0781",
        "pid": "5581",
        "vendor": "SanDisk",
        "product": "Cruzer",
    }
    response = agent.send({"batch_seq": 1, "spans": spans, "events": [usb]})
    assert response.status_code == 200, response.content


def post(client: Client, url: str, data: dict[str, str]) -> Any:
    client.get("/accounts/security/")  # sets the CSRF cookie
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def bars(page: str, lane: str) -> list[tuple[str, str]]:
    row = page.split(f'data-lane="{lane}"', 1)[1].split("data-lane=", 1)[0]
    return re.findall(r'data-start="([\d:]+)" data-end="([\d:]+)"', row)


@pytest.mark.usefixtures("seeded_day")
def test_security_states_a_purpose_and_sees_the_day_at_local_times(personas: Personas, client_for: ClientFor) -> None:
    employee = personas.person("employee")
    url = f"/monitoring/people/{employee.pk}/timeline/?day=2025-03-30"
    client = client_for("security")
    form = client.get(url).content.decode()
    assert 'data-testid="purpose-form"' in form
    assert "code" not in form
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()

    opened = post(client, url, {"category": "security_incident", "detail": "Ticket SEC-2001 USB stick"})
    assert opened.status_code == 302
    assert opened["Location"] == url  # back to the same day

    page = client.get(url).content.decode()
    assert "Ticket SEC-2001" in page
    assert "Europe/London (23 hours)" in page
    assert bars(page, "apps") == [("09:00:00", "10:30:00")]
    assert "code: 09:00:00-10:30:00 (1 h 30 min)" in page
    assert "nightowl" not in page
    assert "tomorrow" not in page
    assert bars(page, "sites") == [("10:30:00", "10:45:00")]
    assert "docs.python.org: 10:30:00-10:45:00 (15 min 00 s)" in page
    assert bars(page, "idle") == [("10:45:00", "11:00:00")]  # active periods are not drawn as idle
    assert bars(page, "locked") == [("11:00:00", "11:20:00")]
    assert "11:05:00 USB insert blocked SanDisk Cruzer (0781:5581)" in page
    looks = AuditEntry.objects.filter(action="monitoring.person.view", target_id=str(employee.pk))
    assert looks.count() == 2  # the POST that opened it and the page after it
    assert {e.after["view"] for e in looks} == {"activity.timeline"}
    assert all("Ticket SEC-2001" in e.purpose for e in looks)


@pytest.mark.usefixtures("seeded_day")
def test_the_day_is_23_hours_long_when_clocks_go_forward(personas: Personas) -> None:
    timeline = person_day(personas.person("employee"), DST_DAY)
    assert timeline.hours == 23
    labels = [t.label for t in timeline.ticks]
    assert labels[:3] == ["00", "02", "03"]
    assert len(labels) == 23
    code = timeline.bars["apps"][0]
    # 09:00 BST is 8 hours into a 23-hour day.
    assert code.left == pytest.approx(8 / 23 * 100)
    assert code.width == pytest.approx(1.5 / 23 * 100)


@pytest.mark.usefixtures("seeded_day")
def test_day_picker_and_a_day_without_data(personas: Personas, client_for: ClientFor) -> None:
    client = client_for("employee")  # the person sees their own day without a purpose
    url = f"/monitoring/people/{personas.person('employee').pk}/timeline/"
    page = client.get(url, {"day": "2025-03-30"}).content.decode()
    assert 'href="?day=2025-03-29"' in page
    assert 'href="?day=2025-03-31"' in page
    assert "kept about you" in page
    empty = client.get(url, {"day": "2025-03-28"}).content.decode()
    assert 'data-testid="timeline-empty"' in empty
    assert "Nothing was recorded for Eve Employee on Friday 28 March 2025" in empty
    bad = client.get(url, {"day": "March"})
    assert bad.status_code == 400
    assert "day" in bad.content.decode()
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()  # own data is not a look


def test_there_is_no_next_day_after_today(personas: Personas, client_for: ClientFor) -> None:
    page = client_for("employee").get(f"/monitoring/people/{personas.person('employee').pk}/timeline/")
    assert page.status_code == 200
    assert 'data-testid="previous-day"' in page.content.decode()
    assert 'data-testid="next-day"' not in page.content.decode()


@pytest.mark.parametrize("persona", ["hr", "manager", "auditor", "outsider"])
@pytest.mark.usefixtures("seeded_day")
def test_hr_and_managers_never_reach_the_timeline(personas: Personas, client_for: ClientFor, persona: str) -> None:
    url = f"/monitoring/people/{personas.person('employee').pk}/timeline/?day=2025-03-30"
    client = client_for(persona)
    assert client.get(url).status_code == 403
    assert (
        post(client, url, {"category": "security_incident", "detail": "I have a very good reason"}).status_code == 403
    )
    assert client_for(persona).get("/monitoring/people/999999/timeline/").status_code == 403  # no probing
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()


def test_the_activity_page_links_to_the_timeline(personas: Personas, client_for: ClientFor) -> None:
    employee = personas.person("employee")
    page = client_for("employee").get(f"/monitoring/people/{employee.pk}/").content.decode()
    assert f'href="/monitoring/people/{employee.pk}/timeline/"' in page


def test_a_lock_still_open_at_the_end_of_the_day_runs_to_midnight(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    assert agent.send({"batch_seq": 1, "spans": [session(utc(30, 21), "lock")]}).status_code == 200
    locked = person_day(personas.person("employee"), DST_DAY).bars["locked"]
    assert [(b.start_label, b.end_label) for b in locked] == [("22:00:00", "24:00:00")]
