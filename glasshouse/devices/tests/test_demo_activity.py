"""The demo activity replayer: spans reach the server only through the agent API, in each
person's own zone and hours, obey the policy, are never stored twice, and roll up."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.test import override_settings

from conftest import Personas
from glasshouse.activity.models import Category, DailyUsage, HourlyUsage, IngestBatch, Span, SpanKind, UsageKind
from glasshouse.audit.models import AuditEntry
from glasshouse.devices.actions import do_update_policy, policy_snapshot
from glasshouse.devices.demo_activity import (
    DEFAULT_SEED,
    Replayer,
    apply_policy,
    batches_of,
    ensure_demo_classification,
    ensure_demo_controls,
    pending_spans,
    person_day,
    plan_habits,
)
from glasshouse.devices.models import Device, EnrollmentToken
from glasshouse.devices.policy import default_policy, resolve_for_person
from glasshouse.ingest.tests.helpers import Agent, window
from glasshouse.org.models import Person, Team

pytestmark = pytest.mark.django_db

# A Wednesday evening in UTC: two days back covers Monday evening to Wednesday evening.
END = "2025-01-15T18:00:00+00:00"
END_TS = dt.datetime.fromisoformat(END).timestamp()


def replay(credentials: Path, *extra: str, end: str = END) -> str:
    out = StringIO()
    # The test runner turns DEBUG off; the command runs only with it on.
    with override_settings(DEBUG=True):
        call_command(
            "seed_demo_activity", "--days", "2", "--end", end, "--credentials", str(credentials), *extra, stdout=out
        )
    return out.getvalue()


@pytest.fixture
def org(personas: Personas) -> list[Person]:
    """The personas, spread over zones (so local time is not UTC) with titles allowed for IT."""
    zones = {"E004": "America/Los_Angeles", "E005": "Asia/Singapore", "E006": "Australia/Sydney"}
    for number, zone in zones.items():
        Person.objects.filter(employee_number=number).update(time_zone=zone)
    do_update_policy(None, personas.it_team, {**policy_snapshot(default_policy()), "collect_titles": True})
    return list(Person.objects.select_related("team").order_by("employee_number"))


@pytest.fixture
def replayed(org: list[Person], tmp_path: Path) -> Path:
    credentials = tmp_path / "agents.json"
    replay(credentials, "--no-policies")
    return credentials


def local(moment: dt.datetime, person: Person) -> dt.datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(person.time_zone))


def test_every_person_with_a_device_enrolled_and_uploaded_through_the_api(org: list[Person], replayed: Path) -> None:
    for person in org:
        habits = plan_habits(person, seed=DEFAULT_SEED)
        devices = Device.objects.filter(person=person)
        if not habits.has_device:
            assert not devices.exists()
            continue
        device = devices.get()
        assert (device.hostname, device.os, device.username) == (habits.hostname, habits.os, habits.username)
        # The enrolment went through the API view (its audit row names the agent) with a token
        # made for this person, and the spans through the batch endpoint (an IngestBatch each).
        assert AuditEntry.objects.filter(action="devices.device.enroll", actor_label=f"agent on {device.hostname}")
        assert device.token is not None
        assert device.token.person == person
        assert device.token.uses == 1
        batches = IngestBatch.objects.filter(device=device)
        assert batches.exists()
        assert device.last_batch_seq == batches.count()
        spans = Span.objects.filter(device=device, person=person)
        if not habits.silent_days:
            assert spans.filter(kind=SpanKind.WINDOW).count() > 10
            assert spans.filter(kind=SpanKind.IDLE).exists()
            assert spans.filter(kind=SpanKind.SESSION).exists()
        assert spans.count() == batches.aggregate(n=Sum("span_count"))["n"]
        assert all(s.end.timestamp() <= END_TS for s in spans)


def test_spans_keep_to_each_persons_local_working_hours(org: list[Person], replayed: Path) -> None:
    checked = 0
    for person in org:
        habits = plan_habits(person, seed=DEFAULT_SEED)
        if habits.after_hours or habits.weekend or not habits.has_device:
            continue
        for span in Span.objects.filter(person=person):
            start, end = local(span.start, person), local(span.end, person)
            assert start.strftime("%a").lower() in person.work_days_list
            # 09:00-17:00 with a start up to 20 minutes early and an end up to 45 minutes late.
            assert start.time() >= dt.time(8, 30), (person, span.kind, start)
            assert end.time() <= dt.time(17, 50), (person, span.kind, end)
            assert start.date() == end.date()  # nobody's day runs through 03:00
            checked += 1
    assert checked > 100


def test_titles_only_where_the_policy_allows_them(org: list[Person], replayed: Path) -> None:
    it_people = {p.pk for p in org if p.team is not None and p.team.name == "IT"}
    windows = Span.objects.filter(kind=SpanKind.WINDOW)
    for person in org:
        titled = windows.filter(person=person, title__isnull=False).count()
        allowed = resolve_for_person(person).titles and plan_habits(person, seed=DEFAULT_SEED).os != "macos"
        assert allowed == (person.pk in it_people)
        if allowed:
            assert titled == windows.filter(person=person).count() > 0
        else:
            assert titled == 0


def test_running_again_adds_nothing(org: list[Person], replayed: Path) -> None:
    def counts() -> tuple[int, int, int, int, int]:
        return (
            Span.objects.count(),
            IngestBatch.objects.count(),
            Device.objects.count(),
            EnrollmentToken.objects.count(),
            AuditEntry.objects.count(),
        )

    before = counts()
    out = replay(replayed, "--no-policies")
    assert counts() == before
    assert "0 spans in 0 batches" in out
    assert "0 devices enrolled this run" in out


def test_a_later_run_sends_only_the_new_spans(org: list[Person], replayed: Path) -> None:
    before = Span.objects.count()
    later = (dt.datetime.fromisoformat(END) + dt.timedelta(days=1)).isoformat()
    replay(replayed, "--no-policies", end=later)
    assert Span.objects.count() > before
    assert Device.objects.count() == len(org)  # no device enrolled twice
    duplicates = Counter(Span.objects.values_list("device_id", "kind", "start", "state"))
    assert max(duplicates.values()) == 1


def test_worker_rolls_the_replay_up(org: list[Person], replayed: Path) -> None:
    call_command("worker", "--once", stdout=StringIO())
    assert not IngestBatch.objects.filter(rolled_up=False).exists()
    window = Span.objects.filter(kind=SpanKind.WINDOW, person__isnull=False)
    seconds = sum((end - start).total_seconds() for start, end in window.values_list("start", "end"))
    apps = UsageKind.APP
    assert HourlyUsage.objects.filter(kind=apps).aggregate(s=Sum("seconds"))["s"] == pytest.approx(seconds, rel=1e-6)
    assert DailyUsage.objects.filter(kind=apps).aggregate(s=Sum("seconds"))["s"] == pytest.approx(seconds, rel=1e-6)
    assert DailyUsage.objects.values("person").distinct().count() >= len(org) - 1


def test_refuses_to_run_without_debug(org: list[Person], tmp_path: Path) -> None:
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="only with DEBUG on"):
        call_command("seed_demo_activity", "--days", "2", "--credentials", str(tmp_path / "a.json"), stdout=StringIO())
    assert not Device.objects.exists()


def test_a_silent_agent_shows_as_silent_with_its_last_upload(org: list[Person], tmp_path: Path) -> None:
    person = org[0]
    habits = dataclasses.replace(plan_habits(person, seed=DEFAULT_SEED), has_device=True, silent_days=1)
    replayer = Replayer(days=3, end=dt.datetime.fromisoformat(END), credentials=tmp_path / "agents.json")
    replayer.replay_person(person, habits)
    device = Device.objects.get(person=person)
    last = Span.objects.filter(device=device).order_by("-end").values_list("end", flat=True)[0]
    assert last.timestamp() <= END_TS - 86400
    assert device.status == "silent"
    assert device.last_seen_at == last + dt.timedelta(seconds=20)


def test_after_hours_habits_give_some_evenings(org: list[Person]) -> None:
    person = org[1]
    habits = dataclasses.replace(plan_habits(person, seed=DEFAULT_SEED), after_hours=True)
    monday = dt.date(2025, 1, 6)
    evenings = 0
    for offset in range(10):
        for span in person_day(person, habits, monday + dt.timedelta(days=offset), seed=1, idle_threshold=300):
            start = dt.datetime.fromtimestamp(span["start"], zoneinfo.ZoneInfo(person.time_zone))
            evenings += start.hour >= 20
    assert evenings > 0


def test_policy_filter_drops_titles_kinds_and_time_outside_working_hours() -> None:
    # Monday 2025-01-13 in London (UTC in winter): one window 16:30-17:30, one at 20:00.
    t = dt.datetime(2025, 1, 13, 16, 30, tzinfo=dt.UTC).timestamp()
    spans = [
        {"kind": "window", "start": t, "end": t + 3600, "app": "Code", "title": "secret.py"},
        {"kind": "window", "start": t + 12600, "end": t + 13000, "app": "Code", "title": "late.py"},
        {"kind": "idle", "start": t, "end": t + 3600, "state": "active"},
        {"kind": "session", "start": t + 12600, "end": t + 12600, "event": "unlock"},
    ]
    schedule = {
        "mode": "working_hours",
        "time_zone": "Europe/London",
        "days": ["mon"],
        "start": "09:00",
        "end": "17:00",
    }
    document: dict[str, Any] = {
        "collect": {"window": True, "titles": True, "idle": False, "sessions": True},
        "schedule": schedule,
    }
    kept = apply_policy(spans, document, "linux")
    assert kept == [{"kind": "window", "start": t, "end": t + 1800, "app": "Code", "title": "secret.py"}]
    assert all("title" not in s for s in apply_policy(spans, document, "macos"))
    document["collect"]["titles"] = False
    assert all("title" not in s for s in apply_policy(spans, document, "linux"))


def test_batches_never_split_a_tie_and_open_spans_wait() -> None:
    spans = [{"kind": "window", "start": float(i // 3), "end": float(i // 3) + 1} for i in range(10)]
    chunks = list(batches_of(spans, 4))
    assert [len(c) for c in chunks] == [3, 3, 4]
    assert [s for chunk in chunks for s in chunk] == spans
    # A span starting at 2.0 is still open at 3.5: it and its closed ties wait, earlier ones go.
    spans[7] = {**spans[7], "end": 9.0}
    pending = pending_spans(spans, after=0.0, not_before=0.0, until=3.5)
    assert [s["start"] for s in pending] == [1.0, 1.0, 1.0]


def test_demo_device_control_is_set_once_and_reaches_the_agents_policy(db: None) -> None:
    finance, sales = Team.objects.create(name="Finance"), Team.objects.create(name="Sales")
    employee = Person.objects.create(full_name="Fay", email="fay@example.test", employee_number="D1", team=finance)
    changes = ensure_demo_controls()
    assert len(changes) == 4
    assert ensure_demo_controls() == []  # a re-run (or IT's later edits) is left alone
    document = resolve_for_person(employee).document
    assert document["usb"]["classes"]["storage"] == "read_only"
    assert document["usb"]["block_unknown_keyboards"] is True
    assert [(a["vid"], a["pid"], a["serial"]) for a in document["usb"]["allow"]] == [("0781", "5581", "FIN-0001")]
    assert document["removable"]["track_files"] is True
    assert document["apps"]["block"] == [{"name": "steam", "path": ""}]
    seller = Person.objects.create(full_name="Sol", email="sol@example.test", employee_number="D2", team=sales)
    blocked = [r for r in resolve_for_person(seller).document["web"]["rules"] if r["action"] == "block"]
    assert {"facebook.com", "instagram.com"} <= {r["value"] for r in blocked}
    assert all(r["schedule"]["start"] == "09:00" for r in blocked)


def test_demo_classification_is_set_once_and_categorises_what_agents_report(personas: Personas) -> None:
    assert ensure_demo_classification()
    assert ensure_demo_classification() == []  # IT's own rules (or a re-run) are left alone
    agent = Agent.enrolled(personas.person("employee"))
    t = dt.datetime(2025, 1, 20, 10, tzinfo=dt.UTC).timestamp()
    spans = [window(t, t + 600, app="Code"), window(t + 600, t + 660, app="Spotify"), window(t + 660, t + 700, app="x")]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    call_command("worker", "--once", stdout=StringIO())
    rows = {r.subject.value: r.category for r in DailyUsage.objects.select_related("subject")}
    assert rows == {"Code": Category.PRODUCTIVE, "Spotify": Category.UNPRODUCTIVE, "x": Category.UNCATEGORISED}
