"""Every change people make to alerts: rules (IT admins), acknowledging and commenting on alerts
(IT admins and security analysts). `check_*` validates, `do_*` writes atomically with its audit
row. The worker's own writes (raising alerts, deliveries) are in `evaluate` and `delivery`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from glasshouse.alerts.models import MINUTE_KINDS, RULE_FIELDS, Alert, AlertComment, AlertStatus, Rule, RuleKind
from glasshouse.audit.actions import record

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

    Actor = User | AnonymousUser

MAX_MINUTES = 7 * 24 * 60
DOMAIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


def check_rule(rule: Rule) -> None:
    """Refuse a rule whole, naming each bad field and why."""
    errors: dict[str, str] = {}
    if not rule.name.strip():
        errors["name"] = "Give the rule a name."
    if rule.kind in MINUTE_KINDS:
        if rule.minutes is None or rule.minutes < 1:
            errors["minutes"] = "This kind of rule needs a number of minutes (1 or more)."
        elif rule.minutes > MAX_MINUTES:
            errors["minutes"] = f"At most {MAX_MINUTES} minutes (7 days)."
    if rule.kind == RuleKind.TIME_CATEGORY and rule.category is None:
        errors["category"] = "Choose the category whose time is counted."
    bad = [d for d in rule.domain_list if not set(d) <= DOMAIN_CHARS or "." not in d or d.startswith((".", "-"))]
    if bad:
        errors["domains"] = f"Not a domain name: {', '.join(bad[:3])}. Write one domain per line, e.g. example.com."
    elif rule.kind == RuleKind.TIME_SITE and not rule.domain_list:
        errors["domains"] = "List the sites whose time is counted."
    elif rule.kind == RuleKind.SITE_VISIT and not rule.domain_list and not rule.include_blocked:
        errors["domains"] = "List the sites to watch, or include blocked sites."
    if rule.kind == RuleKind.FILE_COPY and (rule.min_bytes is None):
        errors["min_bytes"] = "Give the size in bytes above which a copied file raises an alert (0 for any)."
    validate_email = EmailValidator()
    bad_emails = []
    for address in rule.email_list:
        try:
            validate_email(address)
        except ValidationError:
            bad_emails.append(address)
    if bad_emails:
        errors["emails"] = f"Not an e-mail address: {', '.join(bad_emails[:3])}."
    if rule.webhook_url and not rule.webhook_url.startswith(("http://", "https://")):
        errors["webhook_url"] = "The webhook must be an http:// or https:// URL."
    if rule.webhook_url and len(rule.webhook_secret) < 16:
        # A message about the field, not a password (ruff's S105 reads the key).
        errors["webhook_secret"] = "A webhook needs a secret of at least 16 characters to sign its requests."  # noqa: S105
    if not rule.email_list and not rule.webhook_url:
        errors["emails"] = "Name at least one recipient: e-mail addresses or a webhook."
    if errors:
        raise ValidationError(errors)


def _snapshot(rule: Rule) -> dict[str, Any]:
    values = {f: getattr(rule, f"{f}_id" if f == "team" else f) for f in RULE_FIELDS}
    # Whether a secret is set, never the secret itself.
    values["webhook_secret"] = "(set)" if rule.webhook_secret else ""
    return values


def do_save_rule(actor: Actor, rule: Rule, *, request: HttpRequest | None = None) -> Rule:
    """Create or update a rule after `check_rule`; audited with the changed fields."""
    check_rule(rule)
    with transaction.atomic():
        creating = rule.pk is None
        before = None if creating else _snapshot(Rule.objects.select_for_update().get(pk=rule.pk))
        if creating and actor.is_authenticated:
            rule.created_by = actor
        rule.updated_at = timezone.now()
        rule.save()
        after = _snapshot(rule)
        if before is not None:
            changed = {k for k in after if before[k] != after[k]}
            before = {k: before[k] for k in changed}
            after = {k: after[k] for k in changed}
        record(
            actor=actor,
            action="alerts.rule.create" if creating else "alerts.rule.update",
            target=rule,
            before=before,
            after=after,
            request=request,
        )
    return rule


def do_delete_rule(actor: Actor, rule: Rule, *, request: HttpRequest | None = None) -> None:
    """Delete a rule; the alerts it raised stay (with the rule's name)."""
    with transaction.atomic():
        record(actor=actor, action="alerts.rule.delete", target=rule, before=_snapshot(rule), request=request)
        rule.delete()


def do_acknowledge(actor: Actor, alert: Alert, *, request: HttpRequest | None = None) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.ACKNOWLEDGED:
            return alert
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_by = actor if actor.is_authenticated else None
        alert.acknowledged_at = timezone.now()
        alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])
        record(
            actor=actor,
            action="alerts.alert.acknowledge",
            target=alert,
            before={"status": AlertStatus.OPEN},
            after={"status": AlertStatus.ACKNOWLEDGED},
            request=request,
        )
    return alert


def do_comment(actor: Actor, alert: Alert, body: str, *, request: HttpRequest | None = None) -> AlertComment:
    body = body.strip()
    if not body:
        raise ValidationError({"body": "Write a comment first."})
    if len(body) > 4000:
        raise ValidationError({"body": "At most 4,000 characters."})
    with transaction.atomic():
        comment = AlertComment.objects.create(
            alert=alert,
            author=actor if actor.is_authenticated else None,
            body=body,
        )
        record(actor=actor, action="alerts.alert.comment", target=alert, after={"comment": body}, request=request)
    return comment
