"""A person's activity page shows what their agent uploaded (from the rollups), and only past
the purpose gate."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from conftest import ClientFor, Personas
from glasshouse.activity.rollups import roll_up_pending
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = pytest.mark.django_db


@pytest.fixture
def uploaded(personas: Personas) -> None:
    """Two hours of an editor and half an hour of a browser, yesterday, from the employee's laptop."""
    agent = Agent.enrolled(personas.person("employee"))
    start = time.time() - 86_400
    spans = [window(start, start + 7200, app="code"), window(start + 7200, start + 9000, app="firefox")]
    assert agent.send({"batch_seq": 1, "spans": spans}).status_code == 200
    roll_up_pending()


def post(client: Client, url: str, data: dict[str, str]) -> None:
    client.get("/accounts/security/")
    client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


@pytest.mark.usefixtures("uploaded")
def test_security_sees_top_apps_after_stating_a_purpose(personas: Personas, client_for: ClientFor) -> None:
    url = f"/monitoring/people/{personas.person('employee').pk}/"
    client = client_for("security")
    assert "code" not in client.get(url).content.decode()  # the purpose form, no data yet
    post(client, url, {"category": "policy_violation", "detail": "Case HR-77 referred to security"})
    page = client.get(url).content.decode()
    assert 'data-testid="activity-apps"' in page
    assert "<td>code</td><td>2.0</td>" in page
    assert "<td>firefox</td><td>0.5</td>" in page


@pytest.mark.usefixtures("uploaded")
def test_the_person_sees_their_own_and_the_api_matches(personas: Personas, client_for: ClientFor) -> None:
    employee = personas.person("employee")
    own = client_for("employee").get(f"/api/v1/monitoring/people/{employee.pk}").json()
    assert [(a["app"], round(a["seconds"])) for a in own["apps"]] == [("code", 7200), ("firefox", 1800)]
    assert sum(d["seconds"] for d in own["days"]) == pytest.approx(9000)
    assert client_for("hr").get(f"/api/v1/monitoring/people/{employee.pk}").status_code == 403
    assert client_for("manager").get(f"/monitoring/people/{employee.pk}/").status_code == 403
