"""What the agent sees: the control sections of its policy document (inheritance, category
expansion, temporary access appearing and expiring, the ETag following every change) and the
temporary USB access endpoints (auth, validation naming fields, another device's request)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from conftest import Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.controls import actions
from glasshouse.controls import validation as v
from glasshouse.controls.document import control_sections
from glasshouse.controls.models import CategoryDomain, OfflineKey, RequestStatus, UsbAccessRequest, WebCategory
from glasshouse.devices.models import Device
from glasshouse.ingest.tests.helpers import Agent

pytestmark = pytest.mark.django_db


def policy_of(agent: Agent) -> tuple[dict[str, Any], str]:
    response = agent.policy()
    assert response.status_code == 200
    return response.json(), response["ETag"]


def ask(agent: Agent, **overrides: Any) -> Any:
    body = {
        "vid": "0781",
        "pid": "5567",
        "serial": "4C530001234",
        "vendor": "SanDisk",
        "product": "Cruzer Blade",
        "reason": "Copy the board slides for the client",
        "minutes": 30,
        **overrides,
    }
    return agent.client.post(
        reverse("agent_api:usb_requests"), body, content_type="application/json", headers={"Authorization": agent.auth}
    )


def status_of(agent: Agent, request_id: int) -> Any:
    return agent.client.get(
        reverse("agent_api:usb_request", kwargs={"request_id": request_id}), headers={"Authorization": agent.auth}
    )


# --- the policy document ---------------------------------------------------------------------


def assert_no_contradictions(rules: list[dict[str, Any]]) -> None:
    """What agents require of a web section: no target both blocked and allowed at overlapping
    times (they refuse the whole section otherwise)."""

    def as_input(r: dict[str, Any]) -> v.WebRuleInput:
        s = r.get("schedule")
        if s is None:
            return v.WebRuleInput(r["action"], r["kind"], r["value"])
        start, end = (dt.time.fromisoformat(s[k]) for k in ("start", "end"))
        return v.WebRuleInput(r["action"], r["kind"], r["value"], tuple(s["days"]), start, end)

    items = [as_input(r) for r in rules]
    for i, a in enumerate(items):
        for b in items[:i]:
            same_target = (a.kind, a.value) == (b.kind, b.value)
            assert not (same_target and a.action != b.action and v.schedules_overlap(a, b)), (a, b)


def test_categories_never_make_a_contradictory_document(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    admin = personas.it_admin
    # A domain IT put in two categories, one blocked and one allowed, and one with an
    # explicit rule at some hours only.
    actions.do_add_category_domain(admin, WebCategory.objects.get(name="productive"), "youtube.com")
    actions.do_add_web_rule(admin, None, v.WebRuleInput("block", "category", "streaming"))
    actions.do_add_web_rule(admin, None, v.WebRuleInput("allow", "category", "productive"))
    actions.do_add_web_rule(
        admin, None, v.WebRuleInput("block", "domain", "github.com", ("sat", "sun"), dt.time(0), dt.time(23, 59))
    )
    rules = policy_of(agent)[0]["web"]["rules"]
    assert_no_contradictions(rules)
    youtube = [r["action"] for r in rules if r["value"] == "youtube.com"]
    assert youtube == ["allow"]  # between categories, allow wins
    github = [r for r in rules if r["value"] == "github.com"]
    assert [r["action"] for r in github] == ["block"]  # its own rule wins over the category


def test_rules_that_would_exceed_what_browsers_enforce_are_refused(personas: Personas) -> None:
    admin = personas.it_admin
    big = actions.do_create_category(admin, "big")
    CategoryDomain.objects.bulk_create(CategoryDomain(category=big, domain=f"site{i}.example") for i in range(990))
    actions.do_add_web_rule(admin, None, v.WebRuleInput("block", "category", "big"))
    with pytest.raises(ValidationError) as caught:
        actions.do_add_web_rule(admin, None, v.WebRuleInput("block", "category", "social"))
    assert "at most 1000" in caught.value.message_dict["rules"][0]
    for i in range(10):
        actions.do_add_category_domain(admin, big, f"more{i}.example")
    with pytest.raises(ValidationError) as caught:
        actions.do_add_category_domain(admin, big, "one-too-many.example")
    assert "Organisation default" in caught.value.message_dict["domain"][0]


def test_every_document_has_the_control_sections_with_safe_defaults() -> None:
    doc, _ = policy_of(Agent.enrolled())
    assert doc["usb"]["classes"] == dict.fromkeys(["storage", "mtp", "printer", "network", "hid", "other"], "allow")
    assert doc["usb"]["block_unknown_keyboards"] is False
    assert (doc["usb"]["allow"], doc["usb"]["temporary"]) == ([], [])
    assert doc["usb"]["version"] >= 1
    assert len(doc["usb"]["offline_key"]) == 32
    assert doc["removable"] == {"track_files": False}
    assert doc["web"] == {"full_urls": False, "rules": []}
    assert doc["apps"] == {"block": []}
    # The original sections are still there.
    assert {"collect", "schedule", "upload", "spool"} <= set(doc)


def test_offline_key_is_per_device_and_stable() -> None:
    a, b = Agent.enrolled(), Agent.enrolled()
    key_a = policy_of(a)[0]["usb"]["offline_key"]
    assert policy_of(a)[0]["usb"]["offline_key"] == key_a
    assert policy_of(b)[0]["usb"]["offline_key"] != key_a
    assert OfflineKey.objects.get(device_id=a.device_id).key == key_a


def test_team_policies_inherit_down_the_tree(personas: Personas) -> None:
    employee = personas.person("employee")  # in Sales, under Company
    agent = Agent.enrolled(employee)
    admin = personas.it_admin
    actions.do_set_usb_options(
        admin, personas.company, classes={"storage": "block"}, block_unknown_keyboards=True, track_files=True
    )
    actions.do_add_app(admin, personas.company, v.AppEntry("steam", "/usr/games/steam"))
    doc, _ = policy_of(agent)
    assert doc["usb"]["classes"]["storage"] == "block"
    assert doc["usb"]["block_unknown_keyboards"] is True
    assert doc["removable"] == {"track_files": True}
    assert doc["apps"] == {"block": [{"name": "steam", "path": "/usr/games/steam"}]}
    # Sales gets its own USB policy; apps still come from Company.
    sales = actions.do_add_usb_allow(admin, personas.sales_team, v.AllowEntry("0781", "5567", "", "Finance"))
    doc, _ = policy_of(agent)
    assert doc["usb"]["version"] == sales.version
    assert doc["usb"]["allow"] == [{"vid": "0781", "pid": "5567", "serial": "", "label": "Finance"}]
    assert doc["apps"]["block"][0]["name"] == "steam"
    # Someone in IT (also under Company) is not affected by Sales's policy.
    it_doc = control_sections(personas.person("it_admin"), None)
    assert it_doc["usb"]["allow"] == []
    assert it_doc["usb"]["classes"]["storage"] == "block"


def test_category_rules_are_expanded_into_domain_rules_with_the_person_zone(personas: Personas) -> None:
    employee = personas.person("employee")
    agent = Agent.enrolled(employee)
    admin = personas.it_admin
    actions.do_add_web_rule(
        admin, None, v.WebRuleInput("block", "category", "social", ("mon", "fri"), dt.time(9), dt.time(17))
    )
    actions.do_add_web_rule(admin, None, v.WebRuleInput("allow", "domain", "linkedin.com"))
    actions.do_add_web_rule(admin, None, v.WebRuleInput("allow", "url", "https://www.youtube.com/@company"))
    doc, _ = policy_of(agent)
    rules = doc["web"]["rules"]
    assert all(r["kind"] in ("domain", "url") for r in rules)
    facebook = next(r for r in rules if r["value"] == "facebook.com")
    assert facebook == {
        "action": "block",
        "kind": "domain",
        "value": "facebook.com",
        "schedule": {"days": ["mon", "fri"], "start": "09:00", "end": "17:00", "time_zone": "Europe/London"},
    }
    social = [r["value"] for r in rules if r["action"] == "block"]
    assert len(social) >= 30
    assert social == sorted(social)
    # Rules of their own come first; linkedin.com (in "social") is left out of the category
    # block, so the agent never gets it both blocked and allowed.
    assert rules[:2] == [
        {"action": "allow", "kind": "domain", "value": "linkedin.com"},
        {"action": "allow", "kind": "url", "value": "https://www.youtube.com/@company"},
    ]
    assert "linkedin.com" not in social
    assert_no_contradictions(rules)


def test_editing_a_category_changes_the_document_and_its_etag(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    actions.do_add_web_rule(personas.it_admin, None, v.WebRuleInput("block", "category", "streaming"))
    _doc, etag = policy_of(agent)
    assert agent.policy(etag).status_code == 304
    actions.do_add_category_domain(personas.it_admin, WebCategory.objects.get(name="streaming"), "example-tv.com")
    doc2, etag2 = policy_of(agent)
    assert etag2 != etag
    assert {"action": "block", "kind": "domain", "value": "example-tv.com"} in doc2["web"]["rules"]


def test_usb_changes_change_the_etag(personas: Personas) -> None:
    agent = Agent.enrolled()
    _, etag = policy_of(agent)
    actions.do_set_usb_options(
        personas.it_admin, None, classes={"hid": "block"}, block_unknown_keyboards=False, track_files=False
    )
    response = agent.policy(etag)
    assert response.status_code == 200
    assert response.json()["usb"]["classes"]["hid"] == "block"


def test_temporary_access_appears_when_approved_and_drops_out_when_it_ends(personas: Personas) -> None:
    agent, other = Agent.enrolled(), Agent.enrolled()
    request_id = ask(agent).json()["request"]
    _, etag = policy_of(agent)
    actions.do_decide_usb_request(personas.it_admin, UsbAccessRequest.objects.get(pk=request_id), approve=True)
    approved = UsbAccessRequest.objects.get(pk=request_id)
    assert approved.until is not None
    doc, etag2 = policy_of(agent)
    assert etag2 != etag
    assert doc["usb"]["temporary"] == [
        {
            "request": request_id,
            "vid": "0781",
            "pid": "5567",
            "serial": "4C530001234",
            "until": int(approved.until.timestamp()),
        }
    ]
    assert policy_of(other)[0]["usb"]["temporary"] == []
    # Time passes: the entry drops out, the document and ETag change with it.
    UsbAccessRequest.objects.filter(pk=request_id).update(until=timezone.now() - dt.timedelta(seconds=1))
    doc3, etag3 = policy_of(agent)
    assert doc3["usb"]["temporary"] == []
    assert etag3 != etag2


# --- the temporary access endpoints ----------------------------------------------------------


def test_ask_and_poll(personas: Personas) -> None:
    agent = Agent.enrolled(personas.person("employee"))
    response = ask(agent)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    made = UsbAccessRequest.objects.get(pk=body["request"])
    assert (made.person, made.vendor, made.minutes) == (personas.person("employee"), "SanDisk", 30)
    assert AuditEntry.objects.get(action="controls.usb_request.create").actor_label == "agent on laptop-1"
    assert status_of(agent, made.pk).json() == {"status": "pending", "until": None, "note": ""}
    actions.do_decide_usb_request(personas.it_admin, made, approve=False, note="Use the shared drive")
    assert status_of(agent, made.pk).json() == {"status": "denied", "until": None, "note": "Use the shared drive"}


def test_asking_again_while_pending_returns_the_same_request() -> None:
    agent = Agent.enrolled()
    first = ask(agent).json()["request"]
    assert ask(agent).json()["request"] == first
    assert UsbAccessRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"vid": "781"}, "vid"),
        ({"pid": "55g7"}, "pid"),
        ({"reason": "short"}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"minutes": 4}, "minutes"),
        ({"minutes": 1441}, "minutes"),
        ({"minutes": "soon"}, "minutes"),
        ({"serial": "caf\u00e9"}, "serial"),
        ({"serial": "x" * 127}, "serial"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    response = ask(Agent.enrolled(), **overrides)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["detail"]
    assert not UsbAccessRequest.objects.exists()


def test_a_missing_reason_is_named() -> None:
    agent = Agent.enrolled()
    response = agent.client.post(
        reverse("agent_api:usb_requests"),
        {"vid": "0781", "pid": "5567", "minutes": 30},
        content_type="application/json",
        headers={"Authorization": agent.auth},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "reason"


def test_too_many_pending_requests_is_429() -> None:
    agent = Agent.enrolled()
    for i in range(actions.MAX_PENDING_PER_DEVICE):
        assert ask(agent, pid=f"{i:04x}").status_code == 201
    response = ask(agent, pid="ffff")
    assert response.status_code == 429
    assert "waiting" in response.json()["detail"]


def test_another_devices_request_is_not_found() -> None:
    mine, theirs = Agent.enrolled(), Agent.enrolled()
    request_id = ask(theirs).json()["request"]
    response = status_of(mine, request_id)
    assert response.status_code == 404
    assert status_of(mine, 10**6).status_code == 404
    assert status_of(mine, 2**63).status_code == 422


def test_the_endpoints_need_a_device_key(client: Any) -> None:
    agent = Agent.enrolled()
    request_id = ask(agent).json()["request"]
    assert client.post(reverse("agent_api:usb_requests"), {}, content_type="application/json").status_code == 401
    url = reverse("agent_api:usb_request", kwargs={"request_id": request_id})
    assert client.get(url, headers={"Authorization": f"Device {agent.device_id}:wrong"}).status_code == 401
    Device.objects.filter(pk=agent.device_id).update(revoked_at=timezone.now())
    assert status_of(agent, request_id).status_code == 401
    assert ask(agent).status_code == 401
    assert UsbAccessRequest.objects.filter(status=RequestStatus.PENDING).count() == 1


def test_the_ingest_path_does_not_build_the_control_sections() -> None:
    """Batches read only the collect switches; the control sections (category expansion, the
    offline key) are built only for the policy document and its ETag."""
    from glasshouse.devices.policy import resolve_for_device

    device = Device.objects.get(pk=Agent.enrolled().device_id)
    resolved = resolve_for_device(device)
    assert resolved.collects("window") is True
    assert resolved.titles is False
    assert "document" not in vars(resolved)
    assert not OfflineKey.objects.exists()
    assert resolved.etag
    assert "usb" in vars(resolved)["document"]
    assert OfflineKey.objects.filter(device=device).exists()
