"""Rollups count every window second once, in the right UTC hour and the person's local day,
including batches that arrive late."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from conftest import Personas
from glasshouse.activity.models import DailyAppUsage, HourlyAppUsage, IngestBatch
from glasshouse.activity.rollups import day_pieces, hour_pieces, roll_up_pending
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# 2025-01-15 04:30 UTC is 23:30 on 14 January in New York (EST, UTC-5).
NY_LATE = dt.datetime(2025, 1, 15, 4, 30, tzinfo=UTC).timestamp()


def hourly() -> dict[tuple[dt.datetime, str], float]:
    return {(r.hour, r.app.value): r.seconds for r in HourlyAppUsage.objects.select_related("app")}


def daily() -> dict[tuple[dt.date, str], tuple[float, int]]:
    return {(r.day, r.app.value): (r.seconds, r.spans) for r in DailyAppUsage.objects.select_related("app")}


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


def test_devices_without_a_person_and_non_window_spans_are_not_rolled_up() -> None:
    agent = Agent.enrolled()
    t = dt.datetime(2025, 1, 20, 10, tzinfo=UTC).timestamp()
    agent.send({"batch_seq": 1, "spans": [window(t, t + 60), {"kind": "idle", "start": t, "end": t + 300}]})
    assert roll_up_pending() == 1
    assert not HourlyAppUsage.objects.exists()
    assert not DailyAppUsage.objects.exists()
