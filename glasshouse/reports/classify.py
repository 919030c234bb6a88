"""Classification rules resolved to categories, and the rollups kept in step with them.

Precedence, most specific first (the rules page explains the same order):
1. The team's own rules, then its parent team's, up the tree; then the organisation default.
   The first scope with a matching rule decides: a team override always beats the default.
2. Within one scope, exact rules (an application's name, a domain with its subdomains) before
   patterns.
3. Among exact domain rules, the longest domain (mail.example.com before example.com); among
   patterns, the longest pattern; then the older rule.
No matching rule: uncategorised.

What a subject resolves to is materialised as `activity.Classification` rows (one for the
organisation, one per team that resolves it differently), and the rollup rows carry it. A rule
change re-resolves every known subject the old or new rule matches and, where the result
changed, rewrites its rollup rows through `activity.rollups.reclassify`. Subjects the rollups
meet for the first time are resolved by `resolve_new_subjects` before their rows are written.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from glasshouse.activity.models import Category, Classification, InternedString, UsageKind
from glasshouse.activity.rollups import reclassify
from glasshouse.org.models import Team
from glasshouse.reports.models import PATTERN_KINDS, USAGE_KIND_OF, ClassificationRule, MatchKind

Resolved = tuple[int, dict[int, int]]  # (organisation category, {team: category where it differs})


@dataclass(frozen=True)
class Rule:
    pk: int
    team_id: int | None
    match: MatchKind
    value: str
    category: int

    @property
    def kind(self) -> UsageKind:
        return USAGE_KIND_OF[self.match]

    def matches(self, subject: str) -> bool:
        """`subject` lower-cased."""
        if self.match in PATTERN_KINDS:
            return fnmatch.fnmatchcase(subject, self.value)
        if self.match == MatchKind.DOMAIN:
            return subject == self.value or subject.endswith("." + self.value)
        return subject == self.value


def rule_order(rule: Rule) -> tuple[int, int, int]:
    """Sort key within one scope: exact before pattern, longer before shorter, older first."""
    return (1 if rule.match in PATTERN_KINDS else 0, -len(rule.value), rule.pk)


@dataclass
class RuleBook:
    """Every rule and the team tree, read in two queries, for resolving many subjects."""

    rules: list[Rule]
    parents: dict[int, int | None]
    by_scope: dict[tuple[int | None, int], list[Rule]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grouped: dict[tuple[int | None, int], list[Rule]] = defaultdict(list)
        for rule in self.rules:
            grouped[(rule.team_id, rule.kind)].append(rule)
        self.by_scope = {key: sorted(rules, key=rule_order) for key, rules in grouped.items()}

    @classmethod
    def load(cls) -> RuleBook:
        rules = [
            Rule(pk, team_id, MatchKind(match), value, category)
            for pk, team_id, match, value, category in ClassificationRule.objects.values_list(
                "pk", "team_id", "match", "value", "category"
            )
        ]
        return cls(rules, dict(Team.objects.values_list("pk", "parent_id")))

    def chain(self, team_id: int | None) -> list[int | None]:
        """The team, its ancestors nearest first, then None (the organisation)."""
        out: list[int | None] = []
        node = team_id
        while node is not None and node not in out:
            out.append(node)
            node = self.parents.get(node)
        out.append(None)
        return out

    def decide(self, kind: int, subject: str, team_id: int | None = None) -> Rule | None:
        """The rule that decides `subject` for a member of `team_id` (None: the organisation)."""
        subject = subject.lower()
        for scope in self.chain(team_id):
            for rule in self.by_scope.get((scope, kind), ()):
                if rule.matches(subject):
                    return rule
        return None

    def category(self, kind: int, subject: str, team_id: int | None = None) -> int:
        rule = self.decide(kind, subject, team_id)
        return int(Category.UNCATEGORISED) if rule is None else rule.category

    def resolve(self, kind: int, subject: str) -> Resolved:
        org = self.category(kind, subject)
        scoped = {team for team, k in self.by_scope if team is not None and k == kind}
        teams: dict[int, int] = {}
        if scoped:
            for team_id in self.parents:
                if scoped.intersection(self.chain(team_id)):
                    c = self.category(kind, subject, team_id)
                    if c != org:
                        teams[team_id] = c
        return org, teams


def _current(kinds: Iterable[int]) -> dict[tuple[int, int], tuple[str, Resolved]]:
    """{(kind, subject id): (subject value, what is stored now)} for every known subject."""
    out: dict[tuple[int, int], tuple[str, Resolved]] = {}
    rows = Classification.objects.filter(kind__in=list(kinds)).values_list(
        "kind", "subject_id", "subject__value", "team_id", "category"
    )
    for kind, subject_id, value, team_id, category in rows:
        _, (_, teams) = out.setdefault((kind, subject_id), (value, (int(Category.UNCATEGORISED), {})))
        if team_id is None:
            out[(kind, subject_id)] = (value, (category, teams))
        else:
            teams[team_id] = category
    return out


def recompute(touched: Iterable[tuple[str, str]]) -> int:
    """Re-resolve every known subject that one of the (match, value) rule definitions matches
    (pass both the old and the new form of a changed rule) and rewrite the rollups of those
    whose categories changed. Returns how many subjects changed."""
    probes = [Rule(0, None, MatchKind(m), v, 0) for m, v in touched]
    if not probes:
        return 0
    book = RuleBook.load()
    changed = 0
    for (kind, subject_id), (value, stored) in _current({p.kind for p in probes}).items():
        lowered = value.lower()
        if not any(p.kind == kind and p.matches(lowered) for p in probes):
            continue
        org, teams = book.resolve(kind, value)
        if (org, teams) != (stored[0], stored[1]):
            reclassify(kind, subject_id, org, teams)
            changed += 1
    return changed


def resolve_new_subjects(pairs: set[tuple[int, int]]) -> None:
    """Registered with the rollups: classify applications and sites met for the first time.
    Every pair gets an organisation row (uncategorised when no rule matches), so it is
    resolved once; nothing is rolled up for them yet, so no rollup row needs rewriting."""
    book = RuleBook.load()
    values = dict(InternedString.objects.filter(pk__in={s for _, s in pairs}).values_list("pk", "value"))
    rows: list[Classification] = []
    for kind, subject_id in pairs:
        if subject_id not in values:
            continue
        org, teams = book.resolve(kind, values[subject_id])
        rows.append(Classification(kind=kind, subject_id=subject_id, category=org))
        rows.extend(Classification(kind=kind, subject_id=subject_id, category=c, team_id=t) for t, c in teams.items())
    # Another worker may resolve the same new subject at the same moment: its rows are equal.
    Classification.objects.bulk_create(rows, ignore_conflicts=True)
