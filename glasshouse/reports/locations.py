"""Office vs remote: per office and "remote" (people with no office), active time per person
per day, the productive share of focused application time and the after-hours share.

Active time and the productive share come from the person-day rollups (`DailyUsage`), summed
by office in the database; a person-day is a day a person had active time, so "per person per
day" is active time / person-days and days off do not dilute it. The after-hours share is
`afterhours.after_hours` grouped by office. People are placed by their current office; people
in no team are left out, as in every report.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from glasshouse.activity.models import Category, DailyUsage, UsageKind
from glasshouse.reports.afterhours import Tally, after_hours
from glasshouse.reports.exports import Report, Table, hours, percent
from glasshouse.reports.overview import REMOTE, Filters, people_in_scope


@dataclass
class Location:
    key: str  # an office id or "remote"
    name: str
    people: int = 0
    person_days: int = 0
    active: float = 0.0
    app: float = 0.0
    productive: float = 0.0
    hours: Tally | None = None

    @property
    def active_per_person_day(self) -> float | None:
        return self.active / self.person_days if self.person_days else None

    @property
    def productive_share(self) -> float | None:
        return self.productive / self.app if self.app else None

    @property
    def after_hours_share(self) -> float | None:
        return self.hours.after_hours_share if self.hours is not None else None


@dataclass
class Comparison:
    filters: Filters
    locations: list[Location]

    @property
    def has_data(self) -> bool:
        return any(loc.person_days for loc in self.locations)


def comparison(f: Filters, parents: dict[int, int | None]) -> Comparison:
    rows = people_in_scope(DailyUsage.objects.filter(day__gte=f.first_day, day__lte=f.last_day), f, parents)
    active = Q(kind=UsageKind.STATE, subject__value="active")
    stats = {
        r["person__office_id"]: r
        for r in rows.filter(active | Q(kind=UsageKind.APP))
        .values("person__office_id")
        .annotate(
            people=Count("person_id", distinct=True, filter=active),
            person_days=Count("id", filter=active),
            active=Sum("seconds", filter=active),
            app=Sum("seconds", filter=Q(kind=UsageKind.APP)),
            productive=Sum("seconds", filter=Q(kind=UsageKind.APP, category=Category.PRODUCTIVE)),
        )
    }
    ah = after_hours(f, parents, by="office")
    locations = []
    for group in ah.groups:  # every office in scope and remote, named and ordered
        r = stats.get(None if group.key == REMOTE else int(group.key), {})
        locations.append(
            Location(
                group.key,
                group.name,
                people=r.get("people") or 0,
                person_days=r.get("person_days") or 0,
                active=r.get("active") or 0.0,
                app=r.get("app") or 0.0,
                productive=r.get("productive") or 0.0,
                hours=group.tally,
            )
        )
    return Comparison(f, locations)


COLUMNS = (
    "location",
    "people",
    "person-days",
    "active hours per person per day",
    "productive percent",
    "after-hours percent",
)


def export(c: Comparison) -> Report:
    rows = [
        (
            loc.name,
            loc.people,
            loc.person_days,
            "" if loc.active_per_person_day is None else hours(loc.active_per_person_day),
            percent(loc.productive_share),
            percent(loc.after_hours_share),
        )
        for loc in c.locations
    ]
    return Report(
        "locations", "Office vs remote", c.filters.describe(), [Table("locations", "Locations", COLUMNS, rows)]
    )
