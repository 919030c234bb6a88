"""Stored activity: interned strings, ingested batches, spans and the rollups the worker keeps.

Spans are written only by an event sink (`activity.sinks`) in bulk, never one ORM object at a
time; rollups only by the worker (`activity.rollups`). Reports read rollups, not spans.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class InternedString(models.Model):
    """An app name, executable, window title, domain or user name, stored once.

    `digest` (blake2b-128 of the value) is the unique key: long titles would not fit a btree
    index, and a fixed-width key keeps the lookup cheap on both databases.
    """

    digest = models.CharField(max_length=32, unique=True)
    value = models.TextField()

    def __str__(self) -> str:
        return self.value[:80]


class IngestBatch(models.Model):
    """One accepted agent batch. The unique (device, spool_id, seq) makes retries idempotent (a
    spool lost with its disk restarts seq at 1 under a new spool_id, so its batches are new) and
    the id is the ingest order the worker follows; `rolled_up` marks batches the rollups already
    counted."""

    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="batches")
    # The agent spool's random identity (32 hex digits); "" for agents from before spool ids.
    spool_id = models.CharField(max_length=32, default="", blank=True)
    seq = models.BigIntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    span_count = models.PositiveIntegerField(default=0)
    # Periods the agent could not keep (spool caps), shown as visible gaps: [{start, end, reason, dropped}].
    gaps: models.JSONField[Any, Any] = models.JSONField(default=list, blank=True)
    rolled_up = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "spool_id", "seq"], name="ingest_batch_once")]
        indexes = [models.Index(fields=["id"], condition=models.Q(rolled_up=False), name="ingest_batch_pending")]

    def __str__(self) -> str:
        return f"batch {self.seq} of {self.device_id}"


class SpanKind(models.IntegerChoices):
    WINDOW = 1, "window"
    IDLE = 2, "idle"
    SESSION = 3, "session"
    BROWSER = 4, "browser"


class Span(models.Model):
    """A closed interval of one state on one device.

    Foreign keys carry no database constraint: the sink writes strings, batch and spans in one
    transaction, and unconstrained columns keep bulk COPY fast (and let retention drop old rows
    without cascading checks).
    """

    batch = models.ForeignKey(IngestBatch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    device = models.ForeignKey(
        "devices.Device", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    person = models.ForeignKey(
        "org.Person", on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    kind = models.SmallIntegerField(choices=SpanKind.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    app = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    exe = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    title = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    domain = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    # The OS user of a session event.
    user = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    # A browser tab's full URL, kept only where the team's web policy allows full URLs.
    url = models.ForeignKey(
        InternedString, on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    pid = models.IntegerField(null=True)
    # "idle"/"active" for idle spans, the event (login, logout, lock, unlock) for session spans.
    state = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [models.Index(fields=["person", "start"], name="span_person_start")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.start:%Y-%m-%d %H:%M:%S}"


class EventKind(models.IntegerChoices):
    USB = 1, "USB device"
    FILE = 2, "file written to removable media"
    APP_BLOCK = 3, "blocked application"
    WEB_BLOCK = 4, "blocked site"


class DeviceEvent(models.Model):
    """A point event an agent reported (docs/agent-protocol.md, "Events in batches"): a USB
    device inserted, blocked or allowed, a file written to removable media, an application or
    site blocked. Written by the event sink with its batch; `data` holds the event's fields as
    validated by the ingest schema (without kind and time)."""

    batch = models.ForeignKey(IngestBatch, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    device = models.ForeignKey(
        "devices.Device", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    person = models.ForeignKey(
        "org.Person", on_delete=models.DO_NOTHING, db_constraint=False, null=True, db_index=False, related_name="+"
    )
    kind = models.SmallIntegerField(choices=EventKind.choices)
    time = models.DateTimeField()
    data: models.JSONField[Any, Any] = models.JSONField(default=dict)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "time"], name="device_event_kind_time"),
            models.Index(fields=["device", "time"], name="device_event_device_time"),
            models.Index(fields=["person", "time"], name="device_event_person_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.time:%Y-%m-%d %H:%M:%S}"


class UsageKind(models.IntegerChoices):
    """What a rollup row measures: focus per application (window spans), time per web site
    (browser spans, by domain) or time idle/active (idle spans, subject "idle" or "active")."""

    APP = 1, "application"
    SITE = 2, "site"
    STATE = 3, "idle/active"


class Category(models.IntegerChoices):
    UNCATEGORISED = 0, "uncategorised"
    PRODUCTIVE = 1, "productive"
    NEUTRAL = 2, "neutral"
    UNPRODUCTIVE = 3, "unproductive"


class Classification(models.Model):
    """The category one application or site resolves to: for the organisation (no team) and,
    where a team's own rules resolve it differently, for that team. Rollup rows carry the
    category their subject had for the person's team when they were written;
    `activity.rollups.reclassify` rewrites them when a classification changes, so reports never
    join this table. The rules that decide these rows live in `reports` (classification rules)."""

    kind = models.SmallIntegerField(choices=UsageKind.choices)
    subject = models.ForeignKey(InternedString, on_delete=models.PROTECT, related_name="+")
    category = models.SmallIntegerField(choices=Category.choices)
    team = models.ForeignKey("org.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"], condition=models.Q(team__isnull=True), name="classification_once"
            ),
            models.UniqueConstraint(
                fields=["kind", "subject", "team"],
                condition=models.Q(team__isnull=False),
                name="classification_team_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.subject_id}: {self.get_category_display()}"


class Usage(models.Model):
    """Seconds per person and subject (an application, a site, or idle/active) in one period
    (the subclass's key), with the subject's category."""

    person = models.ForeignKey("org.Person", on_delete=models.CASCADE, related_name="+")
    kind = models.SmallIntegerField(choices=UsageKind.choices)
    subject = models.ForeignKey(InternedString, on_delete=models.PROTECT, related_name="+")
    category = models.SmallIntegerField(choices=Category.choices, default=Category.UNCATEGORISED)
    seconds = models.FloatField(default=0)
    # Spans counted, each once, in the period it starts in.
    spans = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class HourlyUsage(Usage):
    """Per UTC hour."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["person", "hour", "kind", "subject"], name="hourly_usage_key"),
        ]

    def __str__(self) -> str:
        return f"{self.person_id} {self.hour:%Y-%m-%d %H}h {self.seconds:.0f}s"


