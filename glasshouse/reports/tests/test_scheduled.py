"""Scheduled reports: the mail reaches a real SMTP server on loopback with the PDF and CSV
attached and the overview's numbers; each period is sent once; periods and due times across
month ends; retries after a failed send; the pages and who may use them."""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from conftest import ClientFor, Personas
from glasshouse.alerts.tests.helpers import smtp_server
from glasshouse.audit.models import AuditEntry
from glasshouse.reports import scheduled
from glasshouse.reports.models import Frequency, ReportSchedule, SentReport
from glasshouse.reports.tests.test_overview import seed

pytestmark = pytest.mark.django_db


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def post(client: Client, url: str, data: dict[str, Any]) -> Any:
    # A valid CSRF pair for every persona, so a 403 is the role check, not the CSRF check.
    token = "a" * 32
    client.cookies["csrftoken"] = token
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def parts(content: bytes) -> tuple[email.message.EmailMessage, dict[str, bytes]]:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    files = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        files[str(part.get_filename())] = payload
    return message, files


def test_weekly_overview_arrives_once_with_pdf_csv_and_the_numbers(personas: Personas, settings: Any) -> None:
    seed(personas)  # Eve: week of Mon 13 Jan 2025; Ida: the week after
    schedule = scheduled.do_create_schedule(
        personas.it_admin,
        "overview",
        Frequency.WEEKLY,
        "soc@example.test\nciso@example.test",
        {"team": str(personas.sales_team.pk)},
        now=utc(2025, 1, 15, 9),
    )
    # Due 12 hours after the week ends (Sunday 19 Jan, UTC).
    assert schedule.next_run_at == utc(2025, 1, 20, 12)
    with smtp_server(settings) as mailbox:
        assert scheduled.send_due(utc(2025, 1, 20, 11, 59)) == 0
        assert scheduled.send_due(utc(2025, 1, 20, 12)) == 1
        assert scheduled.send_due(utc(2025, 1, 20, 12, 5)) == 0  # never the same period twice
    [(sender, recipients, content)] = mailbox.messages
    assert sender == settings.DEFAULT_FROM_EMAIL
    assert sorted(recipients) == ["ciso@example.test", "soc@example.test"]
    message, files = parts(content)
    assert str(message["Subject"]) == "Glasshouse overview, 13 Jan 2025 to 19 Jan 2025"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    # Sales only (Eve): 80 min active, 10 min idle, code 1 h, solitaire 30 min.
    for body in (text.get_content(), html.get_content()):
        assert "team Sales and its sub-teams" in body
        assert "1 h 20 m" in body
        assert "10 m" in body
        assert "code: 1 h 00 m" in body
        assert "solitaire: 30 m" in body
    assert set(files) == {
        "glasshouse-overview-2025-01-13-2025-01-19.pdf",
        "glasshouse-overview-2025-01-13-2025-01-19.csv",
    }
    rows = list(csv.reader(io.StringIO(files["glasshouse-overview-2025-01-13-2025-01-19.csv"].decode())))
    assert ["summary", "active", "", "1.33", "88.9"] in rows
    assert ["top apps", "code", "uncategorised", "1.0", ""] in rows
    pdf = "".join(
        p.extract_text() for p in PdfReader(io.BytesIO(files["glasshouse-overview-2025-01-13-2025-01-19.pdf"])).pages
    )
    assert "solitaire" in pdf
    assert "13 Jan 2025 to 19 Jan 2025" in pdf
    [sent] = SentReport.objects.all()
    assert (sent.first_day, sent.last_day) == (d("2025-01-13"), d("2025-01-19"))
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2025, 1, 27, 12)
    actions = list(AuditEntry.objects.filter(action__startswith="reports.schedule").values_list("action", flat=True))
    assert sorted(actions) == ["reports.schedule.create", "reports.schedule.send"]


def test_a_worker_that_was_down_sends_each_missed_day_once(personas: Personas, settings: Any) -> None:
    scheduled.do_create_schedule(None, "overview", Frequency.DAILY, "soc@example.test", {}, now=utc(2025, 1, 15, 9))
    with smtp_server(settings) as mailbox:
        assert scheduled.send_due(utc(2025, 1, 18, 13)) == 3
        assert scheduled.send_due(utc(2025, 1, 18, 13)) == 0
    subjects = sorted(str(parts(m[2])[0]["Subject"]) for m in mailbox.messages)
    assert subjects == [f"Glasshouse overview, {n} Jan 2025" for n in (15, 16, 17)]
    assert sorted(SentReport.objects.values_list("first_day", flat=True)) == [
        d("2025-01-15"),
        d("2025-01-16"),
        d("2025-01-17"),
    ]


def test_a_failed_send_is_retried_later_and_then_sent_once(personas: Personas, settings: Any) -> None:
    schedule = scheduled.do_create_schedule(
        None, "overview", Frequency.MONTHLY, "soc@example.test", {}, now=utc(2025, 1, 31, 23)
    )
    due = schedule.next_run_at
    with smtp_server(settings):
        pass  # stopped: the port refuses connections
    assert scheduled.send_due(due) == 0
    schedule.refresh_from_db()
    assert schedule.attempts == 1
    assert schedule.retry_at == due + scheduled.RETRY_BASE
    assert schedule.last_error.startswith("2025-01-01 to 2025-01-31: ")
    assert not SentReport.objects.exists()
    with smtp_server(settings) as mailbox:
        assert scheduled.send_due(due + dt.timedelta(minutes=1)) == 0  # waiting for the retry
        assert scheduled.send_due(due + scheduled.RETRY_BASE) == 1
    assert len(mailbox.messages) == 1
    schedule.refresh_from_db()
    assert schedule.attempts == 0
    assert schedule.retry_at is None
    assert schedule.last_error == ""
    assert schedule.next_run_at == utc(2025, 3, 1, 12)


@pytest.mark.parametrize(
    ("now", "frequency", "first_run", "period", "following"),
    [
        # Daily: yesterday, across a month end and a leap day.
        (utc(2024, 2, 28, 23, 59), "daily", utc(2024, 2, 29, 12), ("2024-02-28", "2024-02-28"), utc(2024, 3, 1, 12)),
        (utc(2024, 2, 29, 0, 0), "daily", utc(2024, 3, 1, 12), ("2024-02-29", "2024-02-29"), utc(2024, 3, 2, 12)),
        # Weekly: Monday to Sunday, across a year end.
        (utc(2024, 12, 31, 8), "weekly", utc(2025, 1, 6, 12), ("2024-12-30", "2025-01-05"), utc(2025, 1, 13, 12)),
        (utc(2025, 1, 5, 23), "weekly", utc(2025, 1, 6, 12), ("2024-12-30", "2025-01-05"), utc(2025, 1, 13, 12)),
        # Monthly: whole calendar months of 31, 29, 28 and 30 days.
        (utc(2025, 1, 31, 23), "monthly", utc(2025, 2, 1, 12), ("2025-01-01", "2025-01-31"), utc(2025, 3, 1, 12)),
        (utc(2024, 2, 10), "monthly", utc(2024, 3, 1, 12), ("2024-02-01", "2024-02-29"), utc(2024, 4, 1, 12)),
        (utc(2025, 2, 28, 22), "monthly", utc(2025, 3, 1, 12), ("2025-02-01", "2025-02-28"), utc(2025, 4, 1, 12)),
        (utc(2025, 12, 1), "monthly", utc(2026, 1, 1, 12), ("2025-12-01", "2025-12-31"), utc(2026, 2, 1, 12)),
        (utc(2025, 4, 30, 12), "monthly", utc(2025, 5, 1, 12), ("2025-04-01", "2025-04-30"), utc(2025, 6, 1, 12)),
    ],
)
def test_periods_and_due_times(
    now: dt.datetime, frequency: str, first_run: dt.datetime, period: tuple[str, str], following: dt.datetime
) -> None:
    run = scheduled.first_run(now, frequency)
    assert run == first_run
    first, last = scheduled.period_for(run, frequency)
    assert (first.isoformat(), last.isoformat()) == period
    assert scheduled.run_at(scheduled.next_period_start(first, frequency), frequency) == following


def test_bad_schedules_are_refused_whole_naming_each_field(personas: Personas) -> None:
    with pytest.raises(ValidationError) as caught:
        scheduled.check_schedule("payroll", "hourly", "soc@example.test\nnot an address", {})
    assert set(caught.value.message_dict) == {"report", "frequency", "recipients"}
    with pytest.raises(ValidationError) as caught:
        scheduled.check_schedule("overview", "daily", "", {"team": "999999", "office": "nowhere"})
    assert set(caught.value.message_dict) == {"recipients", "team", "office"}
    many = "\n".join(f"p{n}@example.test" for n in range(scheduled.MAX_RECIPIENTS + 1))
    with pytest.raises(ValidationError, match="At most"):
        scheduled.check_schedule("overview", "daily", many, {})
    assert not ReportSchedule.objects.exists()


def test_it_admin_schedules_and_deletes_security_reads_hr_is_refused(personas: Personas, client_for: ClientFor) -> None:
    admin = client_for("it_admin")
    response = post(
        admin,
        reverse("reports:schedule_add"),
        {
            "report": "overview",
            "frequency": "weekly",
            "team": str(personas.it_team.pk),
            "office": "remote",
            "recipients": "soc@example.test",
        },
    )
    assert response.status_code == 302
    schedule = ReportSchedule.objects.get()
    assert (schedule.owner, schedule.filters) == (personas.it_admin, {"team": personas.it_team.pk, "office": "remote"})
    page = client_for("security").get(reverse("reports:schedules"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "team IT and its sub-teams, remote" in body
    assert "soc@example.test" in body
    assert "Delete" not in body  # security reads only
    bad = post(admin, reverse("reports:schedule_add"), {"report": "overview", "frequency": "daily", "recipients": "x"})
    assert bad.status_code == 400
    assert "Not an e-mail address: x." in bad.content.decode()
    for name in ("security", "hr", "manager", "employee", "auditor"):
        assert post(client_for(name), reverse("reports:schedule_delete", args=[schedule.pk]), {}).status_code == 403
    assert post(admin, reverse("reports:schedule_delete", args=[schedule.pk]), {}).status_code == 302
    assert not ReportSchedule.objects.exists()
    assert AuditEntry.objects.filter(action="reports.schedule.delete").count() == 1
