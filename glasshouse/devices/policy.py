"""The agent policy a device receives: its person's team policy, else the nearest ancestor
team's, else the organisation default; plus the person's working hours for the schedule.

The ETag is the SHA-256 of the canonical JSON, so any change that alters what the agent gets
(the policy, the person's team, zone or hours) changes the tag and nothing else does.

Every document also carries the device-control sections (`usb`, `removable`, `web`, `apps`)
built by `controls.document`. They are built only when the whole document or its ETag is
asked for: the ingest path reads just the collect switches and does not pay for them.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Any

from glasshouse.devices.models import AgentPolicy, Device
from glasshouse.org.models import Person, Team


class ResolvedPolicy:
    def __init__(self, base: dict[str, Any], person: Person | None, device: Device | None) -> None:
        self.base = base
        self.person = person
        self.device = device

    @cached_property
    def document(self) -> dict[str, Any]:
        from glasshouse.controls.document import control_sections

        return {**self.base, **control_sections(self.person, self.device)}

    @cached_property
    def etag(self) -> str:
        return etag_of(self.document)

    @property
    def titles(self) -> bool:
        return bool(self.base["collect"]["titles"])

    def collects(self, what: str) -> bool:
        return bool(self.base["collect"].get(what, False))


def policy_for_team(team: Team | None) -> AgentPolicy:
    """The row that governs `team`: its own, the nearest ancestor's, or the default."""
    chain: list[int] = []
    if team is not None:
        chain = [team.pk, *(t.pk for t in team.ancestors())]
    rows = {p.team_id: p for p in AgentPolicy.objects.filter(team_id__in=chain)} if chain else {}
    for team_id in chain:
        if team_id in rows:
            return rows[team_id]
    return default_policy()


def default_policy() -> AgentPolicy:
    # The migration creates the default row; an unsaved one with model defaults covers a
    # database where it was deleted by hand, so agents still get a safe, minimal policy.
    return AgentPolicy.objects.filter(team__isnull=True).first() or AgentPolicy()


def policy_document(policy: AgentPolicy, person: Person | None) -> dict[str, Any]:
    schedule: dict[str, Any] = {"mode": policy.schedule_mode}
    if person is not None:
        schedule.update(
            time_zone=person.time_zone,
            days=person.work_days_list,
            start=person.work_start.strftime("%H:%M"),
            end=person.work_end.strftime("%H:%M"),
        )
    else:
        schedule.update(time_zone="UTC", days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    return {
        "collect": {
            "window": policy.collect_window,
            # Titles come from the window collector; without it there is nothing to title.
            "titles": policy.collect_titles and policy.collect_window,
            "idle": policy.collect_idle,
            "sessions": policy.collect_sessions,
            "browser": policy.collect_browser,
        },
        "idle_threshold_seconds": policy.idle_threshold_seconds,
        "pulse_seconds": policy.pulse_seconds,
        "schedule": schedule,
        "upload": {"max_batch_spans": policy.max_batch_spans, "max_batch_seconds": policy.max_batch_seconds},
        "spool": {"max_rows": policy.spool_max_rows, "max_age_days": policy.spool_max_age_days},
    }


def etag_of(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_for_person(person: Person | None, device: Device | None = None) -> ResolvedPolicy:
    base = policy_document(policy_for_team(person.team if person else None), person)
    return ResolvedPolicy(base, person, device)


def resolve_for_device(device: Device) -> ResolvedPolicy:
    person = Person.objects.select_related("team").filter(pk=device.person_id).first() if device.person_id else None
    return resolve_for_person(person, device)
