"""The HTTP side of the agent protocol (docs/agent-protocol.md): enrolment, policy with ETag,
gzip batch upload. Standard library only (urllib, gzip, ssl) to keep the agent small. Errors are
sorted into the three things the caller must do differently: retry later, give up on this
request, or stop because the device is no longer trusted."""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

from glasshouse_agent import __version__

API_PREFIX = "/api/agent/v1"
USER_AGENT = f"glasshouse-agent/{__version__}"


class UplinkError(Exception):
    """A request that did not succeed. `status` is None for connection-level failures."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableError(UplinkError):
    """429, 5xx, timeouts and connection errors: the same request may succeed later."""


class RejectedError(UplinkError):
    """Any other 4xx: this request is wrong and will stay wrong."""


class UnauthorizedError(RejectedError):
    """401: the device is revoked or unknown; stop uploading until it is enrolled again."""


@dataclass(frozen=True)
class PolicyResponse:
    changed: bool  # False on 304 Not Modified
    etag: str | None
    document: Any  # the parsed JSON when changed


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could turn a POST into a GET or send the device key to another host: refuse.
    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


class Uplink:
    def __init__(
        self,
        server: str,
        device_id: str | None = None,
        device_key: str | None = None,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not server.startswith(("https://", "http://")):
            raise ValueError("server must be an http:// or https:// URL")
        self.server = server.rstrip("/")
        self.device_id = device_id
        self.device_key = device_key
        self.timeout = timeout
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())

    def enroll(self, token: str, *, hostname: str, os_name: str, username: str) -> tuple[str, str]:
        body = {
            "token": token,
            "hostname": hostname,
            "os": os_name,
            "agent_version": __version__,
            "username": username,
        }
        status, _, data = self._request("POST", "/enroll", json.dumps(body).encode(), auth=False)
        if status != 201 or not isinstance(data, dict):
            raise RejectedError(f"unexpected enrolment answer {status}", status)
        device_id, device_key = data.get("device_id"), data.get("device_key")
        if not isinstance(device_id, str) or not isinstance(device_key, str):
            raise RejectedError("enrolment answer lacks device_id/device_key", status)
        return device_id, device_key

    def get_policy(self, etag: str | None) -> PolicyResponse:
        headers = {"If-None-Match": etag} if etag else {}
        status, resp_headers, data = self._request("GET", "/policy", None, headers=headers)
        if status == 304:
            return PolicyResponse(changed=False, etag=etag, document=None)
        return PolicyResponse(changed=True, etag=resp_headers.get("ETag"), document=data)

    def post_batch(self, batch: dict[str, Any]) -> int:
        """Upload one batch; returns the server's accepted_seq."""
        raw = json.dumps(batch, separators=(",", ":")).encode()
        status, _, data = self._request(
            "POST", "/batches", gzip.compress(raw, compresslevel=6), headers={"Content-Encoding": "gzip"}
        )
        seq = data.get("accepted_seq") if isinstance(data, dict) else None
        if status != 200 or not isinstance(seq, int):
            # A 2xx without an ack is a server bug; retrying is safe because batches are idempotent.
            raise RetryableError(f"unexpected batch answer {status}: {data!r}", status)
        return seq

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Message, Any]:
        req = urllib.request.Request(self.server + API_PREFIX + path, data=body, method=method)  # noqa: S310
        req.add_header("User-Agent", USER_AGENT)
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        if auth:
            if not self.device_id or not self.device_key:
                raise UnauthorizedError("this device is not enrolled")
            req.add_header("Authorization", f"Device {self.device_id}:{self.device_key}")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.status, resp.headers, _json(resp.read())
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status == 304:
                return status, exc.headers, None
            detail = _detail(exc)
            retry_after = _retry_after(exc.headers)
            if status == 429 or status >= 500:
                raise RetryableError(f"{status}: {detail}", status, retry_after) from exc
            if status == 401:
                raise UnauthorizedError(f"{status}: {detail}", status) from exc
            raise RejectedError(f"{status}: {detail}", status) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise RetryableError(f"cannot reach {self.server}: {exc}") from exc


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        data = _json(exc.read())
    except OSError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        field = f" (field {data['field']})" if data.get("field") else ""
        return f"{data['detail']}{field}"
    return str(exc.reason)


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; the backoff schedule is good enough
