"""Per-device key authentication for the agent API: `Authorization: Device <id>:<key>`.

Only the SHA-256 of the key is stored; the comparison is constant-time and an unknown device
costs the same hash as a known one, so timing does not reveal which ids exist.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError
from ninja.security import APIKeyHeader

from glasshouse.devices.actions import hash_secret, secrets_match
from glasshouse.devices.models import Device

# last_seen_at is written at most this often per device, so polling does not mean a write each time.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)
_NO_DEVICE_HASH = hash_secret("no such device")


class DeviceKeyAuth(APIKeyHeader):
    param_name = "Authorization"

    def authenticate(self, request: HttpRequest, key: str | None) -> Device:
        scheme, _, credential = (key or "").partition(" ")
        if scheme != "Device" or ":" not in credential:
            raise AuthenticationError(message="Send Authorization: Device <device_id>:<device_key>.")
        device_id, _, secret = credential.partition(":")
        device = _find(device_id)
        stored = device.key_hash if device is not None else _NO_DEVICE_HASH
        if not secrets_match(secret, stored) or device is None:
            raise AuthenticationError(message="Unknown device or wrong key; enrol again.")
        if device.revoked_at is not None:
            raise AuthenticationError(message="This device was revoked by IT; it may not upload.")
        touch(device)
        return device

    def __call__(self, request: HttpRequest) -> Any:
        # An absent header is a 401 with the same helpful message, not ninja's bare "Unauthorized".
        return self.authenticate(request, self._get_key(request))


def _find(device_id: str) -> Device | None:
    try:
        pk = uuid.UUID(device_id)
    except ValueError:
        return None
    return Device.objects.filter(pk=pk).first()


def touch(device: Device) -> None:
    now = timezone.now()
    if device.last_seen_at is None or now - device.last_seen_at >= LAST_SEEN_RESOLUTION:
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
        device.last_seen_at = now
