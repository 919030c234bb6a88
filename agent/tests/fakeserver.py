"""A small in-test implementation of the server half of docs/agent-protocol.md, on 127.0.0.1
and a port the kernel picks. It keeps what it stored so tests can assert exactly-once delivery,
and can be scripted to answer 429/500/400/401, to delay, or to drop an ack after storing."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/api/agent/v1"
MAX_BODY = 2 * 1024 * 1024


@dataclass
class Scripted:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class State:
    tokens: dict[str, int] = field(default_factory=dict)  # token -> uses left
    devices: dict[str, str] = field(default_factory=dict)  # device id -> sha256(key)
    revoked: set[str] = field(default_factory=set)
    policy: dict[str, Any] | None = None
    etag: str = '"0"'
    batches: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)  # (device, spool_id, seq)
    posts: list[tuple[str, int | None, int]] = field(default_factory=list)  # (device, seq, status)
    script: list[Scripted] = field(default_factory=list)  # answers for the next batch posts
    policy_requests: list[tuple[str | None, int]] = field(default_factory=list)  # (If-None-Match, status)
    enrolments: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    drop_ack_once: bool = False  # store the next batch, then close without answering

    def spans(self) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.batches):
            out.extend(self.batches[key]["spans"])
        return out

    def gaps(self) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.batches):
            out.extend(self.batches[key].get("gaps", []))
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Tests kill agents mid-request on purpose; a broken pipe then is expected, not news.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """Port 0 lets the kernel choose; a restarted server may pass the port it had (and its
    state) to come back where the agent expects it."""

    def __init__(self, port: int = 0, state: State | None = None) -> None:
        self.state = state or State()
        self.lock = threading.Lock()
        self.batch_received = threading.Event()  # set when a batch body has been read
        self.httpd = _Server(("127.0.0.1", port), self._handler())
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_token(self, token: str, uses: int = 1) -> None:
        with self.lock:
            self.state.tokens[token] = uses

    def add_device(self) -> tuple[str, str]:
        device_id, key = secrets.token_hex(8), secrets.token_urlsafe(24)
        with self.lock:
            self.state.devices[device_id] = hashlib.sha256(key.encode()).hexdigest()
        return device_id, key

    def set_policy(self, doc: dict[str, Any]) -> None:
        with self.lock:
            self.state.policy = doc
            self.state.etag = f'"{hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]}"'

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if raw:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _device(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Device ") or ":" not in auth:
                    return None
                device_id, key = auth[len("Device ") :].split(":", 1)
                with server.lock:
                    stored = server.state.devices.get(device_id)
                    revoked = device_id in server.state.revoked
                if stored is None or revoked or hashlib.sha256(key.encode()).hexdigest() != stored:
                    return None
                return device_id

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def do_POST(self) -> None:
                if self.path == PREFIX + "/enroll":
                    return self._enroll()
                if self.path == PREFIX + "/batches":
                    return self._batch()
                self._send(404, {"detail": "not found"})

            def do_GET(self) -> None:
                if self.path != PREFIX + "/policy":
                    return self._send(404, {"detail": "not found"})
                device = self._device()
                inm = self.headers.get("If-None-Match")
                with server.lock:
                    policy, etag = server.state.policy, server.state.etag
                status = 401 if device is None else 404 if policy is None else 304 if inm == etag else 200
                with server.lock:
                    server.state.policy_requests.append((inm, status))
                if status == 200:
                    self._send(200, policy, {"ETag": etag})
                elif status == 304:
                    self._send(304, None, {"ETag": etag})
                else:
                    self._send(status, {"detail": "unauthorized" if status == 401 else "no policy"})

            def _enroll(self) -> None:
                data = json.loads(self._body())
                with server.lock:
                    server.state.enrolments.append(data)
                    uses = server.state.tokens.get(data.get("token"), 0)
                    if uses <= 0:
                        return self._send(403, {"detail": "token unknown, expired or used up", "field": "token"})
                    server.state.tokens[data["token"]] = uses - 1
                device_id, key = server.add_device()
                self._send(201, {"device_id": device_id, "device_key": key})

            def _batch(self) -> None:
                device = self._device()
                raw = self._body()
                if device is None:
                    return self._send(401, {"detail": "unknown or revoked device"})
                if self.headers.get("Content-Encoding") != "gzip":
                    return self._send(415, {"detail": "gzip required"})
                try:
                    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                        body = gz.read(MAX_BODY + 1)
                except OSError:
                    return self._send(400, {"detail": "bad gzip"})
                if len(body) > MAX_BODY:
                    return self._send(413, {"detail": "too large"})
                data = json.loads(body)
                seq = data.get("batch_seq")
                server.batch_received.set()
                with server.lock:
                    scripted = server.state.script.pop(0) if server.state.script else None
                    delay = server.state.delay
                if delay:
                    time.sleep(delay)
                if scripted is not None:
                    with server.lock:
                        server.state.posts.append((device, seq, scripted.status))
                    return self._send(scripted.status, scripted.body or {"detail": "scripted"}, scripted.headers)
                problem = _validate(data)
                if problem:
                    with server.lock:
                        server.state.posts.append((device, seq, 400))
                    return self._send(400, {"detail": problem[1], "field": problem[0]})
                with server.lock:
                    # Idempotent: the first copy of (device, spool_id, seq) is the one kept.
                    server.state.batches.setdefault((device, data.get("spool_id", ""), seq), data)
                    server.state.posts.append((device, seq, 200))
                    drop = server.state.drop_ack_once
                    server.state.drop_ack_once = False
                if drop:
                    self.close_connection = True
                    self.connection.close()
                    return None
                self._send(200, {"accepted_seq": seq})

        return Handler


def _validate(data: Any) -> tuple[str, str] | None:
    if not isinstance(data.get("batch_seq"), int):
        return "batch_seq", "must be an integer"
    spool_id = data.get("spool_id", "0" * 32)  # absent: an agent from before spool ids
    if not isinstance(spool_id, str) or not re.fullmatch(r"[0-9a-f]{32}", spool_id):
        return "spool_id", "must be 32 lowercase hex digits"
    spans = data.get("spans")
    if not isinstance(spans, list) or len(spans) > 1000:
        return "spans", "must be a list of at most 1000"
    for i, span in enumerate(spans):
        if span.get("kind") not in ("window", "idle", "session"):
            return f"spans[{i}].kind", "unknown"
        if not isinstance(span.get("start"), int | float) or not isinstance(span.get("end"), int | float):
            return f"spans[{i}].start", "must be numbers"
        if span["end"] < span["start"]:
            return f"spans[{i}].end", "before start"
    return None
