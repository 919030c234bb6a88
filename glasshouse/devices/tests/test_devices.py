"""Device pages and actions as IT uses them: tokens shown once, revocation, assignment, policies,
and refusal for everyone outside IT and security."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from conftest import Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.devices.actions import hash_secret
from glasshouse.devices.models import AgentPolicy, Device, EnrollmentToken
from glasshouse.ingest.tests.helpers import Agent

pytestmark = pytest.mark.django_db

ClientFor = Callable[[str], Client]


def test_it_admin_creates_a_token_shown_once(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    client.get(reverse("devices:tokens"))
    response = client.post(
        reverse("devices:tokens"),
        {
            "label": "Sales laptops",
            "expires_in_days": 3,
            "max_uses": 5,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 200
    secret = response.context["created"].secret
    assert secret in response.content.decode()
    token = EnrollmentToken.objects.get()
    assert token.token_hash == hash_secret(secret)
    assert (token.max_uses, token.label) == (5, "Sales laptops")
    assert AuditEntry.objects.filter(action="devices.token.create").exists()
    # Never shown again.
    assert secret not in client.get(reverse("devices:tokens")).content.decode()


def test_token_form_refuses_bad_input_and_creates_nothing(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    client.get(reverse("devices:tokens"))
    response = client.post(
        reverse("devices:tokens"),
        {"label": "x", "expires_in_days": 400, "max_uses": 1, "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 400
    assert "expires_in_days" in response.context["form"].errors
    assert not EnrollmentToken.objects.exists()


def _post(client: Client, url: str, data: dict[str, str] | None = None) -> object:
    client.get(reverse("devices:inventory"))
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def test_security_analyst_may_look_but_not_create(client_for: ClientFor) -> None:
    client = client_for("security")
    assert client.get(reverse("devices:tokens")).status_code == 200
    response = _post(client, reverse("devices:tokens"), {"label": "x", "expires_in_days": "1", "max_uses": "1"})
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert not EnrollmentToken.objects.exists()


@pytest.mark.parametrize("persona", ["hr", "manager", "employee", "auditor"])
def test_people_outside_it_cannot_see_devices(client_for: ClientFor, persona: str) -> None:
    Agent.enrolled()
    client = client_for(persona)
    for name in ("devices:inventory", "devices:tokens", "devices:policies"):
        response = client.get(reverse(name))
        assert response.status_code == 403, name
        assert b"laptop-1" not in response.content


def test_inventory_lists_devices_and_explains_enrolment_when_empty(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    assert b"No devices are enrolled yet" in client.get(reverse("devices:inventory")).content
    Agent.enrolled().policy()
    page = client.get(reverse("devices:inventory")).content.decode()
    assert "laptop-1" in page
    assert "online" in page


def test_it_admin_revokes_and_assigns_a_device(client_for: ClientFor, personas: Personas) -> None:
    agent = Agent.enrolled()
    client = client_for("it_admin")
    assign = reverse("devices:device_assign", kwargs={"pk": agent.device_id})
    assert _post(client, assign, {"email": "employee@example.test"}).status_code == 302  # type: ignore[attr-defined]
    assert Device.objects.get(pk=agent.device_id).person == personas.person("employee")
    revoke = reverse("devices:device_revoke", kwargs={"pk": agent.device_id})
    assert _post(client, revoke).status_code == 302  # type: ignore[attr-defined]
    assert agent.policy().status_code == 401
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"devices.device.assign", "devices.device.revoke"} <= actions


def test_policy_edit_is_validated_and_audited(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("it_admin")
    url = reverse("devices:policy_team", kwargs={"team_pk": personas.sales_team.pk})
    form = {
        "collect_window": "on",
        "collect_titles": "on",
        "idle_threshold_seconds": "120",
        "pulse_seconds": "5",
        "schedule_mode": "working_hours",
        "max_batch_spans": "1000",
        "max_batch_seconds": "30",
        "spool_max_rows": "500000",
        "spool_max_age_days": "14",
    }
    bad = _post(client, url, {**form, "idle_threshold_seconds": "5"})
    assert bad.status_code == 400  # type: ignore[attr-defined]
    assert not AgentPolicy.objects.filter(team=personas.sales_team).exists()
    assert _post(client, url, form).status_code == 302  # type: ignore[attr-defined]
    policy = AgentPolicy.objects.get(team=personas.sales_team)
    assert (policy.collect_titles, policy.idle_threshold_seconds, policy.collect_idle) == (True, 120, False)
    assert AuditEntry.objects.filter(action="devices.policy.create").exists()
    agent = Agent.enrolled(personas.person("employee"))
    assert agent.policy().json()["schedule"]["mode"] == "working_hours"
