"""What endpoint agents enforce: USB device control, web filtering and app blocking, per team.

Each of the three policies has an organisation default (the row without a team, created by a
migration) and optional team rows; a team row governs that team and every team below it that
has no row of its own, exactly like `devices.AgentPolicy`. USB policies are versioned: every
saved change is a new `UsbPolicyVersion` whose id is the version number agents report back.

Also here: the shipped, editable web category lists, temporary USB access requests and each
device's secret for offline access codes. Every write goes through `controls.actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from glasshouse.core.roles import MONITORING_ROLES
from glasshouse.devices.models import Device
from glasshouse.org.models import Person, Team

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User


def _monitoring_user(user: User | AnonymousUser) -> bool:
    from glasshouse.access.roles import has_any_role

    return has_any_role(user, MONITORING_ROLES)


def _one_per_team(name: str) -> models.UniqueConstraint:
    # One row per team and exactly one default (a NULL team folds to 0, so it is unique too).
    return models.UniqueConstraint(Coalesce("team", models.Value(0)), name=name)


# --- USB -------------------------------------------------------------------------------------


class UsbClass(models.TextChoices):
    STORAGE = "storage", "Mass storage (sticks, disks)"
    MTP = "mtp", "Phones and cameras (MTP/PTP)"
    PRINTER = "printer", "Printers"
    NETWORK = "network", "Network adapters"
    HID = "hid", "Keyboards and mice (HID)"
    OTHER = "other", "Everything else"


class Verdict(models.TextChoices):
    ALLOW = "allow", "Allow"
    READ_ONLY = "read_only", "Read-only"
    BLOCK = "block", "Block"


def _verdict_field() -> models.CharField[str, str]:
    return models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.ALLOW)


class UsbPolicy(models.Model):
    """Per device class a verdict, the allow list (`entries`) and the removable-media file
    tracking switch. `version` is the id of the `UsbPolicyVersion` written by the last change."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    version = models.PositiveBigIntegerField(default=0)
    storage = _verdict_field()
    mtp = _verdict_field()
    printer = _verdict_field()
    network = _verdict_field()
    hid = _verdict_field()
    other = _verdict_field()
    block_unknown_keyboards = models.BooleanField(default=False)
    # Sent as removable.track_files: record every file written to removable media.
    track_files = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__name"]
        constraints = [_one_per_team("usb_policy_one_per_team")]

    def __str__(self) -> str:
        return f"USB policy for {self.team}" if self.team else "Organisation default USB policy"

    def classes(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in UsbClass.values}


class UsbAllowEntry(models.Model):
    policy = models.ForeignKey(UsbPolicy, on_delete=models.CASCADE, related_name="entries")
    vid = models.CharField(max_length=4)
    pid = models.CharField(max_length=4)
    # Empty: any serial of this model.
    serial = models.CharField(max_length=256, blank=True)
    label = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["vid", "pid", "serial"]
        constraints = [models.UniqueConstraint(fields=["policy", "vid", "pid", "serial"], name="usb_allow_once")]

    def __str__(self) -> str:
        return f"{self.vid}:{self.pid}{':' + self.serial if self.serial else ''}"


class UsbPolicyVersion(models.Model):
    """One saved state of one scope's USB policy; `id` is its version number, so a version an
    agent reports names exactly one snapshot, organisation-wide. Kept when the team's policy
    is removed."""

    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    scope = models.CharField(max_length=160)
    snapshot: models.JSONField[Any, Any] = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    actor_label = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"USB policy version {self.pk} ({self.scope})"


# --- web -------------------------------------------------------------------------------------


