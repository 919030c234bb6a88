"""Classification rules: which applications and sites count as productive, neutral or
unproductive, for the organisation (no team) and as overrides per team.

Rules are the source of truth; `activity.Classification` holds what they resolve to for each
subject the rollups have met, and the rollup rows carry that category. `reports.classify`
turns rules into those rows (docs/architecture.md, "Reports and classification").
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from glasshouse.activity.models import Category, UsageKind


class MatchKind(models.TextChoices):
    """What a rule compares, and how. The order of the choices is not the precedence; see
    `classify.rule_order`."""

    APP = "app", "Application name (exact)"
    APP_PATTERN = "app_pattern", "Application name pattern"
    DOMAIN = "domain", "Site domain (exact)"
    DOMAIN_PATTERN = "domain_pattern", "Site domain pattern"


PATTERN_KINDS = frozenset({MatchKind.APP_PATTERN, MatchKind.DOMAIN_PATTERN})
USAGE_KIND_OF = {
    MatchKind.APP: UsageKind.APP,
    MatchKind.APP_PATTERN: UsageKind.APP,
    MatchKind.DOMAIN: UsageKind.SITE,
    MatchKind.DOMAIN_PATTERN: UsageKind.SITE,
}
# A rule sets one of these; "uncategorised" is what no rule matching means.
RULE_CATEGORIES = [c for c in Category.choices if c[0] != Category.UNCATEGORISED]


class ClassificationRule(models.Model):
    team = models.ForeignKey("org.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    match = models.CharField(max_length=16, choices=MatchKind.choices)
    # Stored lower-case: matching ignores case (agents report "Slack" and "slack" alike).
    value = models.CharField(max_length=255)
    category = models.SmallIntegerField(choices=RULE_CATEGORIES)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["match", "value"], condition=models.Q(team__isnull=True), name="classification_rule_org_once"
            ),
            models.UniqueConstraint(
                fields=["team", "match", "value"],
                condition=models.Q(team__isnull=False),
                name="classification_rule_team_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_match_display()} {self.value}: {self.get_category_display()}"

    @property
    def usage_kind(self) -> UsageKind:
        return USAGE_KIND_OF[MatchKind(self.match)]

    @property
    def is_pattern(self) -> bool:
        return self.match in PATTERN_KINDS
