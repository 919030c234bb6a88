"""Every change to classification rules. Each `do_*` validates first (`check_rule`), then
writes the rule, its audit row and the recomputed rollups in one transaction, so a refused
change leaves the rules and every report as they were."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from glasshouse.activity.models import InternedString, UsageKind
from glasshouse.audit.actions import record
from glasshouse.org.models import Team
from glasshouse.reports.classify import recompute
from glasshouse.reports.models import PATTERN_KINDS, RULE_CATEGORIES, ClassificationRule, MatchKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser | None

MAX_VALUE = 255
_WILDCARDS = re.compile(r"[*?\[]")
_DOMAIN_PATTERN = re.compile(r"^[a-z0-9*?\[\]!.-]+$")
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")


def check_rule(match: str, value: str, category: int) -> tuple[MatchKind, str, int]:
    """The rule's fields as stored (value lower-cased and trimmed), or ValidationError naming
    the field."""
    if match not in MatchKind.values:
        raise ValidationError({"match": "Choose what the rule matches."})
    kind = MatchKind(match)
    if category not in {c for c, _ in RULE_CATEGORIES}:
        raise ValidationError({"category": "Choose productive, neutral or unproductive."})
    value = value.strip().lower()
    if not value:
        raise ValidationError({"value": "Enter a name, domain or pattern."})
    if len(value) > MAX_VALUE:
        raise ValidationError({"value": f"At most {MAX_VALUE} characters."})
    wild = bool(_WILDCARDS.search(value))
    if kind in PATTERN_KINDS and not wild:
        raise ValidationError({"value": "A pattern needs a wildcard (* or ?); for one name choose an exact rule."})
    if kind == MatchKind.DOMAIN and not _DOMAIN.match(value):
        raise ValidationError({"value": "Enter a bare domain such as example.com (no https://, path or spaces)."})
    if kind == MatchKind.DOMAIN_PATTERN and not _DOMAIN_PATTERN.match(value):
        raise ValidationError({"value": "A domain pattern such as *.example.com (no https://, path or spaces)."})
    return kind, value, category


def _snapshot(rule: ClassificationRule) -> dict[str, object]:
    return {
        "scope": rule.team.name if rule.team is not None else "organisation",
        "match": rule.match,
        "value": rule.value,
        "category": rule.get_category_display(),
    }


def do_add_rule(
    actor: Actor, team: Team | None, match: str, value: str, category: int, *, request: HttpRequest | None = None
) -> ClassificationRule:
    kind, value, category = check_rule(match, value, category)
    with transaction.atomic():
        if ClassificationRule.objects.filter(team=team, match=kind, value=value).exists():
            raise ValidationError({"value": "This scope already has that rule; change its category in the list."})
        rule = ClassificationRule.objects.create(
            team=team, match=kind, value=value, category=category, created_by=_user(actor)
        )
        changed = recompute([(kind, value)])
        record(
            actor=actor,
            action="reports.rule.create",
            target=rule,
            target_label=str(rule),
            after={**_snapshot(rule), "subjects_reclassified": changed},
            request=request,
        )
    return rule


def do_change_rule(
    actor: Actor, rule: ClassificationRule, category: int, *, request: HttpRequest | None = None
) -> ClassificationRule:
    check_rule(rule.match, rule.value, category)
    with transaction.atomic():
        rule = ClassificationRule.objects.select_for_update().get(pk=rule.pk)
        before = _snapshot(rule)
        if rule.category == category:
            return rule
        rule.category = category
        rule.save(update_fields=["category"])
        changed = recompute([(rule.match, rule.value)])
        record(
            actor=actor,
            action="reports.rule.update",
            target=rule,
            target_label=str(rule),
            before={"category": before["category"]},
            after={"category": rule.get_category_display(), "subjects_reclassified": changed},
            request=request,
        )
    return rule


def do_remove_rule(actor: Actor, rule: ClassificationRule, *, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        before = _snapshot(rule)
        touched = (rule.match, rule.value)
        label = str(rule)
        rule.delete()
        changed = recompute([touched])
        record(
            actor=actor,
            action="reports.rule.delete",
            target_label=label,
            before=before,
            after={"subjects_reclassified": changed},
            request=request,
        )


def do_classify_subject(
    actor: Actor, kind: int, subject: InternedString, category: int, *, request: HttpRequest | None = None
) -> ClassificationRule:
    """The uncategorised queue's one click: an organisation-wide exact rule for the subject
    (or a new category for the one it already has)."""
    if kind not in (UsageKind.APP, UsageKind.SITE):
        raise ValidationError({"kind": "Only applications and sites are classified."})
    match = MatchKind.APP if kind == UsageKind.APP else MatchKind.DOMAIN
    existing = ClassificationRule.objects.filter(team=None, match=match, value=subject.value.strip().lower()).first()
    if existing is not None:
        return do_change_rule(actor, existing, category, request=request)
    return do_add_rule(actor, None, match, subject.value, category, request=request)


def _user(actor: Actor) -> User | None:
    from glasshouse.accounts.models import User

    return actor if isinstance(actor, User) else None
