"""Every change to control policies, categories, temporary USB access and offline codes.

`do_*` functions validate first (`controls.validation`), then write atomically together with
their audit row. A refused change raises ValidationError({field: message}) before anything is
written, so the policy in force stays as it was. Pages and the agent API call these.

Editing a team that follows an inherited policy gives it a policy of its own, starting from a
copy of the one it followed, then applies the change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest
from django.utils import timezone

from glasshouse.audit.actions import record, record_change
from glasshouse.controls import validation as v
from glasshouse.controls.document import governing, offline_key_for, team_chain
from glasshouse.controls.models import (
    AppBlockEntry,
    AppPolicy,
    CategoryDomain,
    RequestStatus,
    RuleKind,
    UsbAccessRequest,
    UsbAllowEntry,
    UsbClass,
    UsbPolicy,
    UsbPolicyVersion,
    WebCategory,
    WebPolicy,
    WebRule,
)
from glasshouse.controls.offline import offline_code
from glasshouse.devices.models import Device
from glasshouse.org.models import Team

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser | None

# A device may have this many requests waiting for IT; more is a stuck or misbehaving agent.
MAX_PENDING_PER_DEVICE = 10


def _actor_label(actor: Actor) -> str:
    if actor is not None and actor.is_authenticated:
        return str(getattr(actor, "email", ""))
    return ""


def scope_label(team: Team | None) -> str:
    return team.name if team is not None else "Organisation default"


# --- USB -------------------------------------------------------------------------------------


def usb_settings(policy: UsbPolicy) -> v.UsbSettings:
    entries = policy.entries.all() if policy.pk else []
    return v.UsbSettings(
        classes=policy.classes(),
        block_unknown_keyboards=policy.block_unknown_keyboards,
        track_files=policy.track_files,
        allow=tuple(v.AllowEntry(e.vid, e.pid, e.serial, e.label) for e in entries),
    )


def usb_snapshot(settings: v.UsbSettings) -> dict[str, Any]:
    return {
        "classes": dict(settings.classes),
        "block_unknown_keyboards": settings.block_unknown_keyboards,
        "track_files": settings.track_files,
        "allow": [{"vid": e.vid, "pid": e.pid, "serial": e.serial, "label": e.label} for e in settings.allow],
    }


def usb_in_force(team: Team | None) -> UsbPolicy:
    """The USB policy that governs `team` now (its own, inherited or the default)."""
    return governing(UsbPolicy, team_chain(team), UsbPolicy.objects.prefetch_related("entries"))


def do_save_usb_policy(
    actor: Actor, team: Team | None, settings: v.UsbSettings, *, request: HttpRequest | None = None
) -> UsbPolicy:
    """Replace the scope's USB policy with `settings`. A change writes a new version (its id is
    the version number) and an audit row; saving what is already in force writes nothing."""
    settings = v.check_usb(settings)
    with transaction.atomic():
        policy = UsbPolicy.objects.select_for_update().filter(team=team).order_by().first()
        created = policy is None
        before = {} if policy is None else {**usb_snapshot(usb_settings(policy)), "version": policy.version}
        after = usb_snapshot(settings)
        if policy is not None and {k: before[k] for k in after} == after:
            return policy
        if policy is None:
            policy = UsbPolicy(team=team)
        version = UsbPolicyVersion.objects.create(
            team=team, scope=scope_label(team), snapshot=after, actor_label=_actor_label(actor)
        )
        for name, verdict in settings.classes.items():
            setattr(policy, name, verdict)
        policy.block_unknown_keyboards = settings.block_unknown_keyboards
        policy.track_files = settings.track_files
        policy.version = version.pk
        policy.updated_at = timezone.now()
        policy.save()
        policy.entries.all().delete()
        UsbAllowEntry.objects.bulk_create(
            UsbAllowEntry(policy=policy, vid=e.vid, pid=e.pid, serial=e.serial, label=e.label) for e in settings.allow
        )
        record_change(
            actor=actor,
            action="controls.usb.create" if created else "controls.usb.update",
            target=policy,
            before=before,
            after={**after, "version": policy.version},
            request=request,
        )
    return policy


def do_set_usb_options(
    actor: Actor,
    team: Team | None,
    *,
    classes: dict[str, str],
    block_unknown_keyboards: bool,
    track_files: bool,
    request: HttpRequest | None = None,
) -> UsbPolicy:
    current = usb_settings(usb_in_force(team))
    settings = v.UsbSettings(
        classes={c: classes.get(c, current.classes[c]) for c in UsbClass.values} | classes,
        block_unknown_keyboards=block_unknown_keyboards,
        track_files=track_files,
        allow=current.allow,
    )
    return do_save_usb_policy(actor, team, settings, request=request)


def do_add_usb_allow(
    actor: Actor, team: Team | None, entry: v.AllowEntry, *, request: HttpRequest | None = None
) -> UsbPolicy:
    entry = v.check_allow_entry(entry)
    current = usb_settings(usb_in_force(team))
    for existing in current.allow:
        if existing.key == entry.key:
            raise ValidationError(
                {"vid": f"{entry.display} is already on the allow list ({existing.label or 'no label'})."}
            )
    settings = v.UsbSettings(
        classes=current.classes,
        block_unknown_keyboards=current.block_unknown_keyboards,
        track_files=current.track_files,
        allow=(*current.allow, entry),
    )
    return do_save_usb_policy(actor, team, settings, request=request)


def do_remove_usb_allow(
    actor: Actor, team: Team | None, entry_pk: int, *, request: HttpRequest | None = None
) -> UsbPolicy:
    """Remove one entry (by id) of the allow list in force for `team`. Saving rewrites the
    entries, so an id from a page that is out of date is refused rather than misapplied."""
    policy = usb_in_force(team)
    current = usb_settings(policy)
    gone = [e for e in policy.entries.all() if e.pk == entry_pk] if policy.pk else []
    if not gone:
        raise ValidationError({"allow": "That device is not on this allow list (any more); reload the page."})
    kept = tuple(e for e in current.allow if e.key != (gone[0].vid, gone[0].pid, gone[0].serial))
    settings = v.UsbSettings(
        classes=current.classes,
        block_unknown_keyboards=current.block_unknown_keyboards,
        track_files=current.track_files,
        allow=kept,
    )
    return do_save_usb_policy(actor, team, settings, request=request)


def _delete_team_policy(
    actor: Actor,
    policy: UsbPolicy | WebPolicy | AppPolicy,
    action: str,
    before: dict[str, Any],
    request: HttpRequest | None,
) -> None:
    if policy.team_id is None:
        raise ValidationError({"team": "The organisation default cannot be removed, only changed."})
    with transaction.atomic():
        record(actor=actor, action=action, target=policy, before=before, request=request)
        policy.delete()


def do_delete_usb_policy(actor: Actor, policy: UsbPolicy, *, request: HttpRequest | None = None) -> None:
    """The team follows its parent's or the default USB policy again; its versions are kept."""
    before = {**usb_snapshot(usb_settings(policy)), "version": policy.version}
    _delete_team_policy(actor, policy, "controls.usb.delete", before, request)


