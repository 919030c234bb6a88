"""Purpose separation: only IT/security with a stated purpose, or the person, see monitoring data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.test import Client

from conftest import ClientFor, Personas
from glasshouse.audit.models import AuditEntry

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response


def post(client: Client, url: str, data: dict[str, str]) -> Response:
    client.get("/accounts/security/")  # sets the CSRF cookie
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def test_it_admin_must_state_a_purpose_and_each_look_is_audited(personas: Personas, client_for: ClientFor) -> None:
    employee = personas.person("employee")
    url = f"/monitoring/people/{employee.pk}/"
    client = client_for("security")
    first = client.get(url)
    assert 'data-testid="purpose-form"' in first.content.decode()
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()

    refused = post(client, url, {"category": "security_incident", "detail": "short"})
    assert refused.status_code == 400
    assert "at least 10 characters" in refused.content.decode()
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()

    granted = post(client, url, {"category": "security_incident", "detail": "Ticket SEC-1042 data exfiltration"})
    assert granted.status_code == 302
    page = client.get(url).content.decode()
    assert "Ticket SEC-1042" in page
    looks = AuditEntry.objects.filter(action="monitoring.person.view", target_id=str(employee.pk))
    assert looks.count() == 2  # the POST that opened it and the page view after it
    assert all("Security incident investigation: Ticket SEC-1042" in e.purpose for e in looks)
    assert {e.actor_label for e in looks} == {"sec@example.test"}


@pytest.mark.parametrize("persona", ["hr", "manager", "auditor", "outsider"])
def test_hr_managers_and_others_never_reach_person_monitoring(
    personas: Personas,
    client_for: ClientFor,
    persona: str,
) -> None:
    employee = personas.person("employee")
    client = client_for(persona)
    assert client.get(f"/monitoring/people/{employee.pk}/").status_code == 403
    response = post(
        client,
        f"/monitoring/people/{employee.pk}/",
        {"category": "security_incident", "detail": "I have a very good reason"},
    )
    assert response.status_code == 403
    api = client.get(
        f"/api/v1/monitoring/people/{employee.pk}",
        {"purpose_category": "security_incident", "purpose": "I have a very good reason"},
    )
    assert api.status_code == 403
    assert not AuditEntry.objects.filter(action="monitoring.person.view").exists()


def test_refused_roles_cannot_probe_which_ids_exist(client_for) -> None:  # type: ignore[no-untyped-def]
    assert client_for("hr").get("/monitoring/people/999999/").status_code == 403
    assert client_for("it_admin").get("/monitoring/people/999999/").status_code == 404


def test_employee_sees_own_data_without_purpose_but_not_a_colleague(personas: Personas, client_for: ClientFor) -> None:
    client = client_for("employee")
    own = client.get("/monitoring/me/", follow=True)
    assert own.status_code == 200
    assert "kept about you" in own.content.decode()
    colleague = personas.person("hr")
    assert client.get(f"/monitoring/people/{colleague.pk}/").status_code == 403


def test_api_requires_purpose_and_audits(personas: Personas, client_for: ClientFor) -> None:
    employee = personas.person("employee")
    client = client_for("it_admin")
    missing = client.get(f"/api/v1/monitoring/people/{employee.pk}")
    assert missing.status_code == 422
    assert "purpose" in missing.json()["errors"]
    ok = client.get(
        f"/api/v1/monitoring/people/{employee.pk}",
        {"purpose_category": "it_support", "purpose": "INC-7 laptop slow, user asked"},
    )
    assert ok.status_code == 200
    assert ok.json()["purpose"] == "IT support requested by the person: INC-7 laptop slow, user asked"
    entry = AuditEntry.objects.get(action="monitoring.person.view")
    assert entry.after == {"view": "api.monitoring.person"}
    assert entry.target_label == employee.full_name
