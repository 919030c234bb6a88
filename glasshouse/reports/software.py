"""Software utilisation and licence reclaim, from the person-day rollups (`DailyUsage`).

Utilisation: for each application (focused window time) and each site (browser time by
domain, which is where SaaS shows up) used in the period by people in scope: how many people,
total time and the median time per user. Only counts and sums leave this module.

Licence reclaim: for one application or site, the people in scope who used it before but not
in the 30 days up to the report's last day. There is no licence register in Glasshouse yet,
so "has a licence" is read as "has used it" (people given a licence who never opened it are
not found; open). Privacy choice, enforced here rather than in the template: it is a licence
management list, an IT admin's job, so IT admins see names with the team and the last day of
use (nothing about how much or when else); everyone else who may open reports (security
analysts) gets the count only. Opening the named list is audited by the view.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, Sum

from glasshouse.access.roles import has_any_role
from glasshouse.activity.models import DailyUsage, UsageKind
from glasshouse.core.roles import Role
from glasshouse.reports.exports import Report, Table, hours
from glasshouse.reports.overview import Filters, people_in_scope

RECLAIM_DAYS = 30
SHOWN = 100  # rows per table on the page and in exports
KINDS = {"app": UsageKind.APP, "site": UsageKind.SITE}


@dataclass(frozen=True)
class Use:
    name: str
    users: int
    seconds: float
    median: float  # seconds per user

    @property
    def per_user(self) -> float:
        return self.seconds / self.users if self.users else 0.0


@dataclass(frozen=True)
class Idle:
    name: str
    team: str
    last_used: dt.date
    left: bool


@dataclass
class Reclaim:
    kind: str  # "app" or "site"
    subject: str
    since: dt.date  # not used on or after this day
    count: int = 0
    # None when the viewer may not see names; a list (maybe empty) when they may.
    people: list[Idle] | None = None


@dataclass
class Utilisation:
    filters: Filters
    apps: list[Use] = field(default_factory=list)
    sites: list[Use] = field(default_factory=list)
    apps_total: int = 0  # before the SHOWN cut
    sites_total: int = 0
    reclaim: Reclaim | None = None


def utilisation(f: Filters, parents: dict[int, int | None]) -> Utilisation:
    """One query: seconds per (kind, subject, person), folded into per-subject counts."""
    rows = people_in_scope(
        DailyUsage.objects.filter(
            day__gte=f.first_day, day__lte=f.last_day, kind__in=(UsageKind.APP, UsageKind.SITE), seconds__gt=0
        ),
        f,
        parents,
    )
    per_user: dict[tuple[int, str], list[float]] = defaultdict(list)
    for r in rows.values("kind", "subject__value", "person_id").annotate(total=Sum("seconds")):
        per_user[(r["kind"], r["subject__value"])].append(r["total"])
    uses: dict[int, list[Use]] = {UsageKind.APP: [], UsageKind.SITE: []}
    for (kind, name), totals in per_user.items():
        uses[kind].append(Use(name, len(totals), sum(totals), statistics.median(totals)))
    out = Utilisation(f)
    for kind, target in ((UsageKind.APP, "apps"), (UsageKind.SITE, "sites")):
        ranked = sorted(uses[kind], key=lambda u: (-u.users, -u.seconds, u.name))
        setattr(out, target, ranked[:SHOWN])
        setattr(out, f"{target}_total", len(ranked))
    return out


def may_see_names(user: Any) -> bool:
    return has_any_role(user, {Role.IT_ADMIN})


def reclaim(f: Filters, parents: dict[int, int | None], kind: str, subject: str, user: Any) -> Reclaim:
    """People in scope whose last use of `subject` (up to the report's last day) is more than
    RECLAIM_DAYS days before it. Names only for viewers who may see them (`may_see_names`):
    for the others the query returns counts and never loads a name."""
    since = f.last_day - dt.timedelta(days=RECLAIM_DAYS - 1)
    used = people_in_scope(
        DailyUsage.objects.filter(kind=KINDS[kind], subject__value=subject, day__lte=f.last_day, seconds__gt=0),
        f,
        parents,
    )
    out = Reclaim(kind, subject, since)
    if not may_see_names(user):
        out.count = used.values("person_id").annotate(last=Max("day")).filter(last__lt=since).count()
        return out
    named = (
        used.values("person_id", "person__full_name", "person__team__name", "person__status")
        .annotate(last=Max("day"))
        .filter(last__lt=since)
    )
    out.people = sorted(
        (
            Idle(r["person__full_name"], r["person__team__name"] or "", r["last"], r["person__status"] == "left")
            for r in named
        ),
        key=lambda i: (i.last_used, i.name),
    )
    out.count = len(out.people)
    return out


USE_COLUMNS = ("name", "users", "total hours", "hours per user", "median hours per user")


def export(u: Utilisation) -> Report:
    def rows(uses: list[Use]) -> list[tuple[str, int, float, float, float]]:
        return [(x.name, x.users, hours(x.seconds), hours(x.per_user), hours(x.median)) for x in uses]

    tables = [
        Table("applications", "Applications", USE_COLUMNS, rows(u.apps), "No application time in this period."),
        Table("sites", "Sites", USE_COLUMNS, rows(u.sites), "No site time in this period."),
    ]
    if u.reclaim is not None:
        r = u.reclaim
        title = "Licence reclaim"
        if r.people is None:
            tables.append(Table("reclaim", title, ("name", "people"), [(r.subject, r.count)]))
        else:
            tables.append(
                Table(
                    "reclaim",
                    title,
                    ("name", "team", "last used", "left"),
                    [(p.name, p.team, p.last_used.isoformat(), "yes" if p.left else "") for p in r.people],
                    "Nobody: everyone who used it used it recently.",
                )
            )
    description = u.filters.describe()
    if u.reclaim is not None:
        description += f"; licence reclaim: {u.reclaim.subject} not used since {u.reclaim.since:%d %b %Y}"
    return Report("software", "Software utilisation", description, tables)
