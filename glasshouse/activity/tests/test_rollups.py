"""Rollups count every second once, in the right UTC hour and the person's local day, per
application, site and idle/active state with its category, and per team and day; batches that
arrive late are counted when they arrive."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from conftest import Personas
from glasshouse.activity import queries
from glasshouse.activity.models import (
    Category,
    DailyUsage,
    HourlyUsage,
    IngestBatch,
    InternedString,
    TeamDailyUsage,
    UsageKind,
)
from glasshouse.activity.rollups import day_pieces, hour_pieces, reclassify, roll_up_pending
from glasshouse.devices.models import AgentPolicy
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# 2025-01-15 04:30 UTC is 23:30 on 14 January in New York (EST, UTC-5).
NY_LATE = dt.datetime(2025, 1, 15, 4, 30, tzinfo=UTC).timestamp()


def hourly() -> dict[tuple[dt.datetime, str], float]:
    rows = HourlyUsage.objects.filter(kind=UsageKind.APP).select_related("subject")
    return {(r.hour, r.subject.value): r.seconds for r in rows}


def daily() -> dict[tuple[dt.date, str], tuple[float, int]]:
    rows = DailyUsage.objects.filter(kind=UsageKind.APP).select_related("subject")
    return {(r.day, r.subject.value): (r.seconds, r.spans) for r in rows}


def test_pieces_split_at_hour_and_local_midnight() -> None:
    import zoneinfo

    assert list(hour_pieces(3500.0, 7300.0)) == [(0.0, 100.0), (3600.0, 3600.0), (7200.0, 100.0)]
    pieces = list(day_pieces(NY_LATE, NY_LATE + 3600, zoneinfo.ZoneInfo("America/New_York")))
    assert pieces == [(dt.date(2025, 1, 14), 1800.0), (dt.date(2025, 1, 15), 1800.0)]


def test_span_across_local_midnight_lands_on_both_local_days(personas: Personas) -> None:
    person = personas.person("employee")
    person.time_zone = "America/New_York"
    person.save()
    agent = Agent.enrolled(person)
    assert agent.send({"batch_seq": 1, "spans": [window(NY_LATE, NY_LATE + 3600, app="code")]}).status_code == 200
    call_command("worker", "--once")
    assert daily() == {(dt.date(2025, 1, 14), "code"): (1800.0, 1), (dt.date(2025, 1, 15), "code"): (1800.0, 0)}
    assert hourly() == {
        (dt.datetime(2025, 1, 15, 4, tzinfo=UTC), "code"): 1800.0,
        (dt.datetime(2025, 1, 15, 5, tzinfo=UTC), "code"): 1800.0,
    }
    assert not IngestBatch.objects.filter(rolled_up=False).exists()


def test_late_batch_is_added_and_nothing_is_counted_twice(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))  # Europe/London: UTC in January
    day = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    agent.send({"batch_seq": 1, "spans": [window(day, day + 600), window(day + 600, day + 900, app="xterm")]})
    assert roll_up_pending() == 1
    # The next batch holds spans from the same hour, uploaded after the laptop was offline.
    agent.send({"batch_seq": 2, "spans": [window(day + 1200, day + 1500)]})
    # A retry of batch 1 stores nothing new, so the rollup must not grow either.
    agent.send({"batch_seq": 1, "spans": [window(day, day + 600)]})
    assert roll_up_pending() == 1
    assert roll_up_pending() == 0
    assert daily() == {(dt.date(2025, 1, 20), "firefox"): (900.0, 2), (dt.date(2025, 1, 20), "xterm"): (300.0, 1)}
    assert hourly()[(dt.datetime(2025, 1, 20, 10, tzinfo=UTC), "firefox")] == 900.0


def test_devices_without_a_person_are_not_rolled_up() -> None:
    agent = Agent.enrolled()
    t = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    agent.send({"batch_seq": 1, "spans": [window(t, t + 60), {"kind": "idle", "start": t, "end": t + 300}]})
    assert roll_up_pending() == 1
    assert not HourlyUsage.objects.exists()
    assert not DailyUsage.objects.exists()


def by_kind(kind: UsageKind) -> dict[str, float]:
    rows = DailyUsage.objects.filter(kind=kind).select_related("subject")
    return {r.subject.value: r.seconds for r in rows}


def test_sites_and_idle_time_are_rolled_up_apart_from_applications(personas: Personas) -> None:
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)
    agent = Agent.enrolled(personas.person("employee"))
    t = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    spans = [
        window(t, t + 600, app="chromium"),
        {"kind": "browser", "start": t, "end": t + 400, "domain": "docs.python.org"},
        {"kind": "browser", "start": t + 400, "end": t + 600, "domain": "news.example"},
        {"kind": "idle", "start": t, "end": t + 500, "state": "active"},
        {"kind": "idle", "start": t + 500, "end": t + 600, "state": "idle"},
        {"kind": "session", "start": t, "end": t, "event": "login", "user": "eve"},
    ]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    roll_up_pending()
    # The browser's window and its tabs cover the same ten minutes: each view adds up to them.
    assert by_kind(UsageKind.APP) == {"chromium": 600.0}
    assert by_kind(UsageKind.SITE) == {"docs.python.org": 400.0, "news.example": 200.0}
    assert by_kind(UsageKind.STATE) == {"active": 500.0, "idle": 100.0}


def test_team_day_rows_sum_members_and_count_people(personas: Personas) -> None:
    t = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    manager, report = personas.person("manager"), personas.person("employee")
    team = personas.sales_team.pk
    assert manager.team_id == report.team_id == team
    for n, person in enumerate((manager, report)):
        Agent.enrolled(person).send({"batch_seq": 1, "spans": [window(t, t + 300 * (n + 1), app="code")]})
    roll_up_pending()
    row = TeamDailyUsage.objects.get(team_id=team, kind=UsageKind.APP)
    assert (row.day, row.seconds, row.people) == (dt.date(2025, 1, 20), 900.0, 2)
    # A late batch for one of them is added; the count of people stays right (not re-added).
    Agent.enrolled(report).send({"batch_seq": 1, "spans": [window(t + 3600, t + 3700, app="code")]})
    roll_up_pending()
    row = TeamDailyUsage.objects.get(team_id=team, kind=UsageKind.APP)
    assert (row.seconds, row.people) == (1000.0, 2)
    # Team reports read these rows: the same totals as the people's own rows.
    day = dt.date(2025, 1, 20)
    assert queries.app_totals(day, day, [team]) == [queries.AppTotal("code", 1000.0)]
    assert queries.app_totals(day, day, [personas.it_team.pk]) == []
    assert queries.app_totals(day + dt.timedelta(days=1), day + dt.timedelta(days=7)) == []


def test_classifying_an_app_recategorises_stored_rollups_and_new_ones(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    t = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    agent.send({"batch_seq": 1, "spans": [window(t, t + 60, app="solitaire")]})
    roll_up_pending()
    assert set(DailyUsage.objects.values_list("category", flat=True)) == {Category.UNCATEGORISED}
    solitaire = InternedString.objects.get(value="solitaire")
    reclassify(UsageKind.APP, solitaire.pk, Category.UNPRODUCTIVE)
    for model in (HourlyUsage, DailyUsage, TeamDailyUsage):
        assert set(model.objects.values_list("category", flat=True)) == {Category.UNPRODUCTIVE}
    agent.send({"batch_seq": 2, "spans": [window(t + 86400, t + 86460, app="solitaire")]})
    roll_up_pending()
    assert DailyUsage.objects.filter(category=Category.UNPRODUCTIVE).count() == 2
