"""The `usb` policy section, the rules made from it, offline codes: no daemon needed, except
usbguard-rule-parser, USBGuard's own parser, which every generated rule must pass."""

from __future__ import annotations

import base64
import itertools
import shutil
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glasshouse_agent.policy import PolicyError
from glasshouse_agent.usb import decide, for_helpers, parse_usb, read_only_storage
from glasshouse_agent.usb.device import parse_descriptors, parse_device_rule, quote, tokenize
from glasshouse_agent.usb.offline import CodeError, base36, check, make_code, parse_code
from glasshouse_agent.usb.policy import CLASSES, TemporaryEntry
from glasshouse_agent.usb.rules import RuleError, generate_rules, validate_rules
from tests.conftest import make_policy
from tests.usbmock import DUCKY, HUB, KEYBOARD, MOUSE, NIC, STICK, WEBCAM, UsbDev, descriptors, require_usbguard

KEY_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def section(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 7,
        "classes": dict.fromkeys(CLASSES, "allow"),
        "block_unknown_keyboards": False,
        "allow": [],
        "temporary": [],
        "offline_key": KEY_B32,
    }
    doc.update(overrides)
    return doc


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"version": "7"}, "usb.version"),
        ({"classes": {"storage": "maybe"}}, "usb.classes.storage"),
        ({"classes": {"hid": "read_only"}}, "usb.classes.hid"),
        ({"classes": {"floppy": "block"}}, "usb.classes.floppy"),
        ({"block_unknown_keyboards": "yes"}, "usb.block_unknown_keyboards"),
        ({"allow": [{"vid": "781", "pid": "5567"}]}, "usb.allow[0].vid"),
        ({"allow": [{"vid": "0781", "pid": "55G7"}]}, "usb.allow[0].pid"),
        ({"allow": [{"vid": "0781", "pid": "5567", "serial": 'a"b\n'}]}, "usb.allow[0].serial"),
        ({"allow": [{"vid": "0781", "pid": "5567"}, {"vid": "0781", "pid": "5567"}]}, "usb.allow[1]"),
        ({"allow": {"vid": "0781"}}, "usb.allow"),
        ({"temporary": [{"request": 1, "vid": "0781", "pid": "5567", "until": "soon"}]}, "usb.temporary[0].until"),
        ({"temporary": [{"vid": "0781", "pid": "5567", "until": 1}]}, "usb.temporary[0].request"),
        ({"offline_key": "not base32!"}, "usb.offline_key"),
        ({"offline_key": "ABC"}, "usb.offline_key"),
    ],
)
def test_malformed_sections_are_refused_naming_the_field(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_usb(section(**bad))
    assert err.value.field == field


def test_a_good_section_parses_and_an_empty_one_means_unmanaged() -> None:
    usb = parse_usb(
        section(
            classes={**dict.fromkeys(CLASSES, "allow"), "storage": "read_only"},
            allow=[{"vid": "0781", "pid": "5567", "serial": "4C530001234", "label": "Finance stick"}],
            temporary=[{"request": 12, "vid": "0781", "pid": "5567", "serial": "", "until": 1764165600}],
        )
    )
    assert usb is not None
    assert usb.version == 7
    assert usb.offline_key == base64.b32decode(KEY_B32)
    assert usb.allow[0].label == "Finance stick"
    assert usb.temporary[0].request == 12
    assert KEY_B32 not in repr(usb)
    assert repr(usb.offline_key) not in repr(usb)
    assert parse_usb({}) is None
    assert parse_usb(None) is None
    assert read_only_storage(make_policy(usb=section(classes={"storage": "read_only"})))
    assert not read_only_storage(make_policy(usb=section()))
    assert not read_only_storage(make_policy(usb={"version": "broken"}))
    assert not read_only_storage(make_policy())


def test_session_helpers_never_see_the_offline_key() -> None:
    doc = make_policy(usb=section()).to_json()
    assert doc["usb"]["offline_key"] == KEY_B32
    shown = for_helpers(doc)
    assert "offline_key" not in shown["usb"]
    assert shown["usb"]["version"] == 7
    assert doc["usb"]["offline_key"] == KEY_B32  # the stored policy keeps it


def test_decide() -> None:
    now = time.time()
    usb = parse_usb(
        section(
            classes={**dict.fromkeys(CLASSES, "allow"), "storage": "block", "network": "block"},
            block_unknown_keyboards=True,
            allow=[{"vid": "0781", "pid": "5567", "serial": "4C530001234"}],
            temporary=[{"request": 3, "vid": "1337", "pid": "0001", "serial": "", "until": now - 1}],
        )
    )
    assert usb is not None

    def verdict(dev: UsbDev, grants: tuple[TemporaryEntry, ...] = ()) -> tuple[str, str]:
        vid, pid = dev.ids
        return decide(usb, vid, pid, dev.serial, dev.interfaces, now=now, grants=grants)

    assert verdict(STICK) == ("allowed", "storage")
    assert decide(usb, "0781", "5567", "OTHER", STICK.interfaces, now=now) == ("blocked", "storage")
    assert verdict(KEYBOARD) == ("blocked", "hid")
    assert verdict(MOUSE) == ("allowed", "hid")
    assert verdict(DUCKY) == ("blocked", "hid")  # expired temporary access does not count
    grant = TemporaryEntry("1337", "0001", "", now + 60, None, offline=True)
    assert verdict(DUCKY, grants=(grant,)) == ("allowed", "storage")
    assert verdict(NIC) == ("blocked", "network")
    assert verdict(HUB) == ("allowed", "other")
    assert verdict(WEBCAM) == ("allowed", "other")
    read_only = parse_usb(section(classes={**dict.fromkeys(CLASSES, "allow"), "storage": "read_only"}))
    assert read_only is not None
    assert decide(read_only, "0781", "5567", "X", STICK.interfaces, now=now) == ("read_only", "storage")


def test_descriptors_and_device_rules_are_read() -> None:
    assert parse_descriptors(descriptors(DUCKY)) == ((3, 0, 1), (8, 6, 0x50))
    assert parse_descriptors(b"\x00\x01garbage") == ()
    rule = (
        'block id 0781:5567 serial "4C53\\"0001" name "Cruzer Blade" hash "abc=" parent-hash "def=" '
        'via-port "1-2" with-interface { 08:06:50 ff:00:00 } with-connect-type "hotplug"'
    )
    device = parse_device_rule(rule, 5)
    assert (device.vid, device.pid, device.serial, device.product, device.port) == (
        "0781",
        "5567",
        '4C53"0001',
        "Cruzer Blade",
        "1-2",
    )
    assert device.interfaces == ((8, 6, 0x50), (0xFF, 0, 0))
    assert device.target == "block"
    assert device.id == 5
    single = parse_device_rule('allow id 1d6b:0002 serial "" name "" via-port "usb1" with-interface 09:00:00')
    assert single.interfaces == ((9, 0, 0),)
    assert tokenize(quote('a"b\\c')) == ['a"b\\c']


def _policies() -> list[dict[str, Any]]:
    out = []
    for storage, other, hid, keyboards in itertools.product(
        ("allow", "block", "read_only"), ("allow", "block"), ("allow", "block"), (False, True)
    ):
        classes = {**dict.fromkeys(CLASSES, "allow"), "storage": storage, "other": other, "hid": hid, "mtp": "block"}
        out.append(
            section(
                classes=classes,
                block_unknown_keyboards=keyboards,
                allow=[
                    {"vid": "0781", "pid": "5567", "serial": 'odd "serial" \\ here'},
                    {"vid": "046d", "pid": "c31c", "serial": ""},
                ],
                temporary=[{"request": 1, "vid": "abcd", "pid": "ef01", "serial": "S1", "until": time.time() + 600}],
            )
        )
    return out


def test_every_generated_rule_passes_usbguard_rule_parser() -> None:
    require_usbguard() if shutil.which("usbguard-rule-parser") is None else None
    rules: set[str] = set()
    for doc in _policies():
        usb = parse_usb(doc)
        assert usb is not None
        generated = generate_rules(usb, now=time.time())
        assert generated[0] == "allow with-interface match-all { 09:*:* }"
        assert generated[-1] in ("allow", "block")
        rules.update(generated)
    validate_rules(sorted(rules))
    with pytest.raises(RuleError):
        validate_rules(["allow with-interface 03:*:01"])


@settings(max_examples=25, deadline=None)
@given(serial=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_any_serial_the_policy_accepts_makes_a_valid_rule(serial: str) -> None:
    if shutil.which("usbguard-rule-parser") is None:
        pytest.skip("usbguard-rule-parser missing")
    usb = parse_usb(section(allow=[{"vid": "0781", "pid": "5567", "serial": serial}]))
    assert usb is not None
    rules = generate_rules(usb, now=0)
    validate_rules(rules[1:2])
    if serial:
        assert tokenize(rules[1])[-1] == serial


def test_offline_codes() -> None:
    key = base64.b32decode(KEY_B32)
    minute = 29_402_760  # 2025-11-26 10:00 UTC
    code = make_code(key, minute, "0781", "5567", "4C530001234")
    until, ids, tag = code.split("-")
    assert until == base36(minute)
    assert int(until, 36) == minute
    assert ids == "07815567"
    assert len(tag) == 10
    assert tag == tag.upper()
    parsed = parse_code(code)
    assert parsed.until == minute * 60
    assert (parsed.vid, parsed.pid) == ("0781", "5567")
    assert check(key, parsed, "4C530001234")
    assert not check(key, parsed, "")
    assert not check(key, parsed, "OTHER")
    assert not check(b"other key", parsed, "4C530001234")
    assert not check(b"", parsed, "4C530001234")
    assert check(key, parse_code(code.lower()), "4C530001234")
    assert check(key, parse_code(code.upper()), "4C530001234")
    any_serial = parse_code(make_code(key, minute, "0781", "5567"))
    assert check(key, any_serial, "")
    tampered = parse_code(f"{base36(minute + 1)}-{ids}-{tag}")
    assert not check(key, tampered, "4C530001234")
    for bad in ("", "hello", f"{until}-0781556-{tag}", f"{until}-07815567-{tag[:9]}", f"{until}-07815567-{tag}1"):
        with pytest.raises(CodeError):
            parse_code(bad)


def test_offline_codes_match_the_protocol_test_vector() -> None:
    # docs/agent-protocol.md gives this vector; the server's tests check the same one, so a code
    # made in the web UI is accepted here.
    key = base64.b32decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    assert base36(28948920) == "h8h4o"
    assert make_code(key, 28948920, "0781", "5567", "4C530001234") == "h8h4o-07815567-62VR6MFI3D"
    assert make_code(key, 28948920, "0781", "5567", "") == "h8h4o-07815567-GBKGIXTDOZ"
    parsed = parse_code("H8H4O-07815567-gbkgixtdoz")  # typed in the other case
    assert check(key, parsed, "")
    assert not check(key, parsed, "4C530001234")
