"""The policy's `web` section: strict parsing, clear refusals, and which rules are in force when."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from glasshouse_agent.policy import PolicyError
from glasshouse_agent.web.rules import WebRule, WebSchedule, domain_of, normalize_url, parse_web

WEEKDAYS = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "time_zone": "Europe/London"}


def at(zone: str, year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)).timestamp()


def test_the_documented_example_parses() -> None:
    web = parse_web(
        {
            "full_urls": False,
            "rules": [
                {"action": "block", "kind": "domain", "value": "facebook.com", "schedule": WEEKDAYS},
                {"action": "allow", "kind": "url", "value": "https://www.youtube.com/@company"},
            ],
        }
    )
    assert web.full_urls is False
    assert web.rules == (
        WebRule(
            "block",
            "domain",
            "facebook.com",
            WebSchedule(("mon", "tue", "wed", "thu", "fri"), "09:00", "17:00", "Europe/London"),
        ),
        WebRule("allow", "url", "https://www.youtube.com/@company"),
    )
    assert web.scheduled
    assert web.blocks


def test_absent_or_empty_section_means_no_rules() -> None:
    assert parse_web(None).rules == ()
    assert parse_web({}).rules == ()
    assert parse_web({}).full_urls is False


def test_values_are_normalised() -> None:
    web = parse_web(
        {
            "rules": [
                {"action": "block", "kind": "domain", "value": " Example.COM. "},
                {"action": "block", "kind": "domain", "value": "bücher.example"},
                {"action": "block", "kind": "url", "value": "HTTPS://News.Example.com:8443/Sport?x=1"},
            ]
        }
    )
    assert [r.value for r in web.rules] == [
        "example.com",
        "xn--bcher-kva.example",
        "https://news.example.com:8443/Sport?x=1",
    ]


def test_exact_duplicates_collapse() -> None:
    rule = {"action": "block", "kind": "domain", "value": "example.com"}
    assert len(parse_web({"rules": [rule, dict(rule)]}).rules) == 1


@pytest.mark.parametrize(
    ("section", "field", "words"),
    [
        ([], "web", "object"),
        ({"full_urls": "yes"}, "web.full_urls", "true or false"),
        ({"rules": {}}, "web.rules", "list"),
        ({"rules": ["example.com"]}, "web.rules[0]", "object"),
        ({"rules": [{"action": "deny", "kind": "domain", "value": "a.com"}]}, "web.rules[0].action", "block or allow"),
        ({"rules": [{"action": "block", "kind": "regex", "value": "a"}]}, "web.rules[0].kind", "domain or url"),
        (
            {"rules": [{"action": "block", "kind": "category", "value": "social"}]},
            "web.rules[0].kind",
            "expanded",
        ),
        ({"rules": [{"action": "block", "kind": "domain", "value": 7}]}, "web.rules[0].value", "string"),
        ({"rules": [{"action": "block", "kind": "domain", "value": "https://a.com"}]}, "web.rules[0].value", "domain"),
        ({"rules": [{"action": "block", "kind": "domain", "value": "*.a.com"}]}, "web.rules[0].value", "domain"),
        ({"rules": [{"action": "block", "kind": "domain", "value": "a.com/x"}]}, "web.rules[0].value", "domain"),
        ({"rules": [{"action": "block", "kind": "domain", "value": "-a.com"}]}, "web.rules[0].value", "domain"),
        ({"rules": [{"action": "block", "kind": "domain", "value": ""}]}, "web.rules[0].value", "domain"),
        ({"rules": [{"action": "block", "kind": "url", "value": "ftp://a.com/x"}]}, "web.rules[0].value", "http"),
        ({"rules": [{"action": "block", "kind": "url", "value": "a.com/x"}]}, "web.rules[0].value", "http"),
        (
            {"rules": [{"action": "block", "kind": "url", "value": "https://a.com/#x"}]},
            "web.rules[0].value",
            "fragment",
        ),
        (
            {"rules": [{"action": "block", "kind": "url", "value": "https://u:p@a.com/"}]},
            "web.rules[0].value",
            "credentials",
        ),
        ({"rules": [{"action": "block", "kind": "url", "value": "https://a.com:99999/"}]}, "web.rules[0].value", "URL"),
    ],
)
def test_bad_input_is_refused_naming_the_field(section: Any, field: str, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_web(section)
    assert err.value.field == field
    assert words in str(err.value)


def rule(action: str = "block", schedule: dict[str, Any] | None = None, value: str = "a.com") -> dict[str, Any]:
    out: dict[str, Any] = {"action": action, "kind": "domain", "value": value}
    if schedule is not None:
        out["schedule"] = schedule
    return out


@pytest.mark.parametrize(
    ("schedule", "field", "words"),
    [
        ({**WEEKDAYS, "start": "17:00", "end": "09:00"}, "web.rules[0].schedule.end", "must end after it starts"),
        ({**WEEKDAYS, "end": "09:00"}, "web.rules[0].schedule.end", "must end after it starts"),
        ({**WEEKDAYS, "start": "9:00"}, "web.rules[0].schedule.start", "HH:MM"),
        ({**WEEKDAYS, "end": "24:00"}, "web.rules[0].schedule.end", "HH:MM"),
        ({**WEEKDAYS, "days": ["monday"]}, "web.rules[0].schedule.days", "list"),
        ({**WEEKDAYS, "days": []}, "web.rules[0].schedule.days", "non-empty"),
        ({**WEEKDAYS, "time_zone": "Mars/Olympus"}, "web.rules[0].schedule.time_zone", "unknown time zone"),
        ("always", "web.rules[0].schedule", "object"),
    ],
)
def test_bad_schedules_are_refused(schedule: Any, field: str, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_web({"rules": [rule(schedule=schedule)]})
    assert err.value.field == field
    assert words in str(err.value)


def test_contradictory_rules_at_overlapping_times_are_refused() -> None:
    with pytest.raises(PolicyError) as err:
        parse_web({"rules": [rule("block"), rule("allow", WEEKDAYS)]})
    assert err.value.field == "web.rules[1]"
    assert "web.rules[0]" in str(err.value)
    assert "a.com" in str(err.value)
    morning = {**WEEKDAYS, "start": "08:00", "end": "10:00"}
    with pytest.raises(PolicyError):
        parse_web({"rules": [rule("block", WEEKDAYS), rule("allow", morning)]})


def test_the_same_site_blocked_and_allowed_at_different_times_is_fine() -> None:
    evening = {**WEEKDAYS, "start": "17:00", "end": "23:00"}
    weekend = {**WEEKDAYS, "days": ["sat", "sun"]}
    web = parse_web({"rules": [rule("block", WEEKDAYS), rule("allow", evening), rule("allow", weekend)]})
    assert len(web.rules) == 3


def test_an_exception_for_a_subdomain_or_path_is_not_a_contradiction() -> None:
    web = parse_web(
        {
            "rules": [
                rule("block", value="youtube.com"),
                rule("allow", value="music.youtube.com"),
                {"action": "allow", "kind": "url", "value": "https://www.youtube.com/@company"},
            ]
        }
    )
    assert len(web.rules) == 3


def test_more_rules_than_browsers_enforce_are_refused() -> None:
    rules = [rule(value=f"site{i}.example") for i in range(1001)]
    with pytest.raises(PolicyError) as err:
        parse_web({"rules": rules})
    assert "1000" in str(err.value)
    assert len(parse_web({"rules": rules[:1000]}).rules) == 1000


def test_schedules_follow_the_zone_wall_clock_and_end_exclusively() -> None:
    web = parse_web({"rules": [rule(schedule=WEEKDAYS), rule(value="always.example")]})
    london = "Europe/London"
    monday_nine = at(london, 2026, 3, 30, 9, 0)  # the first Monday of British Summer Time
    assert [r.value for r in web.in_force(monday_nine)] == ["a.com", "always.example"]
    assert [r.value for r in web.in_force(monday_nine - 1)] == ["always.example"]
    assert [r.value for r in web.in_force(at(london, 2026, 3, 30, 16, 59, 59))] == ["a.com", "always.example"]
    assert [r.value for r in web.in_force(at(london, 2026, 3, 30, 17, 0))] == ["always.example"]
    assert [r.value for r in web.in_force(at(london, 2026, 3, 28, 12, 0))] == ["always.example"]  # Saturday
    # 09:00 in London in winter is 09:00 UTC, in summer 08:00 UTC.
    assert web.rules[0].in_force(dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC).timestamp())
    assert not web.rules[0].in_force(dt.datetime(2026, 7, 6, 16, 30, tzinfo=dt.UTC).timestamp())


def test_domain_of_urls() -> None:
    assert domain_of("https://Mail.Example.com:8443/inbox?x#y") == "mail.example.com"
    assert domain_of("chrome://newtab/") is None
    assert domain_of("file:///etc/passwd") is None
    assert domain_of("not a url") is None
    assert normalize_url("https://a.com") == "https://a.com"
