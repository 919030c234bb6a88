"""The `usb`, `removable`, `web` and `apps` sections of a device's policy document
(docs/agent-protocol.md, "Device control, file tracking, browser and app blocking").

`devices.policy` adds these to every document it builds. Each policy is the team's own row,
else the nearest ancestor team's, else the organisation default. Category rules are expanded
here into domain rules, so agents never need the lists; approved temporary access appears in
`usb.temporary` until it ends and then drops out, which changes the document and its ETag.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from glasshouse.controls.models import (
    AppPolicy,
    CategoryDomain,
    OfflineKey,
    RuleKind,
    UsbAccessRequest,
    UsbPolicy,
    WebPolicy,
    WebRule,
)
from glasshouse.controls.offline import new_offline_key
from glasshouse.controls.validation import WebRuleInput, schedules_overlap
from glasshouse.devices.models import Device
from glasshouse.org.models import Person, Team

P = TypeVar("P", UsbPolicy, WebPolicy, AppPolicy)


def team_chain(team: Team | None) -> list[int]:
    """The team's id and its ancestors' ids, nearest first."""
    if team is None:
        return []
    return [team.pk, *(t.pk for t in team.ancestors())]


def governing(model: type[P], chain: list[int], queryset: models.QuerySet[P] | None = None) -> P:
    """The row that governs a team with this `chain`: its own, the nearest ancestor's, or the
    default. An unsaved row with model defaults stands in if the default was deleted by hand."""
    qs = queryset if queryset is not None else model._default_manager.all()
    rows = {p.team_id: p for p in qs.filter(models.Q(team_id__in=chain) | models.Q(team__isnull=True))}
    for team_id in chain:
        if team_id in rows:
            return rows[team_id]
    return rows.get(None) or model()


def offline_key_for(device: Device) -> str:
    """The device's offline key, made on first use. Two concurrent first uses both end with
    the one key that was stored."""
    found = OfflineKey.objects.filter(device=device).values_list("key", flat=True).first()
    if found:
        return found
    try:
        with transaction.atomic():
            return OfflineKey.objects.create(device=device, key=new_offline_key()).key
    except IntegrityError:
        return OfflineKey.objects.get(device=device).key


def usb_section(policy: UsbPolicy, device: Device | None, now: dt.datetime) -> dict[str, Any]:
    entries = list(policy.entries.all()) if policy.pk else []
    temporary: list[dict[str, Any]] = []
    if device is not None:
        temporary = [
            {"request": r.pk, "vid": r.vid, "pid": r.pid, "serial": r.serial, "until": int(r.until.timestamp())}
            for r in UsbAccessRequest.objects.in_force(now).filter(device=device).order_by("id")
            if r.until is not None
        ]
    return {
        "version": policy.version,
        "classes": policy.classes(),
        "block_unknown_keyboards": policy.block_unknown_keyboards,
        "allow": [{"vid": e.vid, "pid": e.pid, "serial": e.serial, "label": e.label} for e in entries],
        "temporary": temporary,
        "offline_key": offline_key_for(device) if device is not None else "",
    }


def rule_schedule(rule: WebRule, time_zone: str) -> dict[str, Any] | None:
    if not rule.days or rule.start is None or rule.end is None:
        return None
    return {
        "days": rule.days_list,
        "start": rule.start.strftime("%H:%M"),
        "end": rule.end.strftime("%H:%M"),
        "time_zone": time_zone,
    }


def web_rules(rules: list[WebRule], time_zone: str) -> list[dict[str, Any]]:
    """The rules as agents take them: categories expanded into one domain rule per domain, and
    never the same target both blocked and allowed at overlapping times (agents refuse such a
    section whole). Rules of their own (domain, url) come first, in the order IT made them,
    and win: a category rule leaves out a domain that has an opposite rule of its own at
    overlapping times (so "block social, allow linkedin.com" works). Between categories, allow
    wins. Exact repeats are dropped (a domain can sit in two blocked categories)."""
    names = {r.value for r in rules if r.kind == RuleKind.CATEGORY}
    domains: dict[str, list[str]] = {}
    pairs = CategoryDomain.objects.filter(category__name__in=names).order_by("domain")
    for category, domain in pairs.values_list("category__name", "domain"):
        domains.setdefault(category, []).append(domain)
    own = [r for r in rules if r.kind != RuleKind.CATEGORY]
    by_category = [r for r in rules if r.kind == RuleKind.CATEGORY]
    ordered = own + [r for r in by_category if r.action == "allow"] + [r for r in by_category if r.action == "block"]
    out: list[dict[str, Any]] = []
    placed: dict[tuple[str, str], list[WebRuleInput]] = {}
    seen: set[str] = set()
    for rule in ordered:
        schedule = rule_schedule(rule, time_zone)
        when = WebRuleInput(rule.action, rule.kind, rule.value, tuple(rule.days_list), rule.start, rule.end)
        targets = (
            [("domain", d) for d in domains.get(rule.value, [])]
            if rule.kind == RuleKind.CATEGORY
            else [(rule.kind, rule.value)]
        )
        for kind, value in targets:
            earlier = placed.setdefault((kind, value), [])
            if any(o.action != rule.action and schedules_overlap(o, when) for o in earlier):
                continue
            item: dict[str, Any] = {"action": rule.action, "kind": kind, "value": value}
            if schedule is not None:
                item["schedule"] = schedule
            key = repr(sorted(item.items()))
            if key not in seen:
                seen.add(key)
                earlier.append(when)
                out.append(item)
    return out


def control_sections(person: Person | None, device: Device | None, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    chain = team_chain(person.team if person is not None else None)
    time_zone = person.time_zone if person is not None else "UTC"
    usb = governing(UsbPolicy, chain, UsbPolicy.objects.prefetch_related("entries"))
    web = governing(WebPolicy, chain)
    apps = governing(AppPolicy, chain, AppPolicy.objects.prefetch_related("entries"))
    rules = list(web.rules.all()) if web.pk else []
    return {
        "usb": usb_section(usb, device, now),
        "removable": {"track_files": usb.track_files},
        "web": {"full_urls": web.full_urls, "rules": web_rules(rules, time_zone)},
        "apps": {"block": [{"name": e.name, "path": e.path} for e in apps.entries.all()] if apps.pk else []},
    }
