"""The overview report, read from the rollups only: active vs idle time, the productive share
of focused application time, top applications and sites, and a trend by week.

Without an office filter it reads the team-day rows (`TeamDailyUsage`); the office/remote
filter needs each person's office, so it reads the person-day rows (`DailyUsage`) and sums
them. Either way only totals leave this module, never a person. People who are in no team are
in neither (team-day rows are per team), so both paths count the same people.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.db.models import Max, Min, QuerySet, Sum
from django.utils import timezone

from glasshouse.activity.models import Category, DailyUsage, TeamDailyUsage, UsageKind
from glasshouse.org.models import Office, Team
from glasshouse.reports.exports import Report, Table, hours, percent

TOP = 10
DEFAULT_DAYS = 28
MAX_DAYS = 366
REMOTE = "remote"


@dataclass(frozen=True)
class Filters:
    first_day: dt.date
    last_day: dt.date
    team: Team | None = None
    # "" every location, "remote" people with no office, or an office id.
    office: str = ""
    office_label: str = ""

    @classmethod
    def default(cls) -> Filters:
        today = timezone.now().date()
        return cls(today - dt.timedelta(days=DEFAULT_DAYS - 1), today)

    def params(self) -> dict[str, str]:
        out = {"from": self.first_day.isoformat(), "to": self.last_day.isoformat()}
        if self.team is not None:
            out["team"] = str(self.team.pk)
        if self.office:
            out["office"] = self.office
        return out

    def query_string(self) -> str:
        return urlencode(self.params())

    def describe(self) -> str:
        parts = [f"{self.first_day:%d %b %Y} to {self.last_day:%d %b %Y}"]
        parts.append(f"team {self.team.name} and its sub-teams" if self.team is not None else "every team")
        parts.append(self.office_label or "every location")
        return ", ".join(parts)


@dataclass(frozen=True)
class Item:
    name: str
    seconds: float
    # The category, or "mixed" when team overrides put it in several.
    category: str

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass
class Week:
    start: dt.date
    active: float = 0.0
    idle: float = 0.0
    app: float = 0.0
    productive: float = 0.0

    @property
    def productive_share(self) -> float | None:
        return self.productive / self.app if self.app else None


@dataclass
class Overview:
    filters: Filters
    active: float = 0.0
    idle: float = 0.0
    by_category: dict[int, float] = field(default_factory=dict)
    top_apps: list[Item] = field(default_factory=list)
    top_sites: list[Item] = field(default_factory=list)
    weeks: list[Week] = field(default_factory=list)

    @property
    def app_total(self) -> float:
        return sum(self.by_category.values())

    @property
    def productive_share(self) -> float | None:
        total = self.app_total
        return self.by_category.get(Category.PRODUCTIVE, 0.0) / total if total else None

    @property
    def active_share(self) -> float | None:
        total = self.active + self.idle
        return self.active / total if total else None

    def categories(self) -> list[tuple[int, str, float, float]]:
        """(category, label, seconds, share of application time) in a fixed order."""
        total = self.app_total
        order = (Category.PRODUCTIVE, Category.NEUTRAL, Category.UNPRODUCTIVE, Category.UNCATEGORISED)
        return [
            (int(c), str(c.label), self.by_category.get(c, 0.0), self.by_category.get(c, 0.0) / total if total else 0.0)
            for c in order
        ]


def subtree(team: Team, parents: dict[int, int | None]) -> set[int]:
    """The team and every team below it (cycles cannot exist, but are not followed anyway)."""
    children: dict[int | None, list[int]] = defaultdict(list)
    for pk, parent in parents.items():
        children[parent].append(pk)
    found = {team.pk}
    todo = [team.pk]
    while todo:
        for child in children[todo.pop()]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def people_in_scope(rows: QuerySet[Any], f: Filters, parents: dict[int, int | None]) -> QuerySet[Any]:
    """Rows of a per-person table narrowed to the filters' people: in a team (people in no team
    are in no report, as team-day rows cannot hold them), in the team's subtree, at the office
    or remote. Every report that reads per-person rows narrows them here."""
    rows = rows.filter(person__team__isnull=False)
    if f.team is not None:
        rows = rows.filter(person__team_id__in=subtree(f.team, parents))
    if f.office == REMOTE:
        return rows.filter(person__office__isnull=True)
    if f.office:
        return rows.filter(person__office_id=int(f.office))
    return rows


def _rows(f: Filters, parents: dict[int, int | None]) -> QuerySet[Any]:
    if f.office:
        return people_in_scope(DailyUsage.objects.filter(day__gte=f.first_day, day__lte=f.last_day), f, parents)
    rows: QuerySet[Any] = TeamDailyUsage.objects.filter(day__gte=f.first_day, day__lte=f.last_day)
    if f.team is not None:
        rows = rows.filter(team_id__in=subtree(f.team, parents))
    return rows


def _category_label(low: int, high: int) -> str:
    return Category(low).label if low == high else "mixed"


def _top(rows: QuerySet[Any], kind: int) -> list[Item]:
    totals = (
        rows.filter(kind=kind)
        .values("subject__value")
        .annotate(total=Sum("seconds"), low=Min("category"), high=Max("category"))
        .order_by("-total", "subject__value")[:TOP]
    )
    return [Item(r["subject__value"], r["total"], _category_label(r["low"], r["high"])) for r in totals]


def overview(f: Filters, parents: dict[int, int | None] | None = None) -> Overview:
    if parents is None:
        parents = dict(Team.objects.values_list("pk", "parent_id"))
    rows = _rows(f, parents)
    out = Overview(f)
    first_week = f.first_day - dt.timedelta(days=f.first_day.weekday())
    weeks: dict[dt.date, Week] = {}
    start = first_week
    while start <= f.last_day:
        weeks[start] = Week(start)
        start += dt.timedelta(days=7)

    def week(day: dt.date) -> Week:
        return weeks[day - dt.timedelta(days=day.weekday())]

    by_category: dict[int, float] = defaultdict(float)
    for r in rows.filter(kind=UsageKind.APP).values("day", "category").annotate(total=Sum("seconds")):
        by_category[r["category"]] += r["total"]
        w = week(r["day"])
        w.app += r["total"]
        if r["category"] == Category.PRODUCTIVE:
            w.productive += r["total"]
    out.by_category = dict(by_category)
    for r in rows.filter(kind=UsageKind.STATE).values("day", "subject__value").annotate(total=Sum("seconds")):
        w = week(r["day"])
        if r["subject__value"] == "active":
            out.active += r["total"]
            w.active += r["total"]
        elif r["subject__value"] == "idle":
            out.idle += r["total"]
            w.idle += r["total"]
    out.top_apps = _top(rows, UsageKind.APP)
    out.top_sites = _top(rows, UsageKind.SITE)
    out.weeks = list(weeks.values())
    return out


def office_choices() -> list[tuple[str, str]]:
    return [("", "Every location"), (REMOTE, "Remote (no office)")] + [
        (str(pk), name) for pk, name in Office.objects.values_list("pk", "name")
    ]


ITEM_COLUMNS = ("item", "category", "hours", "percent")


def export(ov: Overview) -> Report:
    """The page's tables for the exports. For a week, hours are active hours and percent its
    productive share."""
    summary = Table(
        "summary",
        "Summary",
        ITEM_COLUMNS,
        [
            ("active", "", hours(ov.active), percent(ov.active_share)),
            ("idle", "", hours(ov.idle), percent(None if ov.active_share is None else 1 - ov.active_share)),
            ("productive share", "", "", percent(ov.productive_share)),
        ],
    )
    categories = Table(
        "category",
        "Categories",
        ITEM_COLUMNS,
        [(label, label, hours(seconds), percent(share)) for _, label, seconds, share in ov.categories()],
    )
    apps = Table(
        "top apps", "Top applications", ITEM_COLUMNS, [(i.name, i.category, hours(i.seconds), "") for i in ov.top_apps]
    )
    sites = Table(
        "top sites", "Top sites", ITEM_COLUMNS, [(i.name, i.category, hours(i.seconds), "") for i in ov.top_sites]
    )
    weeks = Table(
        "weeks",
        "Weeks",
        ITEM_COLUMNS,
        [(w.start.isoformat(), "", hours(w.active), percent(w.productive_share)) for w in ov.weeks],
    )
    return Report("overview", "Activity overview", ov.filters.describe(), [summary, categories, apps, sites, weeks])
