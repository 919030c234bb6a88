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


class Frequency(models.TextChoices):
    """How often a scheduled report is sent; each mail covers one whole UTC period (see
    `reports.scheduled`)."""

    DAILY = "daily", "Daily (yesterday)"
    WEEKLY = "weekly", "Weekly (last Monday to Sunday)"
    MONTHLY = "monthly", "Monthly (last calendar month)"


class ReportSchedule(models.Model):
    """A report e-mailed every day, week or month to a list of addresses, with the PDF and CSV
    attached. `report` names an entry of `reports.scheduled.REPORTS`; `filters` holds that
    report's filters except the dates, which come from the period being sent."""

    report = models.CharField(max_length=40)
    filters = models.JSONField(default=dict, blank=True)
    frequency = models.CharField(max_length=8, choices=Frequency.choices)
    # One address per line.
    recipients = models.TextField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # When the next period (the one ending just before it, see `scheduled.period_for`) is due.
    next_run_at = models.DateTimeField(db_index=True)
    # Set after a failed send: not tried again before this time.
    retry_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.report} ({self.get_frequency_display()})"

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.splitlines() if line.strip()]


class SentReport(models.Model):
    """One period of one schedule that has been sent; the unique constraint is what keeps a
    period from being sent twice (two workers, a retried pass)."""

    schedule = models.ForeignKey(ReportSchedule, on_delete=models.CASCADE, related_name="sent")
    first_day = models.DateField()
    last_day = models.DateField()
    sent_at = models.DateTimeField(default=timezone.now)
    recipients = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "first_day"], name="sent_report_period_once")]
        ordering = ["-first_day"]

    def __str__(self) -> str:
        return f"{self.schedule} {self.first_day}..{self.last_day}"
