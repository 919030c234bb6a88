"""The policy rules in `controls.validation`: bad input is refused with a message naming the
field; good input comes back normalised. No database."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from glasshouse.controls import validation as v

CATEGORIES = ["social", "streaming"]
T = dt.time


def errors_of(call: object, *args: object, **kwargs: object) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.message_dict


# --- USB -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["781", "07811", "07g1", "", "0781:5567", " 12 "])
def test_vid_must_be_four_hex_digits(bad: str) -> None:
    errors = errors_of(v.check_allow_entry, v.AllowEntry(vid=bad, pid="5567"))
    assert list(errors) == ["vid"]
    assert "4 hex digits" in errors["vid"][0]


def test_serials_are_printable_ascii_of_at_most_126_characters() -> None:
    assert v.check_allow_entry(v.AllowEntry("0781", "5567", "AB 12-x")).serial == "AB 12-x"
    for bad in ("caf\u00e9", "a\tb", "x" * 127):
        assert list(errors_of(v.check_allow_entry, v.AllowEntry("0781", "5567", bad))) == ["serial"]


def test_ids_are_normalised_to_lower_case() -> None:
    entry = v.check_allow_entry(v.AllowEntry(vid=" 0x0781 ", pid="55AB", serial=" 4C53 ", label=" Finance "))
    assert entry == v.AllowEntry(vid="0781", pid="55ab", serial="4C53", label="Finance")


def test_pid_error_names_pid() -> None:
    assert list(errors_of(v.check_allow_entry, v.AllowEntry(vid="0781", pid="zzzz"))) == ["pid"]


def test_read_only_is_for_storage_only() -> None:
    classes = {**v.UsbSettings().classes, "storage": "read_only", "printer": "read_only"}
    errors = errors_of(v.check_usb, v.UsbSettings(classes=classes))
    assert list(errors) == ["printer"]
    assert "mass storage only" in errors["printer"][0]


def test_unknown_class_and_verdict_are_named() -> None:
    errors = errors_of(v.check_usb, v.UsbSettings(classes={"storage": "maybe", "toaster": "block"}))
    assert set(errors) == {"storage", "classes"}


def test_the_same_device_twice_is_refused_naming_the_entry() -> None:
    allow = (
        v.AllowEntry("0781", "5567", "ABC", "one"),
        v.AllowEntry("0781", "5567", "", "any serial is a different entry"),
        v.AllowEntry("0781", "5567", "ABC", "two"),
    )
    errors = errors_of(v.check_usb, v.UsbSettings(allow=allow))
    assert list(errors) == ["allow[2]"]
    assert "twice" in errors["allow[2]"][0]


def test_a_malformed_entry_is_named_by_position() -> None:
    errors = errors_of(v.check_usb, v.UsbSettings(allow=(v.AllowEntry("0781", "5567"), v.AllowEntry("78", "1"))))
    assert set(errors) == {"allow[1].vid", "allow[1].pid"}


# --- web -------------------------------------------------------------------------------------


def rule(action: str, kind: str, value: str, days: tuple[str, ...] = (), start: T | None = None, end: T | None = None):  # type: ignore[no-untyped-def]
    return v.WebRuleInput(action, kind, value, days, start, end)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Facebook.com", "facebook.com"), ("*.example.org.", "example.org"), ("bücher.de", "xn--bcher-kva.de")],
)
def test_domains_are_normalised(value: str, expected: str) -> None:
    assert v.check_web_rule(rule("block", "domain", value), CATEGORIES).value == expected


@pytest.mark.parametrize("bad", ["https://facebook.com", "facebook.com/groups", "face book.com", "-x.com", ""])
def test_bad_domains_are_refused_naming_value(bad: str) -> None:
    assert list(errors_of(v.check_web_rule, rule("block", "domain", bad), CATEGORIES)) == ["value"]


def test_url_rules_need_a_full_url() -> None:
    assert list(errors_of(v.check_web_rule, rule("allow", "url", "youtube.com/@company"), CATEGORIES)) == ["value"]
    for bad in ("https://a.com/#top", "https://user:pw@a.com/", "ftp://a.com/x", "https://a.com:99999/"):
        assert list(errors_of(v.check_web_rule, rule("block", "url", bad), CATEGORIES)) == ["value"], bad
    ok = v.check_web_rule(rule("allow", "url", "HTTPS://WWW.YouTube.com/@Company"), CATEGORIES)
    assert ok.value == "https://www.youtube.com/@Company"


def test_unknown_category_is_refused_listing_the_known_ones() -> None:
    errors = errors_of(v.check_web_rule, rule("block", "category", "socail"), CATEGORIES)
    assert "Unknown category 'socail'" in errors["value"][0]
    assert "social, streaming" in errors["value"][0]


def test_a_schedule_that_ends_before_it_starts_is_refused() -> None:
    errors = errors_of(v.check_web_rule, rule("block", "domain", "x.com", ("mon",), T(17), T(9)), CATEGORIES)
    assert list(errors) == ["end"]
    assert "overnight" in errors["end"][0]
    assert "end" in errors_of(v.check_web_rule, rule("block", "domain", "x.com", ("mon",), T(9), T(9)), CATEGORIES)


def test_a_schedule_needs_days_start_and_end() -> None:
    errors = errors_of(v.check_web_rule, rule("block", "domain", "x.com", (), T(9), None), CATEGORIES)
    assert set(errors) == {"days", "end"}
    errors = errors_of(v.check_web_rule, rule("block", "domain", "x.com", ("someday",), T(9), T(10)), CATEGORIES)
    assert list(errors) == ["days"]


def test_days_come_back_in_week_order() -> None:
    checked = v.check_web_rule(rule("block", "domain", "x.com", ("fri", "MON"), T(9), T(17)), CATEGORIES)
    assert checked.days == ("mon", "fri")


def test_blocked_and_allowed_at_overlapping_times_is_a_contradiction() -> None:
    rules = [
        rule("block", "domain", "facebook.com", ("mon", "tue"), T(9), T(17)),
        rule("allow", "domain", "Facebook.com", ("tue",), T(16), T(18)),
    ]
    errors = errors_of(v.check_web_rules, rules, CATEGORIES)
    assert list(errors) == ["rules[1]"]
    assert "both blocked and allowed" in errors["rules[1]"][0]


def test_always_overlaps_any_schedule() -> None:
    rules = [rule("block", "category", "social"), rule("allow", "category", "social", ("sat",), T(10), T(11))]
    assert list(errors_of(v.check_web_rules, rules, CATEGORIES)) == ["rules[1]"]


def test_non_overlapping_schedules_and_exceptions_are_accepted() -> None:
    rules = [
        rule("block", "domain", "facebook.com", ("mon",), T(9), T(12)),
        rule("allow", "domain", "facebook.com", ("mon",), T(12), T(13)),  # touching, not overlapping
        rule("allow", "domain", "facebook.com", ("tue",), T(9), T(12)),  # another day
        rule("block", "category", "social"),
        rule("allow", "domain", "linkedin.com"),  # an exception to a blocked category
        rule("allow", "domain", "business.facebook.com"),  # an exception for a subdomain
    ]
    assert len(v.check_web_rules(rules, CATEGORIES)) == 6


def test_the_same_rule_twice_is_refused() -> None:
    rules = [rule("block", "domain", "x.com"), rule("block", "domain", "X.com")]
    assert "twice" in errors_of(v.check_web_rules, rules, CATEGORIES)["rules[1]"][0]


# --- apps, requests, codes -------------------------------------------------------------------


def test_app_names_and_paths() -> None:
    assert v.check_app_entry(v.AppEntry(" steam ", "/usr/games/steam")) == v.AppEntry("steam", "/usr/games/steam")
    assert list(errors_of(v.check_app_entry, v.AppEntry("/usr/games/steam"))) == ["name"]
    assert list(errors_of(v.check_app_entry, v.AppEntry("steam", "games/steam"))) == ["path"]
    assert list(errors_of(v.check_app_entry, v.AppEntry("steam", "C:\\Games\\steam.exe"))) == ["path"]
    assert list(errors_of(v.check_app_entry, v.AppEntry(""))) == ["name"]
    assert "twice" in errors_of(v.check_apps, [v.AppEntry("steam"), v.AppEntry("steam")])["apps[1]"][0]


def test_usb_request_rules_name_each_field() -> None:
    errors = errors_of(v.check_usb_request, v.UsbRequestInput(vid="78", pid="5567", reason="short", minutes=2))
    assert set(errors) == {"vid", "reason", "minutes"}
    ok = v.check_usb_request(v.UsbRequestInput(vid="0781", pid="5567", reason="  Need the slides  ", minutes=1440))
    assert ok.reason == "Need the slides"


def test_offline_minutes_are_bounded() -> None:
    assert list(errors_of(v.check_offline_minutes, 4)) == ["minutes"]
    assert list(errors_of(v.check_offline_minutes, 7 * 1440 + 1)) == ["minutes"]
    assert v.check_offline_minutes(60) == 60
