"""An alert end to end: an agent enrolls and posts a batch with a blocked USB stick over HTTP to
the live server (the agent API, as the real agent does), the worker's pass (`manage.py worker
--once`, in-process so it shares the live server's test database) raises the alert, a real
webhook receiver on loopback gets a request whose signature it verifies with the rule's secret,
a real SMTP server on loopback (aiosmtpd) gets the mail, and the security analyst finds the
alert in the inbox and acknowledges it in the browser."""

from __future__ import annotations

import email
import email.policy
import gzip
import hashlib
import hmac
import json
import urllib.request
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from conftest import Personas
from e2e.conftest import SignIn
from glasshouse.alerts.models import Alert, AlertStatus, Delivery, DeliveryStatus, RuleKind
from glasshouse.alerts.tests.helpers import SECRET, make_rule, smtp_server, usb, webhook_receiver
from glasshouse.ingest.tests.helpers import T0, make_token

pytestmark = [pytest.mark.django_db(transaction=True)]


def post_json(url: str, body: dict[str, Any], headers: dict[str, str] | None = None, gz: bool = False) -> Any:
    data = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if gz:
        data = gzip.compress(data)
        all_headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_usb_event_from_an_agent_reaches_webhook_and_mailbox(
    personas: Personas, live_server: Any, settings: Any, sign_in: SignIn
) -> None:
    base = f"{live_server}/api/agent/v1"
    with webhook_receiver() as receiver, smtp_server(settings) as mailbox:
        make_rule(
            RuleKind.USB,
            name="Blocked USB sticks",
            severity="critical",
            usb_blocked_only=True,
            emails="soc@example.test",
            webhook_url=receiver.url,
            webhook_secret=SECRET,
        )
        token = make_token(personas.person("employee"))
        enrolled = post_json(
            f"{base}/enroll",
            {"token": token, "hostname": "eve-laptop", "os": "linux", "agent_version": "0.1.0", "username": "eve"},
        )
        auth = {"Authorization": f"Device {enrolled['device_id']}:{enrolled['device_key']}"}
        post_json(f"{base}/batches", {"batch_seq": 1, "spans": [], "events": [usb(T0)]}, auth, gz=True)

        out = StringIO()
        call_command("worker", "--once", stdout=out)
        assert "Raised 1 alerts." in out.getvalue()
        # A second pass finds nothing new: the same event never alerts twice.
        call_command("worker", "--once", stdout=out)
        assert Alert.objects.count() == 1

    [request] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Glasshouse-Signature"], expected)
    body = json.loads(request.body)
    assert body["alert"]["device"]["hostname"] == "eve-laptop"
    assert body["alert"]["severity"] == "critical"
    assert body["timestamp"] == int(request.headers["X-Glasshouse-Timestamp"])

    [(_, recipients, content)] = mailbox.messages
    assert recipients == ["soc@example.test"]
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert "[Glasshouse Critical]" in str(message["Subject"])
    assert "eve-laptop" in str(message["Subject"])
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}

    alert = Alert.objects.get()
    page = sign_in("sec@example.test")
    page.goto(f"{live_server}/alerts/?severity=critical")
    page.get_by_role("link", name=alert.summary).click()
    page.get_by_role("button", name="Acknowledge").click()
    page.get_by_text("Acknowledged by sec@example.test").wait_for()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED
