"""Shared helpers for agent API tests: enrol a device and send batches as the agent would."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from glasshouse.devices.actions import do_create_token
from glasshouse.org.models import Person

# 2025-01-15 09:00:00 UTC: a fixed past time, so batches never count as "in the future".
T0 = 1736931600.0


def make_token(person: Person | None = None, max_uses: int = 1, days: int = 7) -> str:
    return do_create_token(
        None, label="test", expires_at=timezone.now() + dt.timedelta(days=days), max_uses=max_uses, person=person
    ).secret


def enroll(client: Client, token: str, hostname: str = "laptop-1") -> Any:
    return client.post(
        reverse("agent_api:enroll"),
        {"token": token, "hostname": hostname, "os": "linux", "agent_version": "0.1.0", "username": "eve"},
        content_type="application/json",
    )


class Agent:
    """A device credential and the calls the real agent makes."""

    def __init__(self, client: Client, device_id: str, key: str) -> None:
        self.client = client
        self.device_id = device_id
        self.auth = f"Device {device_id}:{key}"

    @classmethod
    def enrolled(cls, person: Person | None = None) -> Agent:
        client = Client()
        body = enroll(client, make_token(person)).json()
        return cls(client, body["device_id"], body["device_key"])

    def post_raw(self, body: bytes, encoding: str = "gzip") -> Any:
        headers = {"Authorization": self.auth}
        if encoding:
            headers["Content-Encoding"] = encoding
        return self.client.post(reverse("agent_api:batches"), body, content_type="application/json", headers=headers)

    def send(self, batch: dict[str, Any]) -> Any:
        return self.post_raw(gzip.compress(json.dumps(batch).encode()))

    def policy(self, etag: str | None = None) -> Any:
        headers = {"Authorization": self.auth}
        if etag:
            headers["If-None-Match"] = etag
        return self.client.get(reverse("agent_api:policy"), headers=headers)


def window(start: float, end: float, app: str = "firefox", title: str | None = "Inbox") -> dict[str, Any]:
    span: dict[str, Any] = {
        "kind": "window",
        "start": start,
        "end": end,
        "app": app,
        "exe": f"/usr/bin/{app}",
        "pid": 42,
    }
    if title is not None:
        span["title"] = title
    return span
