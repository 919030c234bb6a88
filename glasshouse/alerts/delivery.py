"""Sending alerts: e-mail through Django's e-mail backend and signed webhooks, with retries.

Each alert gets one `Delivery` per channel when it is raised (in the same transaction). The
worker sends what is due; a failure is retried after BACKOFF_BASE x 2^(attempts - 1) until
MAX_ATTEMPTS, then the delivery is given up. Every attempt's outcome stays in the delivery log.

Webhook requests carry a JSON body and `X-Glasshouse-Signature: sha256=<hex HMAC-SHA256 of the
raw body with the rule's secret>`, plus `X-Glasshouse-Timestamp` (Unix seconds), which is also
inside the signed body, so a receiver can refuse replays of old requests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from glasshouse.alerts.models import Alert, Channel, Delivery, DeliveryStatus, Rule

BACKOFF_BASE = dt.timedelta(seconds=30)
MAX_ATTEMPTS = 8
# A claimed delivery is not picked up by another worker for this long (a crash mid-send frees it).
LEASE = dt.timedelta(minutes=5)
TIMEOUT_SECONDS = 10
PER_PASS = 50
SIGNATURE_HEADER = "X-Glasshouse-Signature"
TIMESTAMP_HEADER = "X-Glasshouse-Timestamp"


def enqueue(alert: Alert, rule: Rule) -> None:
    rows = []
    if rule.email_list:
        rows.append(Delivery(alert=alert, channel=Channel.EMAIL, target=", ".join(rule.email_list)[:1000]))
    if rule.webhook_url:
        rows.append(Delivery(alert=alert, channel=Channel.WEBHOOK, target=rule.webhook_url))
    Delivery.objects.bulk_create(rows)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_document(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "rule": alert.rule_name,
        "rule_id": alert.rule_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "summary": alert.summary,
        "occurred_at": alert.occurred_at.isoformat(),
        "created_at": alert.created_at.isoformat(),
        "person": {"name": alert.person.full_name, "email": alert.person.email} if alert.person else None,
        "device": {"id": str(alert.device.pk), "hostname": alert.device.hostname} if alert.device else None,
        "details": alert.details,
    }


def webhook_body(alert: Alert, timestamp: int) -> bytes:
    return json.dumps({"alert": alert_document(alert), "timestamp": timestamp}, sort_keys=True).encode()


class DeliveryFailed(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _send_webhook(delivery: Delivery, rule: Rule | None) -> int:
    if rule is None or not rule.webhook_secret:
        raise DeliveryFailed("The rule was deleted or has no webhook secret; nothing to sign with.")
    timestamp = int(time.time())
    body = webhook_body(delivery.alert, timestamp)
    request = urllib.request.Request(  # noqa: S310 - IT admins set http(s) URLs only (check_rule)
        delivery.target,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Glasshouse-Alerts/1",
            SIGNATURE_HEADER: sign(rule.webhook_secret, body),
            TIMESTAMP_HEADER: str(timestamp),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"The receiver answered {exc.code}.", exc.code) from exc
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(f"Could not reach the receiver: {exc}") from exc


def _send_email(delivery: Delivery) -> None:
    alert = delivery.alert
    lines = [
        alert.summary,
        "",
        f"Rule: {alert.rule_name} ({alert.get_kind_display()})",
        f"Severity: {alert.get_severity_display()}",
        f"When: {alert.occurred_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if alert.person:
        lines.append(f"Person: {alert.person.full_name} <{alert.person.email}>")
    if alert.device:
        lines.append(f"Computer: {alert.device.hostname}")
    lines += ["", "Details:", json.dumps(alert.details, indent=2, sort_keys=True)]
    message = EmailMessage(
        subject=f"[Glasshouse {alert.get_severity_display()}] {alert.summary}"[:200],
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[a.strip() for a in delivery.target.split(",") if a.strip()],
    )
    try:
        message.send(fail_silently=False)
    except Exception as exc:
        raise DeliveryFailed(f"The mail server refused or could not be reached: {exc}") from exc


def _claim(now: dt.datetime) -> list[int]:
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:PER_PASS]
        )
        Delivery.objects.filter(id__in=ids).update(next_attempt_at=now + LEASE)
    return ids


def send_due(now: dt.datetime | None = None) -> int:
    """Attempt every due delivery once; return how many were sent."""
    now = now or timezone.now()
    sent = 0
    for pk in _claim(now):
        delivery = Delivery.objects.select_related("alert__person", "alert__device", "alert__rule").get(pk=pk)
        delivery.attempts += 1
        delivery.last_attempt_at = timezone.now()
        try:
            if delivery.channel == Channel.WEBHOOK:
                delivery.response_code = _send_webhook(delivery, delivery.alert.rule)
            else:
                _send_email(delivery)
        except DeliveryFailed as exc:
            delivery.last_error = str(exc)[:500]
            delivery.response_code = exc.code
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
            else:
                delivery.next_attempt_at = now + BACKOFF_BASE * 2 ** (delivery.attempts - 1)
        else:
            delivery.status = DeliveryStatus.SENT
            delivery.sent_at = timezone.now()
            delivery.last_error = ""
            sent += 1
        delivery.save()
    return sent
