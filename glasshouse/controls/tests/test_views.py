"""The control pages as people use them: IT admins edit, security analysts read, everyone
else is refused (pages and form posts alike); bad input is refused with the field named and
the policy in force unchanged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from conftest import Personas
from glasshouse.activity.models import DeviceEvent, EventKind, IngestBatch
from glasshouse.audit.models import AuditEntry
from glasshouse.controls import actions
from glasshouse.controls import validation as v
from glasshouse.controls.document import offline_key_for
from glasshouse.controls.models import AppPolicy, UsbAccessRequest, UsbPolicy, WebCategory, WebRule
from glasshouse.controls.offline import offline_code
from glasshouse.devices.models import Device

pytestmark = pytest.mark.django_db

ClientFor = Callable[[str], Client]


def post(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    client.get(reverse("core:home"))
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def usb_form(**overrides: Any) -> dict[str, Any]:
    return {
        "storage": "allow",
        "mtp": "allow",
        "printer": "allow",
        "network": "allow",
        "hid": "allow",
        "other": "allow",
        **overrides,
    }


def _device(hostname: str = "laptop-1") -> Device:
    return Device.objects.create(key_hash="0" * 64, hostname=hostname, os="linux", agent_version="0.1.0")


def test_it_admin_edits_a_teams_usb_policy(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("it_admin")
    scope = str(personas.sales_team.pk)
    page = client.get(reverse("controls:usb", kwargs={"scope": scope}))
    assert "follows" in page.content.decode()
    response = post(
        client,
        reverse("controls:usb", kwargs={"scope": scope}),
        usb_form(storage="read_only", block_unknown_keyboards="on", track_files="on"),
    )
    assert response.status_code == 302
    policy = UsbPolicy.objects.get(team=personas.sales_team)
    assert (policy.storage, policy.block_unknown_keyboards, policy.track_files) == ("read_only", True, True)
    response = post(
        client,
        reverse("controls:usb_allow_add", kwargs={"scope": scope}),
        {"vid": "0781", "pid": "5567", "serial": "", "label": "Finance"},
    )
    assert response.status_code == 302
    text = client.get(reverse("controls:usb", kwargs={"scope": scope})).content.decode()
    assert "0781:5567" in text
    assert "Finance" in text
    history = client.get(reverse("controls:usb_history", kwargs={"scope": scope})).content.decode()
    assert str(UsbPolicy.objects.get(team=personas.sales_team).version) in history


def test_bad_usb_input_is_refused_naming_the_field(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    before = UsbPolicy.objects.get(team__isnull=True).version
    response = post(client, reverse("controls:usb", kwargs={"scope": "default"}), usb_form(printer="read_only"))
    assert response.status_code == 400
    assert "mass storage only" in response.context["options_form"].errors["printer"][0]
    response = post(
        client, reverse("controls:usb_allow_add", kwargs={"scope": "default"}), {"vid": "07811", "pid": "5567"}
    )
    assert response.status_code == 400
    assert "4 hex digits" in response.context["allow_form"].errors["vid"][0]
    assert "Nothing was saved" in response.content.decode()
    assert UsbPolicy.objects.get(team__isnull=True).version == before


def test_it_admin_adds_web_rules_and_contradictions_are_refused(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    url = reverse("controls:web_rule_add", kwargs={"scope": "default"})
    rule = {
        "action": "block",
        "kind": "domain",
        "value": "facebook.com",
        "days": ["mon"],
        "start": "09:00",
        "end": "17:00",
    }
    assert post(client, url, rule).status_code == 302
    response = post(client, url, {**rule, "action": "allow", "start": "12:00", "end": "13:00"})
    assert response.status_code == 400
    assert "both blocked and allowed" in response.context["rule_form"].errors["value"][0]
    response = post(client, url, {**rule, "value": "x.com", "start": "17:00", "end": "09:00"})
    assert response.status_code == 400
    assert "overnight" in response.context["rule_form"].errors["end"][0]
    response = post(client, url, {"action": "block", "kind": "category", "value": "gamez"})
    assert "Unknown category" in response.context["rule_form"].errors["value"][0]
    assert WebRule.objects.count() == 1
    rule_pk = WebRule.objects.get().pk
    assert (
        post(client, reverse("controls:web_rule_remove", kwargs={"scope": "default", "pk": rule_pk})).status_code == 302
    )
    assert not WebRule.objects.exists()


def test_it_admin_blocks_and_unblocks_an_app_for_a_team(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("it_admin")
    scope = str(personas.sales_team.pk)
    assert post(client, reverse("controls:app_add", kwargs={"scope": scope}), {"name": "steam"}).status_code == 302
    response = post(client, reverse("controls:app_add", kwargs={"scope": scope}), {"name": "steam"})
    assert response.status_code == 400
    assert "already on the block list" in response.context["form"].errors["name"][0]
    assert post(client, reverse("controls:apps_delete", kwargs={"scope": scope})).status_code == 302
    assert not AppPolicy.objects.filter(team=personas.sales_team).exists()


def test_security_analyst_reads_but_cannot_change(client_for: ClientFor, personas: Personas) -> None:
    client = client_for("security")
    page = client.get(reverse("controls:usb", kwargs={"scope": "default"}))
    assert page.status_code == 200
    assert b'<form method="post" class="stack card"' not in page.content
    assert post(client, reverse("controls:usb", kwargs={"scope": "default"}), usb_form(hid="block")).status_code == 403
    assert post(client, reverse("controls:web", kwargs={"scope": "default"}), {"full_urls": "on"}).status_code == 403
    assert post(client, reverse("controls:categories"), {"name": "x"}).status_code == 403
    assert client.get(reverse("controls:offline_code")).status_code == 403
    assert UsbPolicy.objects.get(team__isnull=True).hid == "allow"


@pytest.mark.parametrize("persona", ["hr", "manager", "employee", "auditor", "outsider"])
def test_everyone_outside_it_is_refused_pages_and_posts(
    client_for: ClientFor, personas: Personas, persona: str
) -> None:
    device = _device()
    access = actions.do_request_usb_access(
        device, v.UsbRequestInput(vid="0781", pid="5567", reason="Need the slides now", minutes=30)
    ).request
    client = client_for(persona)
    for name, kwargs in [
        ("controls:overview", {}),
        ("controls:usb_requests", {}),
        ("controls:events", {}),
        ("controls:usb", {"scope": "default"}),
        ("controls:web", {"scope": "default"}),
        ("controls:categories", {}),
    ]:
        response = client.get(reverse(name, kwargs=kwargs))
        assert response.status_code == 403, name
        assert b"laptop-1" not in response.content
    assert (
        post(
            client, reverse("controls:usb_request_decide", kwargs={"pk": access.pk}), {"decision": "approve"}
        ).status_code
        == 403
    )
    assert post(client, reverse("controls:usb", kwargs={"scope": "default"}), usb_form(hid="block")).status_code == 403
    assert (
        post(
            client,
            reverse("controls:offline_code"),
            {"device": str(device.pk), "vid": "0781", "pid": "5567", "minutes": "60"},
        ).status_code
        == 403
    )
    access.refresh_from_db()
    assert access.status == "pending"


def test_inbox_lists_and_decides_requests(client_for: ClientFor, personas: Personas) -> None:
    device = _device()
    device.person = personas.person("employee")
    device.save()
    access = actions.do_request_usb_access(
        device,
        v.UsbRequestInput(vid="0781", pid="5567", reason="Client slides on a stick", minutes=45, product="Cruzer"),
    ).request
    client = client_for("it_admin")
    page = client.get(reverse("controls:usb_requests")).content.decode()
    for text in ("laptop-1", "Eve Employee", "0781:5567", "Cruzer", "Client slides on a stick", "45"):
        assert text in page
    response = post(
        client, reverse("controls:usb_request_decide", kwargs={"pk": access.pk}), {"decision": "approve", "note": "ok"}
    )
    assert response.status_code == 302
    access.refresh_from_db()
    assert access.status == "approved"
    assert access.until is not None
    # A second decision is refused with a message, not applied.
    post(client, reverse("controls:usb_request_decide", kwargs={"pk": access.pk}), {"decision": "deny"})
    access.refresh_from_db()
    assert access.status == "approved"
    assert AuditEntry.objects.filter(action="controls.usb_request.approve").count() == 1


def test_offline_code_page_shows_the_code_once(client_for: ClientFor) -> None:
    device = _device()
    client = client_for("it_admin")
    assert client.get(reverse("controls:offline_code")).status_code == 200
    response = post(
        client,
        reverse("controls:offline_code"),
        {"device": str(device.pk), "vid": "0781", "pid": "5567", "serial": "", "minutes": "60"},
    )
    assert response.status_code == 200
    issued = response.context["issued"]
    until, ids, _ = issued.code.split("-")
    assert ids == "07815567"
    key = offline_key_for(device)
    assert issued.code == offline_code(key, int(until, 36), "0781", "5567", "")
    assert issued.code in response.content.decode()
    bad = post(
        client,
        reverse("controls:offline_code"),
        {"device": str(device.pk), "vid": "xyz", "pid": "5567", "minutes": "60"},
    )
    assert bad.status_code == 400
    assert "vid" in bad.context["form"].errors


def test_categories_are_editable(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    social = WebCategory.objects.get(name="social")
    page = client.get(reverse("controls:category", kwargs={"pk": social.pk})).content.decode()
    assert "facebook.com" in page
    url = reverse("controls:category", kwargs={"pk": social.pk})
    assert post(client, url, {"domain": "Example-Social.com"}).status_code == 302
    assert social.domains.filter(domain="example-social.com").exists()
    response = post(client, url, {"domain": "https://bad/"})
    assert response.status_code == 400
    assert "domain" in response.context["form"].errors
    row = social.domains.get(domain="example-social.com")
    remove = reverse("controls:category_domain_remove", kwargs={"pk": social.pk, "domain_pk": row.pk})
    assert post(client, remove).status_code == 302
    assert not social.domains.filter(domain="example-social.com").exists()


def _events(device: Device, count: int, kind: EventKind, start: dt.datetime) -> None:
    batch = IngestBatch.objects.create(device=device, spool_id="", seq=1, span_count=0, gaps=[])
    DeviceEvent.objects.bulk_create(
        DeviceEvent(
            batch_id=batch.pk,
            device=device,
            kind=kind,
            time=start + dt.timedelta(minutes=i),
            data={"kind_note": i, "name": f"app{i}", "user": "alice"},
        )
        for i in range(count)
    )


def test_events_log_filters_and_pages(client_for: ClientFor) -> None:
    client = client_for("security")
    empty = client.get(reverse("controls:events"))
    assert "No events yet" in empty.content.decode()
    device = _device("build-box")
    _events(device, 60, EventKind.APP_BLOCK, dt.datetime(2025, 1, 15, 9, tzinfo=dt.UTC))
    DeviceEvent.objects.create(
        batch_id=IngestBatch.objects.get().pk,
        device=device,
        kind=EventKind.USB,
        time=dt.datetime(2025, 1, 14, 9, tzinfo=dt.UTC),
        data={"action": "insert", "verdict": "blocked", "vid": "0781", "pid": "5567", "class": "storage"},
    )
    first = client.get(reverse("controls:events"))
    body = first.content.decode()
    assert "build-box" in body
    assert "stopped app59" in body
    assert first.context["has_next"] is True
    assert len(first.context["events"]) == 50
    second = client.get(reverse("controls:events"), {"page": 2})
    assert len(second.context["events"]) == 11
    usb = client.get(reverse("controls:events"), {"kind": "usb"})
    assert [row["summary"] for row in usb.context["events"]] == ["insert 0781:5567 [storage] → blocked"]
    day = client.get(reverse("controls:events"), {"since": "2025-01-14", "until": "2025-01-14"})
    assert len(day.context["events"]) == 1
    assert "kind=usb" in client.get(reverse("controls:events"), {"kind": "usb"}).context["query"]
    assert client.get(reverse("controls:events"), {"kind": "nope"}).status_code == 400
    # No per-person filter is offered: person-level views sit behind the purpose gate.
    assert "person" not in first.context["form"].fields


def test_overview_shows_what_each_team_follows(client_for: ClientFor, personas: Personas) -> None:
    actions.do_add_app(personas.it_admin, personas.company, v.AppEntry("steam"))
    page = client_for("it_admin").get(reverse("controls:overview"))
    rows = {r["team"].name: r for r in page.context["rows"]}
    assert rows["Company"]["apps"] == "own"
    assert rows["Sales"]["apps"] == "Company"
    assert rows["Sales"]["usb"] == "default"


def test_pending_count_on_overview_and_menu(client_for: ClientFor) -> None:
    device = _device()
    actions.do_request_usb_access(device, v.UsbRequestInput(vid="0781", pid="5567", reason="Need it today", minutes=30))
    page = client_for("it_admin").get(reverse("controls:overview"))
    assert page.context["pending"] == 1
    assert UsbAccessRequest.objects.count() == 1
