"""NUL characters in query strings and JSON bodies get a clear 400, never a database error."""

from __future__ import annotations

import pytest

from conftest import ClientFor


@pytest.mark.usefixtures("personas")
def test_nul_in_a_search_is_refused_with_the_parameter_named(client_for: ClientFor) -> None:
    client = client_for("hr")
    page = client.get("/org/people/", {"q": "ada\x00"})
    assert page.status_code == 400
    assert page.content.decode().startswith("q: Input must not contain NUL")
    api = client.get("/api/v1/org/people", {"search": "\x00"})
    assert api.status_code == 400
    assert api.json() == {"detail": "Input must not contain NUL (0x00) characters.", "field": "search"}
    assert client.get("/org/people/", {"q": "ada"}).status_code == 200


@pytest.mark.usefixtures("personas")
def test_nul_in_a_json_body_is_refused(client_for: ClientFor) -> None:
    client = client_for("hr")
    client.get("/accounts/security/")
    response = client.post(
        "/api/v1/org/people",
        data='{"full_name": "A\\u0000B"}',
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