# --- web -------------------------------------------------------------------------------------


def category_names() -> list[str]:
    return list(WebCategory.objects.values_list("name", flat=True))


def category_sizes() -> dict[str, int]:
    return dict(WebCategory.objects.annotate(n=Count("domains")).values_list("name", "n"))


def rule_input(rule: WebRule) -> v.WebRuleInput:
    return v.WebRuleInput(rule.action, rule.kind, rule.value, tuple(rule.days_list), rule.start, rule.end)


def _rule_json(rule: v.WebRuleInput) -> dict[str, Any]:
    out: dict[str, Any] = {"action": rule.action, "kind": rule.kind, "value": rule.value}
    if rule.scheduled and rule.start and rule.end:
        out.update(days=list(rule.days), start=f"{rule.start:%H:%M}", end=f"{rule.end:%H:%M}")
    return out


def web_in_force(team: Team | None) -> WebPolicy:
    return governing(WebPolicy, team_chain(team), WebPolicy.objects.prefetch_related("rules"))


def _web_state(policy: WebPolicy) -> tuple[bool, tuple[v.WebRuleInput, ...]]:
    return policy.full_urls, tuple(rule_input(r) for r in policy.rules.all()) if policy.pk else ()


def do_save_web_policy(
    actor: Actor,
    team: Team | None,
    *,
    full_urls: bool,
    rules: tuple[v.WebRuleInput, ...] | list[v.WebRuleInput],
    request: HttpRequest | None = None,
) -> WebPolicy:
    checked = v.check_web_rules(rules, category_names())
    v.check_expanded_size(checked, category_sizes())
    with transaction.atomic():
        policy = WebPolicy.objects.select_for_update().filter(team=team).order_by().first()
        created = policy is None
        before: dict[str, Any] = {}
        if policy is not None:
            old_full, old_rules = _web_state(policy)
            before = {"full_urls": old_full, "rules": [_rule_json(r) for r in old_rules]}
        after = {"full_urls": full_urls, "rules": [_rule_json(r) for r in checked]}
        if policy is not None and before == after:
            return policy
        if policy is None:
            policy = WebPolicy(team=team)
        policy.full_urls = full_urls
        policy.updated_at = timezone.now()
        policy.save()
        policy.rules.all().delete()
        WebRule.objects.bulk_create(
            WebRule(
                policy=policy,
                action=r.action,
                kind=r.kind,
                value=r.value,
                days=",".join(r.days),
                start=r.start,
                end=r.end,
            )
            for r in checked
        )
        record_change(
            actor=actor,
            action="controls.web.create" if created else "controls.web.update",
            target=policy,
            before=before,
            after=after,
            request=request,
        )
    return policy


