"""The agent API (protocol v1, docs/agent-protocol.md), mounted at /api/agent/v1/.

A NinjaAPI of its own: agents authenticate with a device key, never a session, so there is no
CSRF here and nothing a browser cookie can reach. The path validates, writes durably and
acknowledges; rollups and everything else happen in the worker.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import ValidationError as PydanticValidationError

from glasshouse.activity.models import EventKind, IngestBatch, SpanKind
from glasshouse.activity.sinks import EventIn, SpanIn, prepare_spans, write_events, write_spans
from glasshouse.controls.api import agent_router
from glasshouse.devices.actions import EnrollmentRefused, do_enroll_device
from glasshouse.devices.models import Device
from glasshouse.devices.policy import resolve_for_device
from glasshouse.ingest.auth import DeviceKeyAuth
from glasshouse.ingest.body import BodyRefused, read_body
from glasshouse.ingest.schemas import (
    AckOut,
    BadField,
    BatchSchema,
    EnrollIn,
    EnrollOut,
    ErrorOut,
    check_times,
    field_path,
    first_error,
)

agent_api = NinjaAPI(
    title="Glasshouse agent API",
    version="agent-1",
    urls_namespace="agent_api",
    auth=DeviceKeyAuth(),
    description="Enrolment, policy and batch upload for endpoint agents (per-device key, no cookies).",
)
# Temporary USB access requests: the endpoints and their rules live in `controls`.
agent_api.add_router("/", agent_router)


def _error(request: HttpRequest, status: int, detail: str, field: str | None = None) -> HttpResponse:
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["field"] = field
    return agent_api.create_response(request, body, status=status)


@agent_api.exception_handler(AuthenticationError)
def _unauthorised(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, exc.message)


@agent_api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, exc.message)


@agent_api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    error = exc.errors[0]
    loc = list(error.get("loc", ()))
    # ninja prefixes "body" and the parameter name; the agent knows only its own field names.
    if loc and loc[0] == "body":
        loc = loc[2:] if len(loc) > 2 else loc[1:]
    field = field_path(loc)
    return _error(request, 422, f"{field or 'body'}: {error.get('msg', 'invalid')}.", field or None)


KIND_COLLECTOR = {"window": "window", "idle": "idle", "session": "sessions", "browser": "browser"}


@agent_api.post(
    "/enroll",
    auth=None,
    response={201: EnrollOut, 403: ErrorOut, 422: ErrorOut},
    url_name="enroll",
    summary="Exchange a one-time enrolment token for a device credential",
)
def enroll(request: HttpRequest, payload: EnrollIn) -> tuple[int, dict[str, Any]]:
    try:
        enrolled = do_enroll_device(
            token_secret=payload.token,
            hostname=payload.hostname,
            os=payload.os,
            agent_version=payload.agent_version,
            username=payload.username,
            request=request,
        )
    except EnrollmentRefused as refused:
        return 403, {"detail": str(refused), "field": "token"}
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        return 422, {"detail": messages[0], "field": field}
    return 201, {"device_id": str(enrolled.device.pk), "device_key": enrolled.key}


@agent_api.get(
    "/policy",
    response={200: dict[str, Any], 304: None, 401: ErrorOut},
    url_name="policy",
    summary="The resolved policy for this device (conditional on its ETag)",
)
def policy(request: HttpRequest) -> HttpResponse:
    device: Device = request.auth  # type: ignore[attr-defined]
    resolved = resolve_for_device(device)
    etag = f'"{resolved.etag}"'
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and _etag_matches(if_none_match, resolved.etag):
        response = HttpResponse(status=304)
    else:
        response = agent_api.create_response(request, resolved.document, status=200)
    response["ETag"] = etag
    return response


def _etag_matches(header: str, etag: str) -> bool:
    candidates = {c.strip().removeprefix("W/").strip('"') for c in header.split(",")}
    return etag in candidates or "*" in candidates


@agent_api.post(
    "/batches",
    response={200: AckOut, 400: ErrorOut, 401: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut},
    url_name="batches",
    summary="Upload one batch of closed spans (gzip JSON); idempotent on (spool_id, batch_seq)",
)
def batches(request: HttpRequest) -> HttpResponse:
    device: Device = request.auth  # type: ignore[attr-defined]
    try:
        batch = BatchSchema.model_validate_json(read_body(request))
        check_times(batch)
    except BodyRefused as refused:
        return _error(request, refused.status, refused.detail)
    except PydanticValidationError as exc:
        bad = first_error(exc)
        return _error(request, 400 if not bad.field else 422, bad.detail, bad.field or None)
    except BadField as bad:
        return _error(request, 422, bad.detail, bad.field)
    store_batch(device, batch)
    return agent_api.create_response(request, {"accepted_seq": batch.batch_seq}, status=200)


def store_batch(device: Device, batch: BatchSchema) -> int:
    """Write the batch and its spans in one transaction; a batch already stored (the same device,
    spool_id and batch_seq) is a no-op. Returns the number of spans stored by this call."""
    once = {"device": device, "spool_id": batch.spool_id, "seq": batch.batch_seq}
    if IngestBatch.objects.filter(**once).exists():
        return 0
    resolved = resolve_for_device(device)
    # Defence in depth: the agent should never send what the policy disallows, but if an old
    # or tampered agent does, the server does not keep it.
    keep_titles = resolved.titles
    # A browser tab's URL and title only where the team's web policy allows full URLs. Reading
    # that builds the device-control sections, so only for batches that carry them.
    full_urls = any(s.kind == "browser" and (s.url or s.title) for s in batch.spans) and bool(
        resolved.document["web"]["full_urls"]
    )
    kinds = {name: int(SpanKind[name.upper()]) for name, what in KIND_COLLECTOR.items() if resolved.collects(what)}
    spans = [
        SpanIn(
            kinds[s.kind],
            s.start,
            s.end,
            s.app,
            s.exe,
            s.title if (full_urls if s.kind == "browser" else keep_titles) else None,
            s.domain,
            s.user,
            s.pid,
            (s.event if s.kind == "session" else s.state) or "",
            s.url if full_urls and s.kind == "browser" else None,
        )
        for s in batch.spans
        if s.kind in kinds
    ]
    events = [
        EventIn(
            int(EventKind[e.kind.upper()]),
            e.time,
            e.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"kind", "time"}),
        )
        for e in batch.events
    ]
    prepare_spans(spans)
    try:
        with transaction.atomic():
            record = IngestBatch.objects.create(
                **once,
                span_count=len(spans),
                gaps=[g.model_dump() for g in batch.gaps],
            )
            stored = write_spans(device, device.person_id, spans, ingest_id=record.pk)
            write_events(device, device.person_id, events, ingest_id=record.pk)
            # Informational: the seq of the batch stored last. Not a maximum, because a new spool
            # (a wiped disk) starts again at 1 and IT should see that.
            Device.objects.filter(pk=device.pk).update(last_batch_seq=batch.batch_seq)
    except IntegrityError:
        # A concurrent retry of the same batch won the unique (device, spool_id, seq); it is
        # stored once.
        if IngestBatch.objects.filter(**once).exists():
            return 0
        raise
    return stored
