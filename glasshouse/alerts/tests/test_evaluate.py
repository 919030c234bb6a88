"""Each rule kind fires from data that arrived the way it does in production (agent batches
through the ingest API, rollups by the worker), exactly once per cause; schedules and team
scope decide whether it fires at all."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from conftest import Personas
from glasshouse.activity.models import Category, DailyUsage, InternedString, UsageKind
from glasshouse.activity.rollups import reclassify, roll_up_pending
from glasshouse.activity.sinks import intern_strings
from glasshouse.alerts.evaluate import FLOOR_GRACE, advance_floor, run_pending
from glasshouse.alerts.models import Alert, Delivery, EvaluatedBatch, EvaluationState, RuleKind, Schedule
from glasshouse.alerts.tests.helpers import Sender, file_event, make_rule, session, usb
from glasshouse.devices.models import AgentPolicy, Device
from glasshouse.ingest.tests.helpers import T0, Agent, window

pytestmark = pytest.mark.django_db

AT = dt.datetime.fromtimestamp(T0, dt.UTC)  # Wednesday 09:00 in London (the personas' zone)


@pytest.fixture
def eve(personas: Personas) -> Sender:
    return Sender(Agent.enrolled(personas.person("employee")))


def test_usb_insertion_fires_once(eve: Sender) -> None:
    rule = make_rule(RuleKind.USB, severity="high")
    eve.send(events=[usb()])
    assert run_pending(AT) == 1
    assert run_pending(AT) == 0
    # The agent retrying the same batch (idempotent ingest) does not raise it again either.
    eve.agent.send({"batch_seq": eve.seq, "spans": [], "events": [usb()]})
    assert run_pending(AT) == 0
    alert = Alert.objects.get()
    assert alert.rule == rule
    assert alert.severity == "high"
    assert alert.person is not None
    assert alert.person.full_name == "Eve Employee"
    assert "SanDisk Cruzer" in alert.summary
    assert "blocked" in alert.summary
    assert Delivery.objects.filter(alert=alert, channel="email", target="soc@example.test").count() == 1
    eve.send(events=[usb(T0 + 60)])
    assert run_pending(AT) == 1


def test_usb_blocked_only_ignores_allowed_devices_and_removals(eve: Sender) -> None:
    make_rule(RuleKind.USB, usb_blocked_only=True)
    eve.send(events=[usb(verdict="allowed"), usb(T0 + 1, action="remove"), usb(T0 + 2, verdict="blocked")])
    assert run_pending(AT) == 1
    assert "blocked" in Alert.objects.get().summary


def test_file_copies_above_the_size_fire(eve: Sender) -> None:
    make_rule(RuleKind.FILE_COPY, min_bytes=1_000_000)
    eve.send(events=[file_event(999_999), file_event(5_000_000, T0 + 5)])
    assert run_pending(AT) == 1
    assert "5,000,000 bytes" in Alert.objects.get().summary
    assert run_pending(AT) == 0


def test_blocked_and_listed_sites_fire_once_per_site_and_day(eve: Sender) -> None:
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)
    make_rule(RuleKind.SITE_VISIT, domains="example.com", include_blocked=True)
    eve.send(
        spans=[
            {"kind": "browser", "start": T0, "end": T0 + 60, "domain": "news.example.com"},
            {"kind": "browser", "start": T0 + 60, "end": T0 + 120, "domain": "notexample.com"},
        ],
        events=[{"kind": "web_block", "time": T0 + 10, "domain": "facebook.com"}],
    )
    eve.send(spans=[{"kind": "browser", "start": T0 + 300, "end": T0 + 360, "domain": "news.example.com"}])
    assert run_pending(AT) == 2
    assert sorted(a.summary.split(" — ")[0] for a in Alert.objects.all()) == [
        "Blocked site facebook.com",
        "Visited news.example.com",
    ]


def test_listed_sites_only_when_blocked_are_not_included(eve: Sender) -> None:
    make_rule(RuleKind.SITE_VISIT, domains="example.com", include_blocked=False)
    eve.send(events=[{"kind": "web_block", "time": T0, "domain": "facebook.com"}])
    assert run_pending(AT) == 0


def test_time_in_a_category_from_rollups(personas: Personas, eve: Sender) -> None:
    make_rule(RuleKind.TIME_CATEGORY, minutes=60, category=Category.UNPRODUCTIVE, usage_source="apps")
    eve.send(spans=[window(T0, T0 + 3000, app="steam")])
    roll_up_pending()
    steam = intern_strings(["steam"])["steam"]
    reclassify(UsageKind.APP, steam, Category.UNPRODUCTIVE)
    later = AT + dt.timedelta(hours=2)
    assert run_pending(later) == 0  # 50 minutes
    eve.send(spans=[window(T0 + 3000, T0 + 3700, app="steam")])
    roll_up_pending()
    assert run_pending(later) == 1
    assert run_pending(later) == 0
    alert = Alert.objects.get()
    assert "61 minutes" in alert.summary
    assert alert.details["day"] == "2025-01-15"


def test_time_on_listed_sites_from_rollups(personas: Personas) -> None:
    make_rule(RuleKind.TIME_SITE, minutes=30, domains="youtube.com")
    person = personas.person("employee")
    site = InternedString.objects.create(digest="a" * 32, value="www.youtube.com")
    other = InternedString.objects.create(digest="b" * 32, value="example.org")
    now = timezone.now()
    for subject, seconds in ((site, 1900.0), (other, 9999.0)):
        DailyUsage.objects.create(person=person, kind=UsageKind.SITE, subject=subject, seconds=seconds, day=now.date())
    assert run_pending(now) == 1
    assert run_pending(now) == 0


def test_agent_stopped_without_a_later_start(personas: Personas, eve: Sender) -> None:
    make_rule(RuleKind.AGENT_SILENT, minutes=10)
    other = Sender(Agent.enrolled(personas.person("manager")))
    eve.send(spans=[session("agent-stop", T0)])
    other.send(spans=[session("agent-stop", T0)])
    other.send(spans=[session("agent-start", T0 + 120)])
    assert run_pending(AT + dt.timedelta(minutes=5)) == 0
    assert run_pending(AT + dt.timedelta(minutes=11)) == 1
    assert run_pending(AT + dt.timedelta(minutes=30)) == 0
    alert = Alert.objects.get()
    assert alert.device_id is not None
    assert str(alert.device_id) == eve.agent.device_id
    assert alert.summary.startswith("Agent stopped")


def test_agent_silent_fires_once_per_silence(eve: Sender) -> None:
    make_rule(RuleKind.AGENT_SILENT, minutes=15)
    device = Device.objects.get(pk=eve.agent.device_id)
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(last_seen_at=now - dt.timedelta(minutes=10))
    assert run_pending(now) == 0
    Device.objects.filter(pk=device.pk).update(last_seen_at=now - dt.timedelta(minutes=20))
    assert run_pending(now) == 1
    assert run_pending(now + dt.timedelta(minutes=5)) == 0
    # It called in, then went quiet again: a new silence, a new alert.
    Device.objects.filter(pk=device.pk).update(last_seen_at=now - dt.timedelta(minutes=16))
    assert run_pending(now + dt.timedelta(minutes=1)) == 1


def test_idle_stretch_across_batches_during_working_hours(eve: Sender) -> None:
    make_rule(RuleKind.IDLE, minutes=45)
    eve.send(spans=[{"kind": "idle", "start": T0, "end": T0 + 1200, "state": "idle"}])
    eve.send(spans=[{"kind": "idle", "start": T0 + 1200, "end": T0 + 3000, "state": "idle"}])
    eve.send(spans=[{"kind": "idle", "start": T0 + 3000, "end": T0 + 3600, "state": "idle"}])
    assert run_pending(AT) == 1
    assert run_pending(AT) == 0
    alert = Alert.objects.get()
    assert alert.details["idle_since"].startswith("2025-01-15T09:00:00")


def test_idle_outside_working_hours_does_not_fire(eve: Sender) -> None:
    make_rule(RuleKind.IDLE, minutes=45)
    evening = T0 + 10 * 3600  # 19:00 in London
    eve.send(spans=[{"kind": "idle", "start": evening, "end": evening + 3600, "state": "idle"}])
    short = T0 + 3600
    eve.send(spans=[{"kind": "idle", "start": short, "end": short + 600, "state": "idle"}])
    assert run_pending(AT) == 0


def test_working_hours_schedule_and_team_scope(personas: Personas, eve: Sender) -> None:
    make_rule(RuleKind.USB, name="office hours", schedule=Schedule.WORKING_HOURS)
    make_rule(RuleKind.USB, name="IT only", team=personas.it_team)
    night = T0 + 13 * 3600  # 22:00 in London
    saturday = T0 + 3 * 86400 + 3600  # Saturday 10:00
    eve.send(events=[usb(night), usb(saturday), usb(T0 + 3600)])
    assert run_pending(AT) == 1
    assert Alert.objects.get().rule_name == "office hours"


def test_disabled_rules_do_not_fire(eve: Sender) -> None:
    make_rule(RuleKind.USB, enabled=False)
    eve.send(events=[usb()])
    assert run_pending(AT) == 0


def test_the_floor_moves_over_settled_batches(eve: Sender) -> None:
    make_rule(RuleKind.USB)
    eve.send(events=[usb()])
    eve.send(events=[usb(T0 + 1)])
    assert run_pending(AT) == 2
    assert EvaluatedBatch.objects.count() == 2
    advance_floor(timezone.now() + FLOOR_GRACE + dt.timedelta(seconds=1))
    assert EvaluatedBatch.objects.count() == 0
    assert EvaluationState.objects.get().floor > 0
    assert run_pending(AT) == 0
    eve.send(events=[usb(T0 + 2)])
    assert run_pending(AT) == 1
