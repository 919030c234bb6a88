"""Delivery to real receivers on loopback: a webhook HTTP server that checks the signature the
way a receiver would, an SMTP server (aiosmtpd) that gets the mail, and retries with backoff
when the receiver fails."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
from typing import Any

import pytest

from conftest import Personas
from glasshouse.alerts.delivery import BACKOFF_BASE, MAX_ATTEMPTS, send_due
from glasshouse.alerts.evaluate import run_pending
from glasshouse.alerts.models import Delivery, DeliveryStatus, RuleKind
from glasshouse.alerts.tests.helpers import SECRET, Sender, make_rule, smtp_server, usb, webhook_receiver
from glasshouse.ingest.tests.helpers import T0, Agent

pytestmark = pytest.mark.django_db

AT = dt.datetime.fromtimestamp(T0, dt.UTC)


@pytest.fixture
def eve(personas: Personas) -> Sender:
    return Sender(Agent.enrolled(personas.person("employee")))


def test_webhook_is_signed_with_the_rules_secret(eve: Sender) -> None:
    with webhook_receiver() as receiver:
        make_rule(RuleKind.USB, emails="", webhook_url=receiver.url, webhook_secret=SECRET, severity="critical")
        eve.send(events=[usb()])
        assert run_pending(AT) == 1
    [request] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Glasshouse-Signature"] == expected
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body["timestamp"] == int(request.headers["X-Glasshouse-Timestamp"])
    assert body["alert"]["severity"] == "critical"
    assert body["alert"]["kind"] == "usb"
    assert body["alert"]["person"]["name"] == "Eve Employee"
    assert body["alert"]["details"]["event"]["vid"] == "0781"
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.response_code == 200
    # A receiver checking with another secret would refuse it.
    wrong = "sha256=" + hmac.new(b"another-secret-0000", request.body, hashlib.sha256).hexdigest()
    assert wrong != request.headers["X-Glasshouse-Signature"]


def test_failed_webhook_is_retried_with_backoff_until_it_succeeds(eve: Sender) -> None:
    with webhook_receiver(statuses=[500, 503]) as receiver:
        make_rule(RuleKind.USB, emails="", webhook_url=receiver.url, webhook_secret=SECRET)
        eve.send(events=[usb()])
        run_pending(AT)
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
        assert "500" in delivery.last_error
        first_retry = delivery.next_attempt_at
        assert send_due(first_retry - dt.timedelta(seconds=1)) == 0  # not due yet
        assert send_due(first_retry) == 0  # fails again (503): the pause doubles
        delivery.refresh_from_db()
        assert delivery.attempts == 2
        assert delivery.next_attempt_at == first_retry + 2 * BACKOFF_BASE
        assert send_due(delivery.next_attempt_at) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert request.headers["X-Glasshouse-Signature"].startswith("sha256=")


def test_an_unreachable_receiver_is_given_up_after_the_last_attempt(eve: Sender) -> None:
    with webhook_receiver() as receiver:
        url = receiver.url
    # The server is gone: connections are refused.
    make_rule(RuleKind.USB, emails="", webhook_url=url, webhook_secret=SECRET)
    eve.send(events=[usb()])
    run_pending(AT)
    delivery = Delivery.objects.get()
    when = AT
    while delivery.status == DeliveryStatus.PENDING:
        when = delivery.next_attempt_at
        send_due(when)
        delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == MAX_ATTEMPTS
    assert "Could not reach" in delivery.last_error


def test_email_reaches_a_real_smtp_server(eve: Sender, settings: Any) -> None:
    with smtp_server(settings) as mailbox:
        make_rule(RuleKind.USB, emails="soc@example.test\nciso@example.test", severity="high")
        eve.send(events=[usb()])
        assert run_pending(AT) == 1
    [(sender, recipients, content)] = mailbox.messages
    assert sender == settings.DEFAULT_FROM_EMAIL
    assert sorted(recipients) == ["ciso@example.test", "soc@example.test"]
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert str(message["Subject"]).strip().startswith("[Glasshouse High] USB SanDisk Cruzer [0781:5567] blocked")
    assert "Eve Employee" in message.get_body().get_content()  # type: ignore[union-attr]
    assert Delivery.objects.get().status == DeliveryStatus.SENT


def test_email_to_an_unreachable_server_is_retried(eve: Sender, settings: Any) -> None:
    with smtp_server(settings):
        pass  # stopped: the port now refuses connections
    make_rule(RuleKind.USB)
    eve.send(events=[usb()])
    run_pending(AT)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "mail server" in delivery.last_error
