"""Read-side helpers for pages and the API: the team tree with head counts, and everyone
below a manager. Each loads what it needs in one or two queries, so they stay fast with
10,000 people.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q

from glasshouse.org.models import Person, PersonQuerySet, PersonStatus, Team


@dataclass
class TeamNode:
    team: Team
    members: int
    children: list[TeamNode] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Members of this team and of every team below it."""
        return self.members + sum(child.total for child in self.children)


def team_tree() -> list[TeamNode]:
    """Top-level teams with their sub-teams nested, alphabetical, counting active members."""
    teams = Team.objects.annotate(n=Count("members", filter=~Q(members__status=PersonStatus.LEFT)))
    nodes = {team.pk: TeamNode(team, team.n) for team in teams}
    roots: list[TeamNode] = []
    for node in nodes.values():
        parent = nodes.get(node.team.parent_id) if node.team.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots


def reports_below(manager_id: int) -> list[tuple[int, int]]:
    """(person id, level) for everyone reporting to the manager directly (level 1) or through
    others, nearest first. One query for the whole reporting graph instead of one per level."""
    children: dict[int, list[int]] = defaultdict(list)
    for pk, boss in Person.objects.active().filter(manager__isnull=False).values_list("pk", "manager_id"):
        children[boss].append(pk)
    found: list[tuple[int, int]] = []
    seen = {manager_id}
    frontier = [manager_id]
    level = 0
    while frontier:
        level += 1
        frontier = [pk for boss in frontier for pk in children[boss] if pk not in seen]
        seen.update(frontier)
        found.extend((pk, level) for pk in frontier)
    return found


def with_report_counts(people: PersonQuerySet) -> PersonQuerySet:
    """Adds `report_count`: active direct reports, which the org chart shows and expands."""
    return people.annotate(report_count=Count("direct_reports", filter=~Q(direct_reports__status=PersonStatus.LEFT)))
