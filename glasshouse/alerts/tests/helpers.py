"""Test helpers: rules, agent batches with events and spans, and real receivers on loopback (an
HTTP server thread for webhooks, aiosmtpd for e-mail)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from glasshouse.alerts.models import Rule
from glasshouse.ingest.tests.helpers import T0, Agent

SECRET = "s3cret-for-the-webhook-0123"


def make_rule(kind: str, **fields: Any) -> Rule:
    values: dict[str, Any] = {"name": f"{kind} rule", "kind": kind, "emails": "soc@example.test"}
    values.update(fields)
    return Rule.objects.create(**values)


class Sender:
    """Sends batches for one enrolled agent with increasing sequence numbers."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.seq = 0

    def send(self, spans: list[dict[str, Any]] | None = None, events: list[dict[str, Any]] | None = None) -> None:
        self.seq += 1
        response = self.agent.send({"batch_seq": self.seq, "spans": spans or [], "events": events or []})
        assert response.status_code == 200, response.content


def usb(at: float = T0, verdict: str = "blocked", action: str = "insert") -> dict[str, Any]:
    return {
        "kind": "usb",
        "time": at,
        "action": action,
        "verdict": verdict,
        "vid": "0781",
        "pid": "5567",
        "vendor": "SanDisk",
        "product": "Cruzer",
        "class": "storage",
    }


def file_event(size: int, at: float = T0) -> dict[str, Any]:
    return {"kind": "file", "time": at, "path": "/media/eve/STICK/report.xlsx", "size": size, "exe": "/usr/bin/cp"}


def session(event: str, at: float) -> dict[str, Any]:
    return {"kind": "session", "start": at, "end": at, "event": event}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A real HTTP server on a free loopback port; answers the queued statuses, then 200."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses=list(statuses or []))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(settings: Any) -> Iterator[Mailbox]:
    """A real SMTP server on loopback, with Django's SMTP backend pointed at it."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    try:
        yield mailbox
    finally:
        controller.stop()
