"""Endpoint devices, the one-time tokens that enrol them, and the agent policy they pull.

Secrets (enrolment tokens, device keys) are stored only as SHA-256 hashes: they are long random
strings, so a fast hash is enough and a stolen database does not let anyone pose as a device.
Every write goes through `devices.actions`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from glasshouse.core.roles import MONITORING_ROLES
from glasshouse.org.models import Person, Team

if TYPE_CHECKING:
    import datetime as dt

    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

# A device that has not called in for this long is shown as silent (a tamper or outage signal).
SILENT_AFTER_SECONDS = 15 * 60


def _monitoring_user(user: User | AnonymousUser) -> bool:
    from glasshouse.access.roles import has_any_role

    return has_any_role(user, MONITORING_ROLES)


class EnrollmentTokenQuerySet(models.QuerySet["EnrollmentToken"]):
    def for_user(self, user: User | AnonymousUser) -> EnrollmentTokenQuerySet:
        return self.all() if _monitoring_user(user) else self.none()


class EnrollmentToken(models.Model):
    label = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the token, so IT can tell tokens apart without the secret.
    prefix = models.CharField(max_length=12)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Devices enrolled with this token belong to this person (e.g. a token made for one laptop).
    person = models.ForeignKey(Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    objects = EnrollmentTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(uses__lte=models.F("max_uses")), name="token_uses")]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"

    def refusal(self, now: dt.datetime | None = None) -> str | None:
        """Why this token cannot enrol a device now, or None if it can."""
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "This enrolment token was revoked."
        if self.expires_at <= now:
            return "This enrolment token has expired."
        if self.uses >= self.max_uses:
            return "This enrolment token has been used up."
        return None

    @property
    def status(self) -> str:
        return self.refusal() or "Usable"


class DeviceOS(models.TextChoices):
    LINUX = "linux", "Linux"
    WINDOWS = "windows", "Windows"
    MACOS = "macos", "macOS"


class DeviceQuerySet(models.QuerySet["Device"]):
    def for_user(self, user: User | AnonymousUser) -> DeviceQuerySet:
        return self.all() if _monitoring_user(user) else self.none()

    def active(self) -> DeviceQuerySet:
        return self.filter(revoked_at__isnull=True)


class Device(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_hash = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255)
    os = models.CharField(max_length=16, choices=DeviceOS.choices)
    agent_version = models.CharField(max_length=32)
    # The OS login of the primary user, as the agent reported it at enrolment.
    username = models.CharField(max_length=150, blank=True)
    person = models.ForeignKey(Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices")
    token = models.ForeignKey(EnrollmentToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices")
    enrolled_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The sequence number of the batch stored last (it restarts at 1 when an agent's spool is
    # lost); shown to IT. Idempotency itself is the unique (device, spool_id, seq) of IngestBatch.
    last_batch_seq = models.BigIntegerField(default=0)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["hostname", "enrolled_at"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.last_seen_at is None or (timezone.now() - self.last_seen_at).total_seconds() > SILENT_AFTER_SECONDS:
            return "silent"
        return "online"


class ScheduleMode(models.TextChoices):
    ALWAYS = "always", "Always"
    WORKING_HOURS = "working_hours", "Working hours only"


class AgentPolicy(models.Model):
    """What agents collect. The row without a team is the organisation default; a team row
    applies to the team and every team below it that has no row of its own."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    collect_window = models.BooleanField(default=True)
    collect_titles = models.BooleanField(default=False)
    collect_idle = models.BooleanField(default=True)
    collect_sessions = models.BooleanField(default=True)
    collect_browser = models.BooleanField(default=False)
    idle_threshold_seconds = models.PositiveIntegerField(default=300)
    pulse_seconds = models.PositiveIntegerField(default=5)
    schedule_mode = models.CharField(max_length=16, choices=ScheduleMode.choices, default=ScheduleMode.ALWAYS)
    max_batch_spans = models.PositiveIntegerField(default=1000)
    max_batch_seconds = models.PositiveIntegerField(default=30)
    spool_max_rows = models.PositiveIntegerField(default=500_000)
    spool_max_age_days = models.PositiveIntegerField(default=14)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__name"]
        constraints = [
            # One row per team and exactly one default (NULL team folds to 0, so it is unique too).
            models.UniqueConstraint(Coalesce("team", models.Value(0)), name="agent_policy_one_per_team"),
        ]

    def __str__(self) -> str:
        return f"Policy for {self.team}" if self.team else "Organisation default policy"
