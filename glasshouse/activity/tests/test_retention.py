"""Span storage by day: on PostgreSQL each UTC day is a partition and retention drops whole
partitions; on SQLite retention deletes the expired days. Either way, spans past retention
are gone, newer ones stay, and a late upload of expired spans stores nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conftest import Personas
from glasshouse.activity import retention
from glasshouse.activity.models import IngestBatch, Span
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = pytest.mark.django_db

UTC = dt.UTC
on_postgres = pytest.mark.postgresql_only  # partitions exist only on PostgreSQL


def days_ago(n: int, hour: int = 10) -> float:
    today = timezone.now().astimezone(UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=n), dt.time(hour), tzinfo=UTC).timestamp()


def stored_days() -> set[dt.date]:
    return {s.astimezone(UTC).date() for s in Span.objects.values_list("start", flat=True)}


def test_retention_removes_expired_days_and_keeps_the_rest(personas: Personas, settings: object) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    spans = [window(days_ago(n), days_ago(n) + 60) for n in (60, 45, 31, 5, 0)]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    assert len(stored_days()) == 5
    settings.SPAN_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    # Kept: the 30 whole days before today and today; day 31 is in its day of grace.
    assert retention.drop_expired() == 2
    today = timezone.now().astimezone(UTC).date()
    assert stored_days() == {today - dt.timedelta(days=n) for n in (31, 5, 0)}
    assert retention.drop_expired() == 0  # nothing left to drop


def test_spans_past_retention_are_not_stored_but_the_batch_is_acknowledged(
    personas: Personas, settings: object
) -> None:
    settings.SPAN_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    agent = Agent.enrolled(personas.person("employee"))
    response = agent.send(
        {"batch_seq": 1, "spans": [window(days_ago(40), days_ago(40) + 60), window(days_ago(1), days_ago(1) + 60)]}
    )
    assert response.status_code == 200
    assert response.json()["accepted_seq"] == 1
    assert IngestBatch.objects.count() == 1
    assert stored_days() == {timezone.now().astimezone(UTC).date() - dt.timedelta(days=1)}


def test_retention_off_keeps_everything(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    agent.send({"batch_seq": 1, "spans": [window(days_ago(900), days_ago(900) + 60)]})
    assert retention.drop_expired() == 0
    assert Span.objects.count() == 1


@on_postgres
def test_each_span_lands_in_the_partition_of_its_utc_day(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    # One span just before midnight UTC, one just after: two days, two partitions.
    midnight = days_ago(3, hour=0)
    agent.send({"batch_seq": 1, "spans": [window(midnight - 30, midnight), window(midnight, midnight + 30)]})
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM activity_span ORDER BY start")
        tables = [row[0] for row in cursor.fetchall()]
    day = dt.datetime.fromtimestamp(midnight, UTC).date()
    assert tables == [retention.partition_name(day - dt.timedelta(days=1)), retention.partition_name(day)]


@on_postgres
def test_retention_drops_whole_partitions(personas: Personas, settings: object) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    agent.send({"batch_seq": 1, "spans": [window(days_ago(n), days_ago(n) + 60) for n in (50, 40, 2)]})
    today = timezone.now().astimezone(UTC).date()
    old = {today - dt.timedelta(days=n) for n in (50, 40)}
    assert old <= set(retention.existing_partitions())
    settings.SPAN_RETENTION_DAYS = 30  # type: ignore[attr-defined]
    retention.drop_expired()
    assert not old & set(retention.existing_partitions())
    assert today - dt.timedelta(days=2) in retention.existing_partitions()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [retention.partition_name(today - dt.timedelta(days=50))])
        assert cursor.fetchone() == (None,)
    assert stored_days() == {today - dt.timedelta(days=2)}


@on_postgres
def test_worker_prepares_the_coming_days(db: None) -> None:
    call_command("worker", "--once")
    today = timezone.now().astimezone(UTC).date()
    assert {today + dt.timedelta(days=n) for n in range(retention.AHEAD_DAYS + 1)} <= set(
        retention.existing_partitions()
    )
