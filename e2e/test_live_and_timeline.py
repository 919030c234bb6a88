"""The day timeline and the live view in a real browser (issue 5).

1. A security analyst opens a person's day timeline: the purpose form comes first, the day is
   drawn once a purpose is given, and the look is in the audit trail with that purpose.
2. The live view changes without a reload when a test agent goes idle: the test plays the agent
   over HTTP against the live server (enrol with a one-time token, then gzip batches with the
   device key, exactly as docs/agent-protocol.md describes), and htmx's poll swaps the new
   counts in; a marker set in the page's JavaScript survives, so the page was not reloaded.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
import urllib.request
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conftest import Personas
from e2e.conftest import SignIn
from glasshouse.audit.models import AuditEntry
from glasshouse.devices import actions as device_actions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class HttpAgent:
    """The calls the real agent makes, over HTTP to the live server."""

    def __init__(self, server: str, personas: Personas) -> None:
        self.server = server
        token = device_actions.do_create_token(
            personas.it_admin,
            label="e2e live",
            expires_at=timezone.now() + dt.timedelta(hours=1),
            max_uses=1,
            person=personas.person("employee"),
        )
        body = {
            "token": token.secret,
            "hostname": "e2e-laptop",
            "os": "linux",
            "agent_version": "0.1.0",
            "username": "eve",
        }
        enrolled = self._call("/api/agent/v1/enroll", json.dumps(body).encode(), {})
        self.auth = f"Device {enrolled['device_id']}:{enrolled['device_key']}"
        self.seq = 0

    def _call(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(
            f"{self.server}{path}", data=body, headers={"Content-Type": "application/json", **headers}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def send(self, spans: list[dict[str, Any]]) -> None:
        self.seq += 1
        body = gzip.compress(json.dumps({"batch_seq": self.seq, "spans": spans}).encode())
        ack = self._call("/api/agent/v1/batches", body, {"Authorization": self.auth, "Content-Encoding": "gzip"})
        assert ack == {"accepted_seq": self.seq}


def test_timeline_asks_for_a_purpose_and_the_look_is_audited(
    personas: Personas, sign_in: SignIn, live_server: Any
) -> None:
    employee = personas.person("employee")
    agent = HttpAgent(str(live_server), personas)
    now = time.time()
    agent.send(
        [
            {
                "kind": "window",
                "start": now - 900,
                "end": now - 300,
                "app": "GhEditor",
                "exe": "/usr/bin/gheditor",
                "pid": 7,
            }
        ]
    )
    day = dt.datetime.fromtimestamp(now - 600, ZoneInfo(employee.time_zone)).date()

    page = sign_in("sec@example.test")
    page.goto(f"{live_server}/monitoring/people/{employee.pk}/")
    page.get_by_label("Purpose").select_option("security_incident")
    page.get_by_label("Case, ticket or reason").fill("Ticket SEC-3003 timeline check")
    page.get_by_role("button", name="Open and record this look").click()
    page.get_by_test_id("timeline-link").click()
    # The purpose stated for this person covers the timeline too (one statement, every look audited).
    expect(page.get_by_test_id("purpose-banner")).to_contain_text("Ticket SEC-3003")
    if day != dt.datetime.now(ZoneInfo(employee.time_zone)).date():  # run just after midnight: yesterday
        page.get_by_test_id("previous-day").click()
    bar = page.locator('[data-lane="apps"] rect title')
    expect(bar).to_have_count(1)
    assert bar.text_content().startswith("GhEditor: ")  # type: ignore[union-attr]
    views = [
        e.after["view"] for e in AuditEntry.objects.filter(action="monitoring.person.view", target_id=str(employee.pk))
    ]
    assert "activity.timeline" in views
    assert all("Ticket SEC-3003" in e.purpose for e in AuditEntry.objects.filter(action="monitoring.person.view"))

    # A fresh session (another analyst) is asked again, on the timeline itself.
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        page2 = other.new_page()
        page2.goto(f"{live_server}/accounts/login/")
        page2.get_by_label("Work e-mail").fill("it@example.test")
        page2.get_by_label("Password").fill("persona-password-123")
        page2.get_by_role("button", name="Sign in").click()
        page2.goto(f"{live_server}/monitoring/people/{employee.pk}/timeline/?day={day:%Y-%m-%d}")
        expect(page2.get_by_test_id("purpose-form")).to_be_visible()
        assert not AuditEntry.objects.filter(action="monitoring.person.view", actor_label="it@example.test").exists()
        page2.get_by_label("Purpose").select_option("it_support")
        page2.get_by_label("Case, ticket or reason").fill("INC-88 user asked for help")
        page2.get_by_role("button", name="Open and record this look").click()
        expect(page2.locator('[data-lane="apps"] rect')).to_have_count(1)
        entry = AuditEntry.objects.filter(action="monitoring.person.view", actor_label="it@example.test").last()
        assert entry is not None
        assert entry.after == {"view": "activity.timeline"}
        assert entry.purpose == "IT support requested by the person: INC-88 user asked for help"
    finally:
        other.close()


def test_live_view_changes_without_reload_when_the_agent_goes_idle(
    personas: Personas, sign_in: SignIn, live_server: Any, settings: Any
) -> None:
    settings.LIVE_MIN_GROUP = 1  # Sales has one person with an agent: show its split for this test
    agent = HttpAgent(str(live_server), personas)
    now = time.time()
    agent.send([{"kind": "idle", "start": now - 120, "end": now - 2, "state": "active"}])

    page = sign_in("sec@example.test")
    page.locator("nav.sidebar").get_by_role("link", name="Live view").click()
    sales = page.locator('tr[data-team="Sales"]')
    expect(sales.locator('[data-count="online"]')).to_have_text("1")
    expect(sales.locator('[data-count="active"]')).to_have_text("1")
    expect(sales.locator('[data-count="idle"]')).to_have_text("0")
    page.evaluate("window.__notReloaded = true")

    now = time.time()
    agent.send([{"kind": "idle", "start": now - 2, "end": now, "state": "idle"}])
    expect(sales.locator('[data-count="idle"]')).to_have_text("1", timeout=25_000)  # the next 10 s poll
    expect(sales.locator('[data-count="active"]')).to_have_text("0")
    assert page.evaluate("window.__notReloaded") is True
