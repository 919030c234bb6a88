"""Scheduled reports by e-mail: which reports can be scheduled, the period arithmetic, the
create/delete actions and the worker job that sends what is due.

Periods are whole UTC calendar periods: a daily schedule sends yesterday, a weekly one Monday
to Sunday, a monthly one the last calendar month (month ends need no special case: a period
ends the day before the next one starts). The days are compared with the rollups' days, which
are each member's own local day. A period becomes due SEND_DELAY after its UTC end, when the
last local day of the period has ended in every time zone down to UTC-12, so its rollups are
complete. Being UTC, DST never moves a period.

Each sent period is a `SentReport` row, written in the same transaction that advances the
schedule and holds its row lock, so a period is never sent twice by two workers or a retried
pass. The one gap: a worker that dies after the mail server accepted the message and before the
commit sends that period again on its next pass (the alternative, recording before sending,
would lose the report instead).

A report plugs in by name: `register(ScheduledReport(...))` with a function that checks its
filters and one that renders a period (subject, text and HTML summary, attachments).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from glasshouse.audit.actions import record
from glasshouse.org.models import Office, Team
from glasshouse.reports import exports
from glasshouse.reports.models import Frequency, ReportSchedule, SentReport
from glasshouse.reports.overview import REMOTE, Filters, export, overview

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser | None

SEND_DELAY = dt.timedelta(hours=12)
MAX_RECIPIENTS = 20
RETRY_BASE = dt.timedelta(minutes=5)
RETRY_MAX = dt.timedelta(hours=6)
PER_PASS = 20


class ReportUnavailable(Exception):
    """The schedule's filters no longer make sense (a team was deleted): the send fails and
    the error is shown on the schedules page."""


@dataclass
class Rendered:
    subject: str
    text: str
    html: str
    # (file name, content, MIME type)
    attachments: list[tuple[str, bytes | str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ScheduledReport:
    name: str
    label: str
    # Raw form values (team, office) -> the filters to store; ValidationError naming the field.
    check_filters: Callable[[Mapping[str, str]], dict[str, Any]]
    render: Callable[[dict[str, Any], dt.date, dt.date], Rendered]
    # Stored filters -> words for the schedules page.
    describe: Callable[[dict[str, Any]], str]


REPORTS: dict[str, ScheduledReport] = {}


def register(report: ScheduledReport) -> ScheduledReport:
    REPORTS[report.name] = report
    return report


# --- period arithmetic ---------------------------------------------------------------------


def period_start(day: dt.date, frequency: str) -> dt.date:
    """The first day of the period that contains `day`."""
    if frequency == Frequency.DAILY:
        return day
    if frequency == Frequency.WEEKLY:
        return day - dt.timedelta(days=day.weekday())
    if frequency == Frequency.MONTHLY:
        return day.replace(day=1)
    raise ValueError(f"unknown frequency {frequency!r}")


def next_period_start(start: dt.date, frequency: str) -> dt.date:
    if frequency == Frequency.DAILY:
        return start + dt.timedelta(days=1)
    if frequency == Frequency.WEEKLY:
        return start + dt.timedelta(days=7)
    if frequency == Frequency.MONTHLY:
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    raise ValueError(f"unknown frequency {frequency!r}")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def run_at(first_day: dt.date, frequency: str) -> dt.datetime:
    """When the period starting on `first_day` is due: SEND_DELAY after its UTC end."""
    return _midnight(next_period_start(first_day, frequency)) + SEND_DELAY


def period_for(next_run: dt.datetime, frequency: str) -> tuple[dt.date, dt.date]:
    """The period (first and last day) a schedule due at `next_run` sends."""
    end = (next_run - SEND_DELAY).astimezone(dt.UTC).date()  # the day after the period
    first = period_start(end - dt.timedelta(days=1), frequency)
    return first, end - dt.timedelta(days=1)


def first_run(now: dt.datetime, frequency: str) -> dt.datetime:
    """A new schedule's first run: the end of the period now in progress (UTC), so the first
    mail covers a whole period."""
    return run_at(period_start(now.astimezone(dt.UTC).date(), frequency), frequency)


# --- actions ---------------------------------------------------------------------------------


def check_schedule(report: str, frequency: str, recipients: str, raw_filters: Mapping[str, str]) -> dict[str, Any]:
    """The schedule's fields as stored, or ValidationError naming every bad field."""
    errors: dict[str, list[str]] = {}
    if report not in REPORTS:
        errors["report"] = ["Choose a report."]
    if frequency not in Frequency.values:
        errors["frequency"] = ["Choose daily, weekly or monthly."]
    addresses = [a.strip() for a in recipients.replace(",", "\n").splitlines() if a.strip()]
    bad = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            bad.append(address)
    if bad:
        errors["recipients"] = [f"Not an e-mail address: {', '.join(bad[:5])}."]
    elif not addresses:
        errors["recipients"] = ["Enter at least one e-mail address."]
    elif len(set(addresses)) > MAX_RECIPIENTS:
        errors["recipients"] = [f"At most {MAX_RECIPIENTS} addresses."]
    filters: dict[str, Any] = {}
    if report in REPORTS:
        try:
            filters = REPORTS[report].check_filters(raw_filters)
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)
    return {
        "report": report,
        "frequency": frequency,
        "recipients": "\n".join(dict.fromkeys(addresses)),
        "filters": filters,
    }


