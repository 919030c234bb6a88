"""The agent API as an agent sees it: enrolment, policy with ETag, and batch upload with its
refusals. A refused batch must leave nothing behind."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conftest import Personas
from glasshouse.activity.models import DeviceEvent, IngestBatch, InternedString, Span, SpanKind
from glasshouse.audit.models import AuditEntry
from glasshouse.controls.models import WebPolicy
from glasshouse.devices.actions import do_revoke_device, do_revoke_token, do_update_policy, hash_secret, policy_snapshot
from glasshouse.devices.models import AgentPolicy, Device, EnrollmentToken
from glasshouse.devices.policy import default_policy
from glasshouse.ingest.tests.helpers import T0, Agent, enroll, make_token, window

pytestmark = pytest.mark.django_db


def nothing_stored() -> bool:
    return not Span.objects.exists() and not IngestBatch.objects.exists() and not DeviceEvent.objects.exists()


# --- enrolment -------------------------------------------------------------------------------


def test_enrol_exchanges_token_for_a_device_key_stored_only_as_hash() -> None:
    response = enroll(Client(), make_token())
    assert response.status_code == 201
    body = response.json()
    device = Device.objects.get(pk=body["device_id"])
    assert device.key_hash == hash_secret(body["device_key"])
    assert body["device_key"] not in device.key_hash
    assert (device.hostname, device.os, device.username) == ("laptop-1", "linux", "eve")
    assert EnrollmentToken.objects.get().uses == 1
    assert AuditEntry.objects.filter(action="devices.device.enroll", target_id=str(device.pk)).exists()


def test_token_made_for_a_person_assigns_the_device(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    assert Device.objects.get(pk=agent.device_id).person == personas.person("employee")


def test_used_up_token_is_refused_and_uses_are_counted() -> None:
    token = make_token(max_uses=2)
    assert enroll(Client(), token).status_code == 201
    assert enroll(Client(), token).status_code == 201
    third = enroll(Client(), token)
    assert third.status_code == 403
    assert third.json() == {"detail": "This enrolment token has been used up.", "field": "token"}
    assert Device.objects.count() == 2


@pytest.mark.parametrize("case", ["unknown", "expired", "revoked"])
def test_unusable_token_is_refused(case: str) -> None:
    token = make_token()
    record = EnrollmentToken.objects.get()
    if case == "unknown":
        token = "ghe_not-a-real-token"
    elif case == "expired":
        EnrollmentToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    else:
        do_revoke_token(None, record)
    response = enroll(Client(), token)
    assert response.status_code == 403
    assert case in response.json()["detail"].lower()
    assert not Device.objects.exists()
    assert EnrollmentToken.objects.get().uses == 0


def test_enrol_with_bad_field_names_it() -> None:
    response = Client().post(
        "/api/agent/v1/enroll",
        {"token": make_token(), "hostname": "x", "os": "beos", "agent_version": "0.1.0"},
        content_type="application/json",
    )
    assert response.status_code == 422
    assert response.json()["field"] == "os"
    assert EnrollmentToken.objects.get().uses == 0


# --- device authentication -------------------------------------------------------------------


def test_revoked_device_is_refused_on_its_next_request() -> None:
    agent = Agent.enrolled()
    assert agent.policy().status_code == 200
    do_revoke_device(None, Device.objects.get(pk=agent.device_id))
    response = agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 5)]})
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert agent.policy().status_code == 401
    assert nothing_stored()


@pytest.mark.parametrize(
    "header", ["", "Bearer abc", "Device nonsense", "Device 00000000-0000-0000-0000-000000000000:key"]
)
def test_missing_or_wrong_credentials_get_401(header: str) -> None:
    agent = Agent.enrolled()
    headers = {"Authorization": header} if header else {}
    assert Client().get("/api/agent/v1/policy", headers=headers).status_code == 401
    agent.auth = f"Device {agent.device_id}:wrong-key"
    assert agent.policy().status_code == 401


# --- policy ----------------------------------------------------------------------------------


def test_policy_etag_gives_304_until_the_policy_changes() -> None:
    agent = Agent.enrolled()
    first = agent.policy()
    assert first.status_code == 200
    assert first.json()["collect"]["titles"] is False
    assert first.json()["idle_threshold_seconds"] == 300
    etag = first["ETag"]
    again = agent.policy(etag)
    assert again.status_code == 304
    assert again["ETag"] == etag
    values = {**policy_snapshot(default_policy()), "collect_titles": True}
    do_update_policy(None, None, values)
    changed = agent.policy(etag)
    assert changed.status_code == 200
    assert changed.json()["collect"]["titles"] is True
    assert changed["ETag"] != etag


def test_team_policy_applies_to_teams_below(personas: Personas) -> None:
    values = {**policy_snapshot(default_policy()), "idle_threshold_seconds": 120}
    do_update_policy(None, personas.company, values)
    agent = Agent.enrolled(personas.person("employee"))  # in Sales, below Company
    document = agent.policy().json()
    assert document["idle_threshold_seconds"] == 120
    assert document["schedule"]["time_zone"] == "Europe/London"


# --- batches ---------------------------------------------------------------------------------


def test_batch_is_stored_acknowledged_and_marks_the_device_seen() -> None:
    agent = Agent.enrolled()
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=None)
    batch = {
        "batch_seq": 1,
        "spans": [
            window(T0, T0 + 65.5),
            {"kind": "idle", "start": T0 + 65.5, "end": T0 + 365.5, "state": "idle"},
            {"kind": "session", "start": T0, "end": T0, "event": "login", "user": "alice"},
        ],
        "gaps": [{"start": T0 - 1000, "end": T0 - 10, "reason": "spool_full", "dropped": 12}],
    }
    response = agent.send(batch)
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted_seq": 1}
    spans = {s.kind: s for s in Span.objects.all()}
    assert set(spans) == {SpanKind.WINDOW, SpanKind.IDLE, SpanKind.SESSION}
    win = spans[SpanKind.WINDOW]
    assert win.start == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert (win.end - win.start).total_seconds() == 65.5
    assert win.app is not None
    assert win.app.value == "firefox"
    assert win.pid == 42
    assert spans[SpanKind.SESSION].state == "login"
    session_user = spans[SpanKind.SESSION].user
    assert session_user is not None
    assert session_user.value == "alice"
    device = Device.objects.get(pk=agent.device_id)
    assert device.last_seen_at is not None
    assert device.last_batch_seq == 1
    assert IngestBatch.objects.get().gaps[0]["dropped"] == 12


def test_identity_encoding_is_accepted() -> None:
    agent = Agent.enrolled()
    body = json.dumps({"batch_seq": 7, "spans": [window(T0, T0 + 1)]}).encode()
    assert agent.post_raw(body, encoding="").status_code == 200
    assert Span.objects.count() == 1


def test_repeated_batch_is_stored_once_with_the_same_ack() -> None:
    agent = Agent.enrolled()
    batch = {"batch_seq": 5, "spans": [window(T0, T0 + 10), window(T0 + 10, T0 + 20, app="xterm")]}
    first = agent.send(batch)
    second = agent.send(batch)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"accepted_seq": 5}
    assert Span.objects.count() == 2
    assert IngestBatch.objects.count() == 1


SPOOL_A = "0123456789abcdef0123456789abcdef"
SPOOL_B = "fedcba9876543210fedcba9876543210"


def test_same_seq_from_a_new_spool_is_stored_not_acked_as_a_duplicate() -> None:
    # The agent's spool was lost (disk wiped, reinstall keeping the device key): batch_seq
    # restarts at 1 under a new spool_id, and those spans are new, not a retry.
    agent = Agent.enrolled()
    for spool_id, start in ((SPOOL_A, T0), (SPOOL_A, T0 + 100), (SPOOL_B, T0 + 1000)):
        seq = 2 if start == T0 + 100 else 1
        response = agent.send({"batch_seq": seq, "spool_id": spool_id, "spans": [window(start, start + 10)]})
        assert response.status_code == 200, response.content
        assert response.json() == {"accepted_seq": seq}
    assert Span.objects.count() == 3
    assert sorted(IngestBatch.objects.values_list("spool_id", "seq")) == [(SPOOL_A, 1), (SPOOL_A, 2), (SPOOL_B, 1)]
    # Informational: the seq stored last, which restarted with the new spool.
    assert Device.objects.get(pk=agent.device_id).last_batch_seq == 1


def test_batches_without_a_spool_id_are_a_spool_of_their_own() -> None:
    agent = Agent.enrolled()
    agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 10)]})  # an agent from before spool ids
    agent.send({"batch_seq": 1, "spool_id": SPOOL_A, "spans": [window(T0 + 20, T0 + 30)]})
    agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 10)]})  # its retry
    assert sorted(IngestBatch.objects.values_list("spool_id", "seq")) == [("", 1), (SPOOL_A, 1)]
    assert Span.objects.count() == 2


def test_a_retried_spool_batch_is_stored_once_with_the_same_ack() -> None:
    agent = Agent.enrolled()
    batch = {"batch_seq": 3, "spool_id": SPOOL_A, "spans": [window(T0, T0 + 10), window(T0 + 10, T0 + 20)]}
    answers = [agent.send(batch) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json() == {"accepted_seq": 3} for a in answers)
    assert Span.objects.count() == 2
    assert IngestBatch.objects.get().spool_id == SPOOL_A


@pytest.mark.parametrize(
    "spool_id",
    ["", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef", SPOOL_A + "0", "g" * 32, 42, None],
    ids=["empty", "upper-case", "short", "long", "not-hex", "number", "null"],
)
def test_malformed_spool_id_is_refused_naming_it(spool_id: object) -> None:
    agent = Agent.enrolled()
    body = json.dumps({"batch_seq": 1, "spool_id": spool_id, "spans": [window(T0, T0 + 1)]}).encode()
    response = agent.post_raw(gzip.compress(body))
    assert response.status_code == 422, response.content
    assert response.json()["field"] == "spool_id"
    assert "spool_id" in response.json()["detail"]
    assert nothing_stored()


def test_strings_are_stored_once() -> None:
    agent = Agent.enrolled()
    agent.send({"batch_seq": 1, "spans": [window(T0 + i, T0 + i + 1) for i in range(10)]})
    agent.send({"batch_seq": 2, "spans": [window(T0 + 20, T0 + 21)]})
    assert InternedString.objects.filter(value="firefox").count() == 1
    assert Span.objects.values("app_id").distinct().count() == 1


def test_titles_are_dropped_when_policy_disallows_them() -> None:
    agent = Agent.enrolled()
    agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 1, title="Secret plans")]})
    assert Span.objects.get().title_id is None
    assert not InternedString.objects.filter(value="Secret plans").exists()
    do_update_policy(None, None, {**policy_snapshot(default_policy()), "collect_titles": True})
    agent.send({"batch_seq": 2, "spans": [window(T0 + 5, T0 + 6, title="Quarterly report")]})
    title = Span.objects.get(batch__seq=2).title
    assert title is not None
    assert title.value == "Quarterly report"


def test_spans_of_disabled_collectors_are_dropped() -> None:
    agent = Agent.enrolled()
    do_update_policy(None, None, {**policy_snapshot(default_policy()), "collect_idle": False})
    response = agent.send(
        {"batch_seq": 1, "spans": [window(T0, T0 + 1), {"kind": "idle", "start": T0, "end": T0 + 300, "state": "idle"}]}
    )
    assert response.status_code == 200
    assert list(Span.objects.values_list("kind", flat=True)) == [SpanKind.WINDOW]


USB_EVENT = {
    "kind": "usb",
    "time": T0,
    "action": "insert",
    "verdict": "blocked",
    "vid": "0781",
    "pid": "5567",
    "serial": "4C530001234",
    "vendor": "SanDisk",
    "product": "Cruzer Blade",
    "class": "storage",
    "user": "eve",
}
FILE_EVENT = {"kind": "file", "time": T0 + 5, "path": "/media/eve/STICK/q3.xlsx", "size": 48213, "pid": 5012}


def test_events_are_stored_with_their_batch(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    events = [USB_EVENT, FILE_EVENT, {"kind": "app_block", "time": T0 + 9, "name": "steam", "future_field": 1}]
    response = agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 60)], "events": events})
    assert response.status_code == 200
    stored = list(DeviceEvent.objects.order_by("time"))
    kinds = [e.get_kind_display() for e in stored]
    assert kinds == ["USB device", "file written to removable media", "blocked application"]
    assert stored[0].person_id == personas.person("employee").pk
    assert stored[0].time.timestamp() == T0
    assert stored[0].data["class"] == "storage"
    assert stored[0].data["serial"] == "4C530001234"
    assert stored[1].data == {"path": "/media/eve/STICK/q3.xlsx", "size": 48213, "pid": 5012}
    assert "future_field" not in stored[2].data
    # A retry stores nothing twice.
    assert agent.send({"batch_seq": 1, "spans": [], "events": events}).status_code == 200
    assert DeviceEvent.objects.count() == 3


def _bomb() -> bytes:
    return gzip.compress(b'{"batch_seq": 1, "spans": [' + b" " * (50 * 1024 * 1024) + b"]}")


@pytest.mark.parametrize(
    ("body", "status", "field", "detail_part"),
    [
        (b'{"batch_seq": 1, "spans": [', 400, None, "not valid JSON"),
        (json.dumps({"spans": []}).encode(), 422, "batch_seq", "batch_seq"),
        (
            json.dumps({"batch_seq": 1, "spans": [window(T0, T0 + 1), {"kind": "window", "start": T0}]}).encode(),
            422,
            "spans[1].end",
            "spans[1].end",
        ),
        (json.dumps({"batch_seq": 1, "spans": [window(T0 + 10, T0)]}).encode(), 422, "spans[0].end", "before"),
        (
            json.dumps({"batch_seq": 1, "spans": [window(T0, T0 + 1), window(T0, 9e12)]}).encode(),
            422,
            "spans[1].end",
            "future",
        ),
        (
            json.dumps({"batch_seq": 1, "spans": [{**window(T0, T0 + 1), "kind": "keys"}]}).encode(),
            422,
            "spans[0].kind",
            "spans[0].kind",
        ),
        (
            json.dumps({"batch_seq": 1, "spans": [window(T0, T0 + 1)] * 1001}).encode(),
            422,
            "spans",
            "at most 1000",
        ),
        (
            json.dumps(
                {"batch_seq": 1, "spans": [window(T0, T0 + 1)], "events": [{**USB_EVENT, "vid": "7:1"}]}
            ).encode(),
            422,
            "events[0].vid",
            "events[0].vid",
        ),
        (
            json.dumps(
                {"batch_seq": 1, "spans": [], "events": [USB_EVENT, {"kind": "screenshot", "time": 1}]}
            ).encode(),
            422,
            "events[1].kind",
            "usb, file, app_block, web_block",
        ),
        (
            json.dumps({"batch_seq": 1, "spans": [], "events": [{**FILE_EVENT, "size": -1}]}).encode(),
            422,
            "events[0].size",
            "greater than or equal to 0",
        ),
        (
            json.dumps({"batch_seq": 1, "spans": [], "events": [{**FILE_EVENT, "time": 9e12}]}).encode(),
            422,
            "events[0].time",
            "plausible",
        ),
    ],
    ids=[
        "malformed-json",
        "missing-seq",
        "missing-end",
        "end-before-start",
        "future",
        "unknown-kind",
        "too-many",
        "bad-usb-vid",
        "unknown-event-kind",
        "negative-file-size",
        "event-in-the-future",
    ],
)
def test_bad_batch_is_refused_whole_naming_the_field(
    body: bytes, status: int, field: str | None, detail_part: str
) -> None:
    agent = Agent.enrolled()
    response = agent.post_raw(gzip.compress(body))
    assert response.status_code == status, response.content
    answer: dict[str, Any] = response.json()
    assert answer.get("field") == field
    assert detail_part in answer["detail"]
    assert nothing_stored()


def test_oversized_body_gets_413() -> None:
    agent = Agent.enrolled()
    import os

    response = agent.post_raw(os.urandom(3 * 1024 * 1024))
    assert response.status_code == 413
    assert nothing_stored()


def test_gzip_bomb_gets_413_without_inflating_it() -> None:
    agent = Agent.enrolled()
    bomb = _bomb()
    assert len(bomb) < 100 * 1024  # tiny on the wire, 50 MiB inflated
    response = agent.post_raw(bomb)
    assert response.status_code == 413
    assert "uncompressed" in response.json()["detail"]
    assert nothing_stored()


def test_unknown_encoding_and_broken_gzip_are_refused() -> None:
    agent = Agent.enrolled()
    assert agent.post_raw(b"{}", encoding="br").status_code == 415
    assert agent.post_raw(b"not gzip at all").status_code == 400
    assert agent.post_raw(gzip.compress(b'{"batch_seq": 1, "spans": []}')[:-12]).status_code == 400
    assert nothing_stored()


def test_nul_in_a_window_title_is_replaced_not_fatal() -> None:
    """PostgreSQL text cannot hold NUL; one odd title must not make a whole batch undeliverable."""
    do_update_policy(None, None, {**policy_snapshot(default_policy()), "collect_titles": True})
    agent = Agent.enrolled()
    response = agent.send({"batch_seq": 1, "spans": [window(T0, T0 + 10, app="od\x00d", title="a\x00b")]})
    assert response.status_code == 200
    span = Span.objects.select_related("app", "title").get()
    assert span.app is not None
    assert span.app.value == "od\ufffdd"
    assert span.title is not None
    assert span.title.value == "a\ufffdb"


@pytest.mark.parametrize("full_urls", [False, True])
def test_browser_tabs_keep_url_and_title_only_where_full_urls_are_allowed(full_urls: bool) -> None:
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)
    WebPolicy.objects.filter(team__isnull=True).update(full_urls=full_urls)
    agent = Agent.enrolled()
    tab = {
        "kind": "browser",
        "start": T0,
        "end": T0 + 30,
        "domain": "intranet.example",
        "url": "https://intranet.example/hr/salaries?q=eve",
        "title": "Salaries - Intranet",
    }
    assert agent.send({"batch_seq": 1, "spans": [tab]}).status_code == 200
    span = Span.objects.select_related("domain", "url", "title").get()
    assert span.domain is not None
    assert span.domain.value == "intranet.example"
    if full_urls:
        assert span.url is not None
        assert span.url.value == tab["url"]
        assert span.title is not None
        assert span.title.value == tab["title"]
    else:
        assert (span.url, span.title) == (None, None)
        assert not InternedString.objects.filter(value__startswith="https://").exists()
