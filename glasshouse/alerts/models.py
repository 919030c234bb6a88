"""Alert rules IT keeps, the alerts the worker raises from them, their comments and deliveries,
and the worker's bookkeeping of which ingested batches it has already evaluated.

Alerts name a person or a device: they are IT/security data, visible only to the monitoring
roles (`for_user`). Every write goes through `alerts.actions` (people) or `alerts.evaluate`
and `alerts.delivery` (the worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from glasshouse.activity.models import Category
from glasshouse.core.roles import MONITORING_ROLES

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User


def _monitoring_user(user: User | AnonymousUser) -> bool:
    from glasshouse.access.roles import has_any_role

    return has_any_role(user, MONITORING_ROLES)


class RuleKind(models.TextChoices):
    TIME_CATEGORY = "time_category", "Time in a category above a threshold"
    TIME_SITE = "time_site", "Time on listed sites above a threshold"
    SITE_VISIT = "site_visit", "Visit to a blocked or listed site"
    USB = "usb", "USB device inserted or blocked"
    FILE_COPY = "file_copy", "File copied to removable media above a size"
    AGENT_SILENT = "agent_silent", "Agent silent or stopped"
    IDLE = "idle", "Idle beyond a threshold during working hours"


# Kinds whose `minutes` is required (a threshold or a grace period).
MINUTE_KINDS = frozenset({RuleKind.TIME_CATEGORY, RuleKind.TIME_SITE, RuleKind.AGENT_SILENT, RuleKind.IDLE})


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Schedule(models.TextChoices):
    ALWAYS = "always", "Always"
    WORKING_HOURS = "working_hours", "During the person's working hours"


class UsageSource(models.TextChoices):
    APPS = "apps", "Applications"
    SITES = "sites", "Web sites"


class RuleQuerySet(models.QuerySet["Rule"]):
    def for_user(self, user: User | AnonymousUser) -> RuleQuerySet:
        return self.all() if _monitoring_user(user) else self.none()


class Rule(models.Model):
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=RuleKind.choices)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    schedule = models.CharField(max_length=16, choices=Schedule.choices, default=Schedule.ALWAYS)
    # No team: the whole organisation. A team covers its members (a person's current team).
    team = models.ForeignKey("org.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # Threshold (time, idle) or grace period (agent silent/stopped), in minutes.
    minutes = models.PositiveIntegerField(null=True, blank=True)
    category = models.SmallIntegerField(choices=Category.choices, null=True, blank=True)
    usage_source = models.CharField(max_length=8, choices=UsageSource.choices, default=UsageSource.SITES)
    # Listed domains, one per line; a domain covers its subdomains.
    domains = models.TextField(blank=True)
    # site_visit: also (or, with no domains, only) sites the agent blocked.
    include_blocked = models.BooleanField(default=True)
    # usb: only devices the agent blocked (otherwise every insertion).
    usb_blocked_only = models.BooleanField(default=False)
    min_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # Recipients: e-mail addresses, one per line, and/or a webhook.
    emails = models.TextField(blank=True)
    webhook_url = models.URLField(max_length=500, blank=True)
    # Needed in clear to sign each request; shown to nobody after it is set.
    webhook_secret = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RuleQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def domain_list(self) -> list[str]:
        return [d.strip().lower() for d in self.domains.replace(",", "\n").splitlines() if d.strip()]

    @property
    def email_list(self) -> list[str]:
        return [e.strip() for e in self.emails.replace(",", "\n").splitlines() if e.strip()]


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"


class AlertQuerySet(models.QuerySet["Alert"]):
    def for_user(self, user: User | AnonymousUser) -> AlertQuerySet:
        return self.all() if _monitoring_user(user) else self.none()


class Alert(models.Model):
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, related_name="alerts")
    # Copied from the rule so that an alert still reads right after its rule changes or goes.
    rule_name = models.CharField(max_length=120)
    kind = models.CharField(max_length=20, choices=RuleKind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    # "<rule id>:<cause>": the same cause never raises a second alert for the same rule.
    dedupe_key = models.CharField(max_length=255, unique=True)
    person = models.ForeignKey("org.Person", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    device = models.ForeignKey("devices.Device", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    summary = models.CharField(max_length=500)
    details: models.JSONField[Any, Any] = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "severity", "created_at"], name="alert_inbox")]

    def __str__(self) -> str:
        return f"{self.get_severity_display()}: {self.summary}"


class AlertComment(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    body = models.TextField(max_length=4000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.body[:80]


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Gave up"


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    def for_user(self, user: User | AnonymousUser) -> DeliveryQuerySet:
        return self.all() if _monitoring_user(user) else self.none()


class Delivery(models.Model):
    """One alert to one channel: the e-mail to the rule's addresses, or the webhook call. The
    worker sends it, and on failure retries with exponential backoff until it gives up."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    # Addresses (comma-separated) or the webhook URL, as they were when the alert was raised.
    target = models.CharField(max_length=1000)
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="alert_delivery_due")
        ]

    def __str__(self) -> str:
        return f"{self.channel} for alert {self.alert_id}: {self.status}"


class EvaluatedBatch(models.Model):
    """An ingested batch whose events and spans the alert rules have seen. Batches above
    `EvaluationState.floor` without a row here are pending (see `alerts.evaluate`)."""

    batch_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"evaluated batch {self.batch_id}"


class EvaluationState(models.Model):
    """One row: every batch with an id at or below `floor` has been evaluated (or predates alerts)."""

    floor = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"alerts evaluated up to batch {self.floor}"


class AgentStop(models.Model):
    """An `agent-stop` session event seen in a batch, until a later `agent-start` from the same
    device arrives. One still open after a rule's grace period is a tamper signal."""

    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="+")
    person = models.ForeignKey("org.Person", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    stopped_at = models.DateTimeField()
    resumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "stopped_at"], name="agent_stop_once")]

    def __str__(self) -> str:
        return f"agent stop on {self.device_id} at {self.stopped_at}"


# The fields of a rule IT edits (the form's fields; what its audit rows compare).
RULE_FIELDS = (
    "name",
    "kind",
    "enabled",
    "severity",
    "schedule",
    "team",
    "minutes",
    "category",
    "usage_source",
    "domains",
    "include_blocked",
    "usb_blocked_only",
    "min_bytes",
    "emails",
    "webhook_url",
)
