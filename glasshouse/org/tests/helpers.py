"""Test helpers: posting through the CSRF-enforcing clients the personas use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.test import Client

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response


def csrf_token(client: Client) -> str:
    if "csrftoken" not in client.cookies:
        client.get("/")
    return client.cookies["csrftoken"].value


def post(client: Client, url: str, data: dict[str, Any], **extra: Any) -> Response:
    return client.post(url, {**data, "csrfmiddlewaretoken": csrf_token(client)}, **extra)


def post_json(client: Client, url: str, data: dict[str, Any]) -> Response:
    return client.post(url, json.dumps(data), content_type="application/json", HTTP_X_CSRFTOKEN=csrf_token(client))