class DailyUsage(Usage):
    """Per local day, in the person's own time zone."""

    day = models.DateField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["person", "day", "kind", "subject"], name="daily_usage_key")]
        indexes = [models.Index(fields=["day", "kind"], name="daily_usage_day")]

    def __str__(self) -> str:
        return f"{self.person_id} {self.day} {self.seconds:.0f}s"


class TeamDailyUsage(models.Model):
    """Per team and members' local day: the sum of its members' `DailyUsage` rows and how many
    members had time on the subject. Rebuilt for each (team, day) the worker touches (a count
    of people is not additive), from the team each person is in at that time. Team and
    organisation reports read this table: tens of rows per team-day instead of one per person."""

    team = models.ForeignKey("org.Team", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    kind = models.SmallIntegerField(choices=UsageKind.choices)
    subject = models.ForeignKey(InternedString, on_delete=models.PROTECT, related_name="+")
    category = models.SmallIntegerField(choices=Category.choices, default=Category.UNCATEGORISED)
    seconds = models.FloatField(default=0)
    people = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "day", "kind", "subject"], name="team_daily_usage_key")]
        indexes = [models.Index(fields=["day", "kind"], name="team_daily_usage_day")]

    def __str__(self) -> str:
        return f"team {self.team_id} {self.day} {self.seconds:.0f}s"