def _snapshot(schedule: ReportSchedule) -> dict[str, object]:
    return {
        "report": schedule.report,
        "filters": schedule.filters,
        "frequency": schedule.frequency,
        "recipients": schedule.recipient_list,
        "next_run_at": schedule.next_run_at.isoformat(),
    }


def do_create_schedule(
    actor: Actor,
    report: str,
    frequency: str,
    recipients: str,
    raw_filters: Mapping[str, str],
    *,
    now: dt.datetime | None = None,
    request: HttpRequest | None = None,
) -> ReportSchedule:
    fields = check_schedule(report, frequency, recipients, raw_filters)
    from glasshouse.accounts.models import User

    with transaction.atomic():
        schedule = ReportSchedule.objects.create(
            **fields,
            owner=actor if isinstance(actor, User) else None,
            next_run_at=first_run(now or timezone.now(), frequency),
        )
        record(
            actor=actor,
            action="reports.schedule.create",
            target=schedule,
            target_label=str(schedule),
            after=_snapshot(schedule),
            request=request,
        )
    return schedule


def do_delete_schedule(actor: Actor, schedule: ReportSchedule, *, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        before = _snapshot(schedule)
        label = str(schedule)
        schedule.delete()
        record(actor=actor, action="reports.schedule.delete", target_label=label, before=before, request=request)


# --- the worker job --------------------------------------------------------------------------


def _message(schedule: ReportSchedule, first: dt.date, last: dt.date) -> EmailMultiAlternatives:
    entry = REPORTS.get(schedule.report)
    if entry is None:
        raise ReportUnavailable(f"No report called {schedule.report!r} can be scheduled any more.")
    rendered = entry.render(schedule.filters, first, last)
    message = EmailMultiAlternatives(
        subject=rendered.subject[:200],
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=schedule.recipient_list,
    )
    message.attach_alternative(rendered.html, "text/html")
    for name, content, mimetype in rendered.attachments:
        message.attach(name, content, mimetype)
    return message


def _send_one(pk: int, now: dt.datetime) -> bool | None:
    """Send the due period of schedule `pk`, if it is still due and nobody else holds it.
    True: sent; False: failed (retry later); None: nothing to do."""
    with transaction.atomic():
        schedule = (
            ReportSchedule.objects.select_for_update(skip_locked=True).filter(pk=pk, next_run_at__lte=now).first()
        )
        if schedule is None or (schedule.retry_at is not None and schedule.retry_at > now):
            return None
        first, last = period_for(schedule.next_run_at, schedule.frequency)
        following = run_at(next_period_start(first, schedule.frequency), schedule.frequency)
        if SentReport.objects.filter(schedule=schedule, first_day=first).exists():
            # Already sent (a clock moved back, or a restored backup): just move on.
            ReportSchedule.objects.filter(pk=pk).update(next_run_at=following)
            return None
        try:
            _message(schedule, first, last).send(fail_silently=False)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        else:
            SentReport.objects.create(
                schedule=schedule, first_day=first, last_day=last, sent_at=now, recipients=schedule.recipients
            )
            ReportSchedule.objects.filter(pk=pk).update(next_run_at=following, retry_at=None, attempts=0, last_error="")
            record(
                actor=None,
                actor_label="worker",
                action="reports.schedule.send",
                target=schedule,
                target_label=str(schedule),
                after={
                    "first_day": first.isoformat(),
                    "last_day": last.isoformat(),
                    "recipients": schedule.recipient_list,
                },
            )
            return True
    # Outside the transaction above, which holds nothing worth keeping after a failure.
    attempts = schedule.attempts + 1
    pause = min(RETRY_BASE * 2 ** (attempts - 1), RETRY_MAX)
    ReportSchedule.objects.filter(pk=pk).update(
        attempts=attempts, retry_at=now + pause, last_error=f"{first} to {last}: {error}"[:500]
    )
    return False


def send_due(now: dt.datetime | None = None) -> int:
    """Send every due period of every schedule (a worker that was down catches up one mail
    per missed period, in order); return how many mails were sent."""
    now = now or timezone.now()
    sent = 0
    for _ in range(PER_PASS):
        ids = list(
            ReportSchedule.objects.filter(next_run_at__lte=now)
            .exclude(retry_at__gt=now)
            .order_by("next_run_at", "pk")
            .values_list("pk", flat=True)[:PER_PASS]
        )
        progress = False
        for pk in ids:
            outcome = _send_one(pk, now)
            sent += outcome is True
            progress |= outcome is True
        if not progress:
            break
    return sent


def attachments(report: exports.Report, first: dt.date, last: dt.date) -> list[tuple[str, bytes | str, str]]:
    """The PDF and CSV of a report's export, the same files its page's export links give."""
    stem = f"glasshouse-{report.slug}-{first}-{last}"
    return [
        (f"{stem}.pdf", exports.to_pdf(report), "application/pdf"),
        (f"{stem}.csv", exports.to_csv(report), "text/csv"),
    ]


# --- the overview ----------------------------------------------------------------------------


def _overview_filters(raw: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    team = (raw.get("team") or "").strip()
    if team:
        if not team.isdigit() or not Team.objects.filter(pk=int(team)).exists():
            errors["team"] = "Choose a team from the list."
        else:
            out["team"] = int(team)
    office = (raw.get("office") or "").strip()
    if office:
        if office != REMOTE and (not office.isdigit() or not Office.objects.filter(pk=int(office)).exists()):
            errors["office"] = "Choose a location from the list."
        else:
            out["office"] = office
    if errors:
        raise ValidationError(errors)
    return out


def _overview_period_filters(stored: dict[str, Any], first: dt.date, last: dt.date) -> Filters:
    team = None
    if stored.get("team") is not None:
        team = Team.objects.filter(pk=stored["team"]).first()
        if team is None:
            raise ReportUnavailable("The schedule's team has been deleted; delete the schedule or make a new one.")
    office = str(stored.get("office") or "")
    label = ""
    if office == REMOTE:
        label = "Remote (no office)"
    elif office:
        name = Office.objects.filter(pk=int(office)).values_list("name", flat=True).first()
        if name is None:
            raise ReportUnavailable("The schedule's office has been deleted; delete the schedule or make a new one.")
        label = name
    return Filters(first_day=first, last_day=last, team=team, office=office, office_label=label)


def _describe_overview(stored: dict[str, Any]) -> str:
    parts = []
    team = Team.objects.filter(pk=stored["team"]).first() if stored.get("team") is not None else None
    parts.append(f"team {team.name} and its sub-teams" if team else "every team")
    office = str(stored.get("office") or "")
    if office == REMOTE:
        parts.append("remote")
    elif office:
        parts.append(Office.objects.filter(pk=int(office)).values_list("name", flat=True).first() or "?")
    else:
        parts.append("every location")
    return ", ".join(parts)


def _render_overview(stored: dict[str, Any], first: dt.date, last: dt.date) -> Rendered:
    ov = overview(_overview_period_filters(stored, first, last))
    context = {"ov": ov, "top_apps": ov.top_apps[:5], "top_sites": ov.top_sites[:5]}
    return Rendered(
        subject=f"Glasshouse overview, {first:%d %b %Y}" + ("" if first == last else f" to {last:%d %b %Y}"),
        text=render_to_string("reports/email/overview.txt", context),
        html=render_to_string("reports/email/overview.html", context),
        attachments=attachments(export(ov), first, last),
    )


register(
    ScheduledReport(
        name="overview",
        label="Activity overview",
        check_filters=_overview_filters,
        render=_render_overview,
        describe=_describe_overview,
    )
)
