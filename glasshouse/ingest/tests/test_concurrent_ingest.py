"""Two uploads in flight at the same moment must both be stored: no deadlock, no 500.

On PostgreSQL the ingest benchmark once got "deadlock detected": upload A had interned a new
window title (uncommitted) and was about to COPY its spans, while upload B, inside its own
transaction, had just created a new day partition (an exclusive lock on the span table) and then
waited for A's title. A waited for the table, B for A. Now partitions are made in a transaction
of their own before the batch's, and new strings are inserted in sorted order."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from glasshouse.activity.models import IngestBatch, Span, SpanKind
from glasshouse.activity.sinks import SpanIn, intern_strings, write_spans
from glasshouse.devices.models import AgentPolicy, Device
from glasshouse.ingest.tests.helpers import T0, Agent, window

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgresql_only,  # SQLite has one writer at a time: nothing to race
]


def test_a_batch_needing_a_new_day_is_stored_while_another_upload_holds_its_new_strings() -> None:
    AgentPolicy.objects.filter(team__isnull=True).update(collect_titles=True)
    first, second = Agent.enrolled(), Agent.enrolled()
    holding = threading.Event()
    errors: list[BaseException] = []

    def upload_in_flight() -> None:
        # Upload A, by the sink's own steps: intern a new title, hold it uncommitted for a
        # moment (as a slow upload does), then write its spans and commit.
        try:
            device = Device.objects.get(pk=first.device_id)
            with transaction.atomic():
                intern_strings(["Quarterly plan - draft"])
                holding.set()
                time.sleep(1.5)  # upload B arrives now and needs the same title and a new day
                span = SpanIn(int(SpanKind.WINDOW), T0, T0 + 60, "code", None, "Quarterly plan - draft")
                batch = IngestBatch.objects.create(device=device, seq=1, span_count=1)
                write_spans(device, None, [span], ingest_id=batch.pk)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=upload_in_flight)
    thread.start()
    assert holding.wait(timeout=30)
    far_day = T0 + 40 * 86400  # a day no partition exists for yet
    response = second.send({"batch_seq": 1, "spans": [window(far_day, far_day + 60, title="Quarterly plan - draft")]})
    thread.join(timeout=60)
    assert errors == []
    assert response.status_code == 200, response.content
    assert Span.objects.count() == 2
