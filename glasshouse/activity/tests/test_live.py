"""The live view: per-team counts of people online, active, idle, offline and silent, computed
from device check-ins and the latest idle/active spans; no names; refreshed by htmx."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from django.utils import timezone

from conftest import ClientFor, Personas, make_person
from glasshouse.activity.live import TeamCounts, live_status
from glasshouse.devices.models import Device
from glasshouse.ingest.tests.helpers import T0, Agent

pytestmark = pytest.mark.django_db

NOW = dt.datetime.fromtimestamp(T0, dt.UTC)  # the fixed clock


def idle(start: float, end: float, state: str) -> dict[str, Any]:
    return {"kind": "idle", "start": start, "end": end, "state": state}


def agent_for(person: Any, seen: dt.datetime | None, spans: list[dict[str, Any]] = (), seq: int = 1) -> Agent:  # type: ignore[assignment]
    agent = Agent.enrolled(person)
    if spans:
        assert agent.send({"batch_seq": seq, "spans": list(spans)}).status_code == 200
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=seen)
    return agent


def counts(team: TeamCounts) -> dict[str, int]:
    return {k: getattr(team, k) for k in ("online", "active", "idle", "unknown", "offline", "silent", "no_agent")}


@pytest.fixture
def organisation(personas: Personas) -> None:
    """Sales: Eve online and idle (a second laptop silent), Max online and active. IT: Ida's agent
    called in 5 minutes ago (offline), Sam's 20 minutes ago (silent). People: Hana has no agent.
    Company: the auditor is online with no recent idle/active period. A spare laptop is silent."""
    t = T0
    agent_for(
        personas.person("employee"),
        NOW - dt.timedelta(seconds=30),
        [idle(t - 900, t - 300, "active"), idle(t - 300, t - 20, "idle")],
    )
    agent_for(personas.person("employee"), NOW - dt.timedelta(hours=3))
    agent_for(
        personas.person("manager"),
        NOW - dt.timedelta(seconds=90),
        [idle(t - 600, t - 200, "idle"), idle(t - 200, t - 40, "active")],
    )
    agent_for(personas.person("it_admin"), NOW - dt.timedelta(minutes=5), [idle(t - 600, t - 300, "active")])
    agent_for(personas.person("security"), NOW - dt.timedelta(minutes=20))
    agent_for(personas.person("auditor"), NOW - dt.timedelta(seconds=10), [idle(t - 3600, t - 1200, "active")])
    agent_for(None, None)


@pytest.mark.usefixtures("organisation")
def test_states_per_team_with_a_fixed_clock(settings: Any) -> None:
    settings.LIVE_MIN_GROUP = 1
    status = live_status(now=NOW)
    teams = {t.team: counts(t) for t in status.teams}
    zero = dict.fromkeys(("online", "active", "idle", "unknown", "offline", "silent", "no_agent"), 0)
    assert teams == {
        "Sales": {**zero, "online": 2, "active": 1, "idle": 1},
        "IT": {**zero, "offline": 1, "silent": 1},
        "People": {**zero, "no_agent": 1},
        "Company": {**zero, "online": 1, "unknown": 1},
    }
    assert counts(status.total) == {
        **zero,
        "online": 3,
        "active": 1,
        "idle": 1,
        "unknown": 1,
        "offline": 1,
        "silent": 1,
        "no_agent": 1,
    }
    # Flagged: Sam's laptop, Eve's second laptop and the spare that never called in.
    assert sorted((a.team, a.last_seen_at is None) for a in status.silent) == [
        ("(unassigned device)", True),
        ("IT", False),
        ("Sales", False),
    ]


@pytest.mark.usefixtures("organisation")
def test_a_later_upload_moves_a_person_from_idle_to_active(personas: Personas, settings: Any) -> None:
    settings.LIVE_MIN_GROUP = 1
    later = NOW + dt.timedelta(seconds=30)
    agent_for(personas.person("employee"), later, [idle(T0 - 20, T0 + 25, "active")])
    sales = next(t for t in live_status(now=later).teams if t.team == "Sales")
    assert (sales.active, sales.idle) == (2, 0)
    # Half an hour later nobody has called in: everyone is silent.
    quiet = live_status(now=NOW + dt.timedelta(minutes=30)).total
    assert (quiet.online, quiet.offline) == (0, 0)


@pytest.mark.usefixtures("organisation")
def test_small_groups_show_no_active_idle_split(client_for: ClientFor) -> None:
    """With the default minimum group of 3, Sales' two online people are "online", not 1 + 1."""
    status = live_status(now=NOW)
    sales = next(t for t in status.teams if t.team == "Sales")
    assert not sales.split_shown
    page = client_for("security").get("/monitoring/live/").content.decode()
    assert 'data-count="split-hidden"' in page
    assert "fewer than 3 online" in page


@pytest.mark.usefixtures("organisation")
def test_the_page_shows_counts_and_no_names(personas: Personas, client_for: ClientFor, settings: Any) -> None:
    settings.LIVE_MIN_GROUP = 1
    page = client_for("it_admin").get("/monitoring/live/").content.decode()
    assert 'hx-get="/monitoring/live/status/"' in page
    assert 'hx-trigger="every 10s"' in page
    main = page.split('<main id="main"', 1)[1]
    for name in ("Eve Employee", "Max Manager", "Sam Secure", "Hana Partner", "employee@example.test"):
        assert name not in main
    assert "Silent agents (7)" in main  # by the real clock every check-in of January 2025 is long past


def test_the_status_partial_follows_the_agent(personas: Personas, client_for: ClientFor, settings: Any) -> None:
    settings.LIVE_MIN_GROUP = 1
    agent = Agent.enrolled(personas.person("employee"))
    now = time.time()
    assert agent.send({"batch_seq": 1, "spans": [idle(now - 60, now - 5, "active")]}).status_code == 200
    client = client_for("security")
    first = client.get("/monitoring/live/status/", headers={"HX-Request": "true"}).content.decode()
    assert first.startswith('<div id="live-status"')  # the fragment alone, for htmx to swap
    sales = first.split('data-team="Sales"', 1)[1].split("</tr>", 1)[0]
    assert 'data-count="active">1<' in sales
    assert 'data-count="idle">0<' in sales
    assert agent.send({"batch_seq": 2, "spans": [idle(now - 5, now - 1, "idle")]}).status_code == 200
    second = client.get("/monitoring/live/status/").content.decode()
    sales = second.split('data-team="Sales"', 1)[1].split("</tr>", 1)[0]
    assert 'data-count="active">0<' in sales
    assert 'data-count="idle">1<' in sales


def test_query_count_does_not_grow_with_the_organisation(
    personas: Personas, client_for: ClientFor, django_assert_max_num_queries: Any
) -> None:
    client = client_for("security")
    client.get("/monitoring/live/status/")  # warm the session
    seen = timezone.now()
    for _ in range(3):
        agent_for(personas.person("employee"), seen)
    with django_assert_max_num_queries(8):
        small = client.get("/monitoring/live/status/")
    assert small.status_code == 200
    for n in range(30):
        person = make_person(f"p{n}@example.test", f"Person {n}", f"X{n:03d}", personas.sales_team, None)
        agent_for(person, seen if n % 2 else None, [idle(time.time() - 60, time.time() - 5, "idle")])
    with django_assert_max_num_queries(8):
        big = client.get("/monitoring/live/status/")
    assert 'data-count="online">' in big.content.decode()
    sales = next(t for t in live_status().teams if t.team == "Sales")
    assert (sales.online, sales.idle, sales.silent) == (16, 15, 15)