class WebPolicy(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    # Browser spans may carry the full URL and tab title; otherwise the domain only.
    full_urls = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__name"]
        constraints = [_one_per_team("web_policy_one_per_team")]

    def __str__(self) -> str:
        return f"Web policy for {self.team}" if self.team else "Organisation default web policy"


class RuleAction(models.TextChoices):
    BLOCK = "block", "Block"
    ALLOW = "allow", "Allow"


class RuleKind(models.TextChoices):
    DOMAIN = "domain", "Domain (and its subdomains)"
    URL = "url", "URL prefix"
    CATEGORY = "category", "Category"


class WebRule(models.Model):
    """One block/allow rule. Without days the rule is always in force; with them it holds on
    those days from `start` to `end` in the person's own time zone (never overnight)."""

    policy = models.ForeignKey(WebPolicy, on_delete=models.CASCADE, related_name="rules")
    action = models.CharField(max_length=8, choices=RuleAction.choices)
    kind = models.CharField(max_length=8, choices=RuleKind.choices)
    value = models.CharField(max_length=1024)
    # Comma-separated weekday keys (mon..sun), empty = always.
    days = models.CharField(max_length=27, blank=True)
    start = models.TimeField(null=True, blank=True)
    end = models.TimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.value}"

    @property
    def days_list(self) -> list[str]:
        return [d for d in self.days.split(",") if d]


class WebCategory(models.Model):
    """A named list of domains that rules can block or allow as a whole. The product ships a
    list (data/categories.csv, loaded by a migration); IT edits it."""

    name = models.SlugField(max_length=40, unique=True)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CategoryDomain(models.Model):
    category = models.ForeignKey(WebCategory, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253)

    class Meta:
        ordering = ["domain"]
        constraints = [models.UniqueConstraint(fields=["category", "domain"], name="category_domain_once")]

    def __str__(self) -> str:
        return f"{self.domain} ({self.category_id})"


# --- apps ------------------------------------------------------------------------------------


class AppPolicy(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__name"]
        constraints = [_one_per_team("app_policy_one_per_team")]

    def __str__(self) -> str:
        return f"App policy for {self.team}" if self.team else "Organisation default app policy"


class AppBlockEntry(models.Model):
    policy = models.ForeignKey(AppPolicy, on_delete=models.CASCADE, related_name="entries")
    # The process name (/proc/PID/comm or the executable's file name).
    name = models.CharField(max_length=255)
    # When not empty, the full executable path must match too.
    path = models.CharField(max_length=1024, blank=True)

    class Meta:
        ordering = ["name", "path"]
        constraints = [models.UniqueConstraint(fields=["policy", "name", "path"], name="app_block_once")]

    def __str__(self) -> str:
        return f"{self.name} {self.path}".strip()


# --- temporary access and offline codes ------------------------------------------------------


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class UsbAccessRequestQuerySet(models.QuerySet["UsbAccessRequest"]):
    def for_user(self, user: User | AnonymousUser) -> UsbAccessRequestQuerySet:
        return self.all() if _monitoring_user(user) else self.none()

    def in_force(self, now: Any = None) -> UsbAccessRequestQuerySet:
        return self.filter(status=RequestStatus.APPROVED, until__gt=now or timezone.now())


class UsbAccessRequest(models.Model):
    """A user's request, made through the agent, to use one USB device for a while."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    # The device's person when the request was made (devices can be reassigned later).
    person = models.ForeignKey(Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    vid = models.CharField(max_length=4)
    pid = models.CharField(max_length=4)
    serial = models.CharField(max_length=256, blank=True)
    vendor = models.CharField(max_length=256, blank=True)
    product = models.CharField(max_length=256, blank=True)
    reason = models.CharField(max_length=500)
    minutes = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    note = models.CharField(max_length=500, blank=True)
    until = models.DateTimeField(null=True, blank=True)

    objects = UsbAccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["device", "status", "until"], name="usb_request_device_status")]

    def __str__(self) -> str:
        return f"USB request {self.pk} {self.vid}:{self.pid} ({self.status})"


class OfflineKey(models.Model):
    """The per-device secret behind offline access codes (base32, 32 characters). Kept in the
    clear because the server computes codes with it; it is sent only to its own device."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, primary_key=True, related_name="+")
    key = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Offline key for {self.device_id}"
