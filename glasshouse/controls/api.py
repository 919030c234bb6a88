"""Agent endpoints for temporary USB access, mounted on the agent API (`/api/agent/v1/`,
device-key auth, no CSRF) by `glasshouse.ingest.api`. They only translate between HTTP and
`controls.actions`."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import P, PathEx, Router

from glasshouse.controls import actions
from glasshouse.controls.models import UsbAccessRequest
from glasshouse.controls.schemas import UsbRequestCreated, UsbRequestIn, UsbRequestStatus
from glasshouse.controls.validation import UsbRequestInput
from glasshouse.devices.models import Device
from glasshouse.ingest.schemas import ErrorOut

agent_router = Router(tags=["usb"])
# Bounded so an absurd id is a 422 naming it, not a database overflow.
RequestId = PathEx[int, P(ge=1, le=2**63 - 1)]


@agent_router.post(
    "/usb-requests",
    response={201: UsbRequestCreated, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    url_name="usb_requests",
    summary="Ask IT for temporary access to one USB device",
)
def create_usb_request(request: HttpRequest, payload: UsbRequestIn) -> tuple[int, dict[str, Any]]:
    device: Device = request.auth  # type: ignore[attr-defined]
    data = UsbRequestInput(**payload.dict())
    try:
        made = actions.do_request_usb_access(device, data, request=request)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        return 422, {"detail": messages[0], "field": field}
    except actions.TooManyRequests as exc:
        return 429, {"detail": str(exc)}
    return 201, {"request": made.request.pk, "status": made.request.status}


@agent_router.get(
    "/usb-requests/{request_id}",
    response={200: UsbRequestStatus, 401: ErrorOut, 404: ErrorOut},
    url_name="usb_request",
    summary="The state of one of this device's USB access requests",
)
def usb_request_status(request: HttpRequest, request_id: RequestId) -> tuple[int, dict[str, Any]]:
    device: Device = request.auth  # type: ignore[attr-defined]
    # Another device's request is indistinguishable from one that does not exist.
    found = UsbAccessRequest.objects.filter(pk=request_id, device=device).first()
    if found is None:
        return 404, {"detail": "No such request for this device."}
    until = int(found.until.timestamp()) if found.until is not None else None
    return 200, {"status": found.status, "until": until, "note": found.note}
