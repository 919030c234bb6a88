"""Reads of one person's activity, from the daily rollups (never from raw spans, so a page
stays fast however much was ingested). Callers must already hold a `MonitoringAccess` from the
purpose gate: these functions take the person that access was granted for."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Sum
from django.utils import timezone

from glasshouse.activity.models import DailyAppUsage
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
    rows = DailyAppUsage.objects.filter(person=person, day__gte=first_day, day__lte=last_day)
    apps = [
        AppTotal(r["app__value"], r["total"])
        for r in rows.values("app__value").annotate(total=Sum("seconds")).order_by("-total")[:top]
    ]
    by_day = [DayTotal(r["day"], r["total"]) for r in rows.values("day").annotate(total=Sum("seconds")).order_by("day")]
    return PersonActivity(first_day, last_day, apps, by_day)