def do_set_full_urls(
    actor: Actor, team: Team | None, full_urls: bool, *, request: HttpRequest | None = None
) -> WebPolicy:
    _, rules = _web_state(web_in_force(team))
    return do_save_web_policy(actor, team, full_urls=full_urls, rules=rules, request=request)


def do_add_web_rule(
    actor: Actor, team: Team | None, rule: v.WebRuleInput, *, request: HttpRequest | None = None
) -> WebPolicy:
    # The rule alone first, so its errors name the form's fields rather than rules[N].
    rule = v.check_web_rule(rule, category_names())
    full_urls, rules = _web_state(web_in_force(team))
    try:
        return do_save_web_policy(actor, team, full_urls=full_urls, rules=(*rules, rule), request=request)
    except ValidationError as exc:
        # The new rule is the last: a clash is reported against the form's value.
        last = f"rules[{len(rules)}]"
        raise ValidationError({("value" if k == last else k): msgs for k, msgs in exc.message_dict.items()}) from None


def do_remove_web_rule(
    actor: Actor, team: Team | None, rule_pk: int, *, request: HttpRequest | None = None
) -> WebPolicy:
    policy = web_in_force(team)
    full_urls, rules = _web_state(policy)
    ids = [r.pk for r in policy.rules.all()] if policy.pk else []
    if rule_pk not in ids:
        raise ValidationError({"rules": "That rule is not in this policy (any more); reload the page."})
    index = ids.index(rule_pk)
    kept = rules[:index] + rules[index + 1 :]
    return do_save_web_policy(actor, team, full_urls=full_urls, rules=kept, request=request)


def do_delete_web_policy(actor: Actor, policy: WebPolicy, *, request: HttpRequest | None = None) -> None:
    full_urls, rules = _web_state(policy)
    before = {"full_urls": full_urls, "rules": [_rule_json(r) for r in rules]}
    _delete_team_policy(actor, policy, "controls.web.delete", before, request)


# --- categories ------------------------------------------------------------------------------


def do_create_category(
    actor: Actor, name: str, description: str = "", *, request: HttpRequest | None = None
) -> WebCategory:
    name = v.check_category_name(name)
    description = description.strip()[:200]
    with transaction.atomic():
        if WebCategory.objects.filter(name=name).exists():
            raise ValidationError({"name": f"There is already a category called {name}."})
        category = WebCategory.objects.create(name=name, description=description)
        record(
            actor=actor,
            action="controls.category.create",
            target=category,
            after={"name": name, "description": description},
            request=request,
        )
    return category


def rules_using(category: WebCategory) -> list[str]:
    """The scopes whose web policy has a rule for this category."""
    teams = WebRule.objects.filter(kind=RuleKind.CATEGORY, value=category.name).values_list(
        "policy__team__name", flat=True
    )
    return sorted({t or "Organisation default" for t in teams})


