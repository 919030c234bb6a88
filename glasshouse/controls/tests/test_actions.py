"""Control policy changes through `controls.actions`: versions, audit rows, inheritance, and
refused changes leaving the policy in force untouched."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from conftest import Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.controls import actions
from glasshouse.controls import validation as v
from glasshouse.controls.models import (
    CategoryDomain,
    RequestStatus,
    UsbAllowEntry,
    UsbPolicy,
    UsbPolicyVersion,
    WebCategory,
    WebPolicy,
    WebRule,
)
from glasshouse.devices.models import Device

pytestmark = pytest.mark.django_db


def test_the_migration_ships_defaults_and_a_category_list() -> None:
    default = UsbPolicy.objects.get(team__isnull=True)
    assert set(default.classes().values()) == {"allow"}
    assert UsbPolicyVersion.objects.filter(pk=default.version).exists()
    assert WebPolicy.objects.filter(team__isnull=True).exists()
    names = set(WebCategory.objects.values_list("name", flat=True))
    assert {"productive", "unproductive", "social", "streaming", "shopping", "news", "webmail", "file-sharing"} <= names
    assert CategoryDomain.objects.count() >= 300
    assert CategoryDomain.objects.filter(category__name="social", domain="facebook.com").exists()


def test_every_usb_change_is_a_new_version_kept_and_audited(personas: Personas) -> None:
    admin, team = personas.it_admin, personas.sales_team
    first = actions.do_add_usb_allow(admin, team, v.AllowEntry("0781", "5567", "ABC", "Finance stick"))
    v1 = first.version
    second = actions.do_set_usb_options(
        admin, team, classes={"storage": "read_only"}, block_unknown_keyboards=True, track_files=True
    )
    assert second.pk == first.pk
    assert second.version > v1
    old, new = UsbPolicyVersion.objects.get(pk=v1), UsbPolicyVersion.objects.get(pk=second.version)
    assert old.snapshot["classes"]["storage"] == "allow"
    assert new.snapshot["classes"]["storage"] == "read_only"
    assert new.snapshot["allow"] == [{"vid": "0781", "pid": "5567", "serial": "ABC", "label": "Finance stick"}]
    assert (new.team, new.actor_label) == (team, admin.email)
    entries = AuditEntry.objects.filter(action__startswith="controls.usb.").order_by("seq")
    assert [e.action for e in entries] == ["controls.usb.create", "controls.usb.update"]
    assert entries[1].before["classes"]["storage"] == "allow"
    assert entries[1].after["version"] == second.version


def test_saving_the_same_usb_policy_again_changes_nothing(personas: Personas) -> None:
    policy = actions.do_set_usb_options(
        personas.it_admin, None, classes={"hid": "block"}, block_unknown_keyboards=False, track_files=False
    )
    audits = AuditEntry.objects.count()
    again = actions.do_set_usb_options(
        personas.it_admin, None, classes={"hid": "block"}, block_unknown_keyboards=False, track_files=False
    )
    assert again.version == policy.version
    assert AuditEntry.objects.count() == audits


def test_a_refused_usb_change_leaves_the_policy_in_force(personas: Personas) -> None:
    admin = personas.it_admin
    policy = actions.do_add_usb_allow(admin, None, v.AllowEntry("0781", "5567"))
    audits, versions = AuditEntry.objects.count(), UsbPolicyVersion.objects.count()
    with pytest.raises(ValidationError) as caught:
        actions.do_set_usb_options(
            admin, None, classes={"printer": "read_only"}, block_unknown_keyboards=True, track_files=True
        )
    assert "printer" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        actions.do_add_usb_allow(admin, None, v.AllowEntry("0781", "5567", "", "again"))
    assert "already on the allow list" in caught.value.message_dict["vid"][0]
    with pytest.raises(ValidationError):
        actions.do_add_usb_allow(admin, None, v.AllowEntry("07811", "5567"))
    policy.refresh_from_db()
    assert (policy.printer, policy.block_unknown_keyboards) == ("allow", False)
    assert UsbAllowEntry.objects.filter(policy=policy).count() == 1
    assert (AuditEntry.objects.count(), UsbPolicyVersion.objects.count()) == (audits, versions)


def test_editing_an_inheriting_team_copies_what_it_followed(personas: Personas) -> None:
    admin = personas.it_admin
    actions.do_add_usb_allow(admin, personas.company, v.AllowEntry("0781", "5567", "", "company stick"))
    # Sales follows Company; adding an entry gives Sales its own policy with both entries.
    sales = actions.do_add_usb_allow(admin, personas.sales_team, v.AllowEntry("046d", "c52b", "", "receiver"))
    assert sales.team == personas.sales_team
    assert sorted(e.label for e in sales.entries.all()) == ["company stick", "receiver"]
    company = UsbPolicy.objects.get(team=personas.company)
    assert [e.label for e in company.entries.all()] == ["company stick"]


def test_removing_a_team_policy_keeps_its_versions(personas: Personas) -> None:
    admin = personas.it_admin
    policy = actions.do_add_usb_allow(admin, personas.sales_team, v.AllowEntry("0781", "5567"))
    actions.do_delete_usb_policy(admin, policy)
    assert not UsbPolicy.objects.filter(team=personas.sales_team).exists()
    assert UsbPolicyVersion.objects.filter(team=personas.sales_team).count() == 1
    assert AuditEntry.objects.filter(action="controls.usb.delete").exists()
    default = UsbPolicy.objects.get(team__isnull=True)
    with pytest.raises(ValidationError):
        actions.do_delete_usb_policy(admin, default)


def test_removing_an_allow_entry_by_a_stale_id_is_refused(personas: Personas) -> None:
    admin = personas.it_admin
    policy = actions.do_add_usb_allow(admin, None, v.AllowEntry("0781", "5567"))
    entry = policy.entries.get()
    actions.do_add_usb_allow(admin, None, v.AllowEntry("0781", "5568"))  # rewrites the entries
    with pytest.raises(ValidationError):
        actions.do_remove_usb_allow(admin, None, entry.pk)
    fresh = UsbPolicy.objects.get(team__isnull=True).entries.get(pid="5567")
    policy = actions.do_remove_usb_allow(admin, None, fresh.pk)
    assert [e.pid for e in policy.entries.all()] == ["5568"]


def test_web_rules_are_checked_against_the_whole_policy(personas: Personas) -> None:
    admin, team = personas.it_admin, personas.sales_team
    block = v.WebRuleInput("block", "domain", "facebook.com", ("mon", "tue"), dt.time(9), dt.time(17))
    actions.do_add_web_rule(admin, team, block)
    clash = v.WebRuleInput("allow", "domain", "facebook.com", ("tue",), dt.time(12), dt.time(13))
    with pytest.raises(ValidationError) as caught:
        actions.do_add_web_rule(admin, team, clash)
    # The clash is reported against the form's value field.
    assert "both blocked and allowed" in caught.value.message_dict["value"][0]
    assert WebRule.objects.filter(policy__team=team).count() == 1
    later = v.WebRuleInput("allow", "domain", "facebook.com", ("tue",), dt.time(17), dt.time(18))
    policy = actions.do_add_web_rule(admin, team, later)
    assert policy.rules.count() == 2
    assert AuditEntry.objects.filter(action="controls.web.update").exists()


def test_a_category_used_by_rules_cannot_be_deleted(personas: Personas) -> None:
    admin = personas.it_admin
    social = WebCategory.objects.get(name="social")
    actions.do_add_web_rule(admin, personas.sales_team, v.WebRuleInput("block", "category", "social"))
    with pytest.raises(ValidationError) as caught:
        actions.do_delete_category(admin, social)
    assert "Sales" in caught.value.message_dict["name"][0]
    games = actions.do_create_category(admin, "gambling", "Betting sites")
    actions.do_add_category_domain(admin, games, "Bet365.com")
    with pytest.raises(ValidationError):
        actions.do_add_category_domain(admin, games, "bet365.com")
    with pytest.raises(ValidationError):
        actions.do_create_category(admin, "gambling")
    actions.do_delete_category(admin, games)
    assert not WebCategory.objects.filter(name="gambling").exists()
    assert AuditEntry.objects.filter(action="controls.category.delete").exists()


def test_app_block_list(personas: Personas) -> None:
    admin = personas.it_admin
    policy = actions.do_add_app(admin, None, v.AppEntry("steam"))
    with pytest.raises(ValidationError):
        actions.do_add_app(admin, None, v.AppEntry(" steam "))
    policy = actions.do_add_app(admin, None, v.AppEntry("steam", "/usr/games/steam"))
    assert [(e.name, e.path) for e in policy.entries.all()] == [("steam", ""), ("steam", "/usr/games/steam")]
    policy = actions.do_remove_app(admin, None, policy.entries.get(path="").pk)
    assert [e.path for e in policy.entries.all()] == ["/usr/games/steam"]
    # The default exists from the migration: each change is an update of it.
    assert AuditEntry.objects.filter(action="controls.apps.update").count() == 3


def _device() -> Device:
    return Device.objects.create(key_hash="0" * 64, hostname="laptop-1", os="linux", agent_version="0.1.0")


def test_usb_requests_are_decided_once_and_audited(personas: Personas) -> None:
    device = _device()
    made = actions.do_request_usb_access(
        device, v.UsbRequestInput(vid="0781", pid="5567", reason="Slides for the client", minutes=30)
    )
    assert made.created
    again = actions.do_request_usb_access(
        device, v.UsbRequestInput(vid="0781", pid="5567", reason="Asking again", minutes=30)
    )
    assert (again.created, again.request.pk) == (False, made.request.pk)
    decided = actions.do_decide_usb_request(personas.it_admin, made.request, approve=True, note="ok")
    assert decided.status == RequestStatus.APPROVED
    assert decided.until is not None
    assert decided.decided_at is not None
    assert decided.until - decided.decided_at == dt.timedelta(minutes=30)
    with pytest.raises(ValidationError):
        actions.do_decide_usb_request(personas.it_admin, made.request, approve=False)
    assert list(
        AuditEntry.objects.filter(action__startswith="controls.usb_request.")
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["controls.usb_request.create", "controls.usb_request.approve"]


def test_a_device_cannot_flood_the_inbox() -> None:
    device = _device()
    for i in range(actions.MAX_PENDING_PER_DEVICE):
        actions.do_request_usb_access(
            device, v.UsbRequestInput(vid="0781", pid=f"{i:04x}", reason="Need it for work", minutes=30)
        )
    with pytest.raises(actions.TooManyRequests):
        actions.do_request_usb_access(
            device, v.UsbRequestInput(vid="0781", pid="ffff", reason="Need it for work", minutes=30)
        )


def test_offline_code_is_audited_but_not_stored(personas: Personas) -> None:
    device = _device()
    now = dt.datetime(2025, 1, 15, 9, 0, tzinfo=dt.UTC)
    issued = actions.do_issue_offline_code(personas.it_admin, device, vid="0781", pid="5567", minutes=60, now=now)
    assert issued.until == dt.datetime(2025, 1, 15, 10, 0, tzinfo=dt.UTC)
    assert issued.code.startswith("h8h4o-07815567-")
    entry = AuditEntry.objects.get(action="controls.offline_code.issue")
    assert entry.after["until"].startswith("2025-01-15T10:00")
    assert issued.code not in str(entry.after)
    with pytest.raises(ValidationError) as caught:
        actions.do_issue_offline_code(personas.it_admin, device, vid="781", pid="5567", minutes=60)
    assert "vid" in caught.value.message_dict
