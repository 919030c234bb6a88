"""Reads of activity from the rollups (never from raw spans, so a page stays fast however much
was ingested).

`person_activity` reads one person's rows: callers must already hold a `MonitoringAccess` from
the purpose gate and pass the person it was granted for. `app_totals` reads the team-day rows
(no person in them) for team and organisation reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from django.db.models import Sum
from django.utils import timezone

from glasshouse.activity.models import DailyUsage, TeamDailyUsage, UsageKind
from glasshouse.org.models import Person


@dataclass(frozen=True)
class AppTotal:
    app: str
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass(frozen=True)
class DayTotal:
    day: dt.date
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass(frozen=True)
class PersonActivity:
    first_day: dt.date
    last_day: dt.date
    apps: list[AppTotal]
    days: list[DayTotal]

    @property
    def total_hours(self) -> float:
        return sum(d.seconds for d in self.days) / 3600

    @property
    def busiest_hours(self) -> float:
        return max((d.hours for d in self.days), default=0.0)


def person_activity(person: Person, days: int = 14, top: int = 10) -> PersonActivity:
    """Focused time per application and per local day over the last `days` days (the person's
    own calendar days, as the rollups store them)."""
    last_day = timezone.now().astimezone(dt.UTC).date() + dt.timedelta(days=1)
    first_day = last_day - dt.timedelta(days=days)
    rows = DailyUsage.objects.filter(person=person, kind=UsageKind.APP, day__gte=first_day, day__lte=last_day)
    apps = [
        AppTotal(r["subject__value"], r["total"])
        for r in rows.values("subject__value").annotate(total=Sum("seconds")).order_by("-total")[:top]
    ]
    by_day = [DayTotal(r["day"], r["total"]) for r in rows.values("day").annotate(total=Sum("seconds")).order_by("day")]
    return PersonActivity(first_day, last_day, apps, by_day)


def app_totals(
    first_day: dt.date, last_day: dt.date, team_ids: Collection[int] | None = None, top: int = 20
) -> list[AppTotal]:
    """Focused time per application over members' local days `first_day`..`last_day`
    (inclusive), for the teams given (None: every team), largest first."""
    rows = TeamDailyUsage.objects.filter(kind=UsageKind.APP, day__gte=first_day, day__lte=last_day)
    if team_ids is not None:
        rows = rows.filter(team_id__in=team_ids)
    totals = rows.values("subject__value").annotate(total=Sum("seconds")).order_by("-total")[:top]
    return [AppTotal(r["subject__value"], r["total"]) for r in totals]