def do_delete_category(actor: Actor, category: WebCategory, *, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        used = rules_using(category)
        if used:
            raise ValidationError(
                {"name": f"{category.name} is used by web rules in: {', '.join(used)}. Remove those rules first."}
            )
        record(
            actor=actor,
            action="controls.category.delete",
            target=category,
            before={"name": category.name, "domains": category.domains.count()},
            request=request,
        )
        category.delete()


def do_add_category_domain(
    actor: Actor, category: WebCategory, domain: str, *, request: HttpRequest | None = None
) -> CategoryDomain:
    domain = v.check_domain(domain, "domain")
    with transaction.atomic():
        if CategoryDomain.objects.filter(category=category, domain=domain).exists():
            raise ValidationError({"domain": f"{domain} is already in {category.name}."})
        sizes = category_sizes()
        sizes[category.name] = sizes.get(category.name, 0) + 1
        for policy in WebPolicy.objects.filter(rules__kind=RuleKind.CATEGORY, rules__value=category.name).distinct():
            try:
                v.check_expanded_size(_web_state(policy)[1], sizes)
            except ValidationError:
                raise ValidationError(
                    {
                        "domain": f"{category.name} is too large to grow for {scope_label(policy.team)}: its web rules "
                        f"would exceed the {v.MAX_ENTRIES} sites browsers enforce."
                    }
                ) from None
        row = CategoryDomain.objects.create(category=category, domain=domain)
        record(
            actor=actor,
            action="controls.category.add_domain",
            target=category,
            after={"domain": domain},
            request=request,
        )
    return row


def do_remove_category_domain(actor: Actor, row: CategoryDomain, *, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        record(
            actor=actor,
            action="controls.category.remove_domain",
            target=row.category,
            before={"domain": row.domain},
            request=request,
        )
        row.delete()


# --- apps ------------------------------------------------------------------------------------


def apps_in_force(team: Team | None) -> AppPolicy:
    return governing(AppPolicy, team_chain(team), AppPolicy.objects.prefetch_related("entries"))


def _app_entries(policy: AppPolicy) -> tuple[v.AppEntry, ...]:
    return tuple(v.AppEntry(e.name, e.path) for e in policy.entries.all()) if policy.pk else ()


def _apps_json(entries: tuple[v.AppEntry, ...]) -> list[dict[str, str]]:
    return [{"name": e.name, "path": e.path} for e in entries]


def do_save_app_policy(
    actor: Actor, team: Team | None, entries: tuple[v.AppEntry, ...], *, request: HttpRequest | None = None
) -> AppPolicy:
    checked = v.check_apps(entries)
    with transaction.atomic():
        policy = AppPolicy.objects.select_for_update().filter(team=team).order_by().first()
        created = policy is None
        before = {} if policy is None else {"block": _apps_json(_app_entries(policy))}
        after = {"block": _apps_json(checked)}
        if policy is not None and before == after:
            return policy
        if policy is None:
            policy = AppPolicy(team=team)
        policy.updated_at = timezone.now()
        policy.save()
        policy.entries.all().delete()
        AppBlockEntry.objects.bulk_create(AppBlockEntry(policy=policy, name=e.name, path=e.path) for e in checked)
        record_change(
            actor=actor,
            action="controls.apps.create" if created else "controls.apps.update",
            target=policy,
            before=before,
            after=after,
            request=request,
        )
    return policy


def do_add_app(actor: Actor, team: Team | None, entry: v.AppEntry, *, request: HttpRequest | None = None) -> AppPolicy:
    entry = v.check_app_entry(entry)
    current = _app_entries(apps_in_force(team))
    if entry in current:
        raise ValidationError({"name": f"{entry.describe()} is already on the block list."})
    return do_save_app_policy(actor, team, (*current, entry), request=request)


def do_remove_app(actor: Actor, team: Team | None, entry_pk: int, *, request: HttpRequest | None = None) -> AppPolicy:
    policy = apps_in_force(team)
    gone = [e for e in policy.entries.all() if e.pk == entry_pk] if policy.pk else []
    if not gone:
        raise ValidationError({"name": "That program is not on this block list (any more); reload the page."})
    entry = v.AppEntry(gone[0].name, gone[0].path)
    current = _app_entries(policy)
    return do_save_app_policy(actor, team, tuple(e for e in current if e != entry), request=request)


def do_delete_app_policy(actor: Actor, policy: AppPolicy, *, request: HttpRequest | None = None) -> None:
    before = {"block": _apps_json(_app_entries(policy))}
    _delete_team_policy(actor, policy, "controls.apps.delete", before, request)


# --- temporary USB access --------------------------------------------------------------------


class TooManyRequests(Exception):
    """The device already has MAX_PENDING_PER_DEVICE requests waiting."""


@dataclass(frozen=True)
class Requested:
    request: UsbAccessRequest
    created: bool


def do_request_usb_access(device: Device, data: v.UsbRequestInput, *, request: HttpRequest | None = None) -> Requested:
    """A user asks, through the agent, to use a USB device. Asking again for the same device
    while a request is pending returns that request (an agent retrying after a lost answer
    must not fill IT's inbox)."""
    data = v.check_usb_request(data)
    with transaction.atomic():
        pending = UsbAccessRequest.objects.select_for_update().filter(device=device, status=RequestStatus.PENDING)
        same = pending.filter(vid=data.vid, pid=data.pid, serial=data.serial).first()
        if same is not None:
            return Requested(same, created=False)
        if pending.count() >= MAX_PENDING_PER_DEVICE:
            raise TooManyRequests(
                f"This device already has {MAX_PENDING_PER_DEVICE} requests waiting for IT; wait for an answer."
            )
        access = UsbAccessRequest.objects.create(
            device=device,
            person_id=device.person_id,
            vid=data.vid,
            pid=data.pid,
            serial=data.serial,
            vendor=data.vendor,
            product=data.product,
            reason=data.reason,
            minutes=data.minutes,
        )
        record(
            actor=None,
            actor_label=f"agent on {device.hostname}"[:254],
            action="controls.usb_request.create",
            target=access,
            after={
                "device": device.hostname,
                "vid": data.vid,
                "pid": data.pid,
                "serial": data.serial,
                "minutes": data.minutes,
                "reason": data.reason,
            },
            request=request,
        )
    return Requested(access, created=True)


def do_decide_usb_request(
    actor: Actor, access: UsbAccessRequest, *, approve: bool, note: str = "", request: HttpRequest | None = None
) -> UsbAccessRequest:
    """Approve (access until now + the minutes asked for) or deny a pending request, once."""
    note = v.check_note(note)
    with transaction.atomic():
        access = UsbAccessRequest.objects.select_for_update().get(pk=access.pk)
        if access.status != RequestStatus.PENDING:
            raise ValidationError({"status": f"This request was already {access.status}."})
        now = timezone.now()
        access.status = RequestStatus.APPROVED if approve else RequestStatus.DENIED
        access.decided_at = now
        access.decided_by = actor if actor is not None and actor.is_authenticated else None
        access.note = note
        access.until = now + dt.timedelta(minutes=access.minutes) if approve else None
        access.save(update_fields=["status", "decided_at", "decided_by", "note", "until"])
        record(
            actor=actor,
            action="controls.usb_request.approve" if approve else "controls.usb_request.deny",
            target=access,
            before={"status": RequestStatus.PENDING},
            after={"status": access.status, "until": access.until, "note": note},
            request=request,
        )
    return access


# --- offline access codes --------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCode:
    code: str
    until: dt.datetime


def do_issue_offline_code(
    actor: Actor,
    device: Device,
    *,
    vid: str,
    pid: str,
    serial: str = "",
    minutes: int,
    now: dt.datetime | None = None,
    request: HttpRequest | None = None,
) -> IssuedCode:
    """An offline access code for one USB device on one computer. The code is not stored; the
    audit row says who made one, for which device and until when."""
    entry = v.check_allow_entry(v.AllowEntry(vid=vid, pid=pid, serial=serial))
    minutes = v.check_offline_minutes(minutes)
    if device.revoked_at is not None:
        raise ValidationError({"device": f"{device.hostname} is revoked; it no longer takes policy or codes."})
    now = now or timezone.now()
    until_minute = int(now.timestamp()) // 60 + minutes
    with transaction.atomic():
        code = offline_code(offline_key_for(device), until_minute, entry.vid, entry.pid, entry.serial)
        until = dt.datetime.fromtimestamp(until_minute * 60, tz=dt.UTC)
        record(
            actor=actor,
            action="controls.offline_code.issue",
            target=device,
            after={"vid": entry.vid, "pid": entry.pid, "serial": entry.serial, "until": until, "minutes": minutes},
            request=request,
        )
    return IssuedCode(code=code, until=until)
