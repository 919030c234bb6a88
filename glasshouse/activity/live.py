"""The live view: how many people in each team are online, active, idle or offline right now,
and which agents have gone silent.

Privacy design: this page is for IT and security across the whole organisation, without a
purpose, so it shows **no names and no per-person state**: per-team counts only. Because a
count of one is a person, the active/idle split of a team is shown only when at least
`settings.LIVE_MIN_GROUP` of its people are online; smaller groups show "online" alone. Who
is online at all is device health the device inventory already shows (hostname, person,
last seen); silent agents are listed here by hostname for the same reason, as IT has to act
on them, but never with what their person was doing. One person's activity is seen only
through their timeline, behind the purpose gate.

Definitions (all "as of the last upload": agents send closed spans, up to one upload interval
late, and the server records a device's last call at most once a minute):
- online: the device's agent called in within ONLINE_WITHIN;
- active / idle: the state of the latest idle-kind span of an online person's devices, if it
  ended within STATE_FRESH (otherwise "unknown": idle collection off, or no one logged in);
- offline: the agent called in within SILENT_AFTER_SECONDS but not within ONLINE_WITHIN;
- silent: the agent has not called in for longer than SILENT_AFTER_SECONDS (as the device
  inventory says), or never did: flagged, a tamper or outage signal.
A person with several devices counts once, by their most present device.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from glasshouse.activity.models import Span, SpanKind
from glasshouse.devices.models import SILENT_AFTER_SECONDS, Device
from glasshouse.org.models import Person

# Two default upload intervals (30 s) plus the minute resolution of Device.last_seen_at.
ONLINE_WITHIN = dt.timedelta(minutes=3)
SILENT_AFTER = dt.timedelta(seconds=SILENT_AFTER_SECONDS)
STATE_FRESH = dt.timedelta(minutes=10)
NO_TEAM = "(no team)"

PRESENCE_ORDER = {"online": 0, "offline": 1, "silent": 2}


@dataclass
class TeamCounts:
    team: str
    online: int = 0
    active: int = 0
    idle: int = 0
    unknown: int = 0
    offline: int = 0
    silent: int = 0
    no_agent: int = 0

    @property
    def split_shown(self) -> bool:
        """Whether active/idle may be shown: enough people online that a count is not a person."""
        return self.online >= settings.LIVE_MIN_GROUP

    @property
    def people(self) -> int:
        return self.online + self.offline + self.silent + self.no_agent


@dataclass(frozen=True)
class SilentAgent:
    hostname: str
    team: str
    last_seen_at: dt.datetime | None


@dataclass
class LiveStatus:
    now: dt.datetime
    teams: list[TeamCounts] = field(default_factory=list)
    silent: list[SilentAgent] = field(default_factory=list)

    @property
    def total(self) -> TeamCounts:
        total = TeamCounts("All teams")
        for t in self.teams:
            for name in ("online", "active", "idle", "unknown", "offline", "silent", "no_agent"):
                setattr(total, name, getattr(total, name) + getattr(t, name))
        return total


def presence(last_seen_at: dt.datetime | None, now: dt.datetime) -> str:
    if last_seen_at is None or now - last_seen_at > SILENT_AFTER:
        return "silent"
    if now - last_seen_at <= ONLINE_WITHIN:
        return "online"
    return "offline"


def live_status(now: dt.datetime | None = None) -> LiveStatus:
    """Counts per team, in three queries whatever the size of the organisation."""
    now = now or timezone.now()
    latest_idle = (
        Span.objects.filter(person=OuterRef("pk"), kind=SpanKind.IDLE, start__gte=now - STATE_FRESH - SILENT_AFTER)
        .filter(end__gte=now - STATE_FRESH)
        .order_by("-end", "-id")
        .values("state")[:1]
    )
    people = list(
        Person.objects.active().annotate(idle_state=Subquery(latest_idle)).values_list("pk", "team__name", "idle_state")
    )
    team_of = {pk: team or NO_TEAM for pk, team, _ in people}
    devices = list(
        Device.objects.active()
        .filter(person__in=team_of.keys())
        .values_list("hostname", "person_id", "last_seen_at")
        .order_by("hostname")
    )
    # The unassigned devices' silence is also worth flagging; they have no team.
    unassigned = list(
        Device.objects.active().filter(person__isnull=True).values_list("hostname", "last_seen_at").order_by("hostname")
    )

    best: dict[int, str] = {}
    status = LiveStatus(now)
    for hostname, person_id, seen in devices:
        state = presence(seen, now)
        if person_id not in best or PRESENCE_ORDER[state] < PRESENCE_ORDER[best[person_id]]:
            best[person_id] = state
        if state == "silent":
            status.silent.append(SilentAgent(hostname, team_of[person_id], seen))
    for hostname, seen in unassigned:
        if presence(seen, now) == "silent":
            status.silent.append(SilentAgent(hostname, "(unassigned device)", seen))

    teams: dict[str, TeamCounts] = {}
    for pk, _, idle_state in people:
        counts = teams.setdefault(team_of[pk], TeamCounts(team_of[pk]))
        seen_as = best.get(pk)
        if seen_as is None:
            counts.no_agent += 1
        elif seen_as == "online":
            counts.online += 1
            if idle_state == "active":
                counts.active += 1
            elif idle_state == "idle":
                counts.idle += 1
            else:
                counts.unknown += 1
        elif seen_as == "offline":
            counts.offline += 1
        else:
            counts.silent += 1
    status.teams = sorted(teams.values(), key=lambda t: (t.team == NO_TEAM, t.team.lower()))
    return status
