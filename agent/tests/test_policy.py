"""Policy parsing and the single decision "may this be collected now"."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from glasshouse_agent.model import KINDS, Sample
from glasshouse_agent.policy import NOTHING, PolicyError, parse_policy
from tests.conftest import make_policy, policy_doc


def at(zone: str, year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp()


def test_round_trip_through_the_wire_shape() -> None:
    policy = make_policy(idle_threshold_seconds=120)
    assert parse_policy(policy.to_json()) == policy


def test_nothing_is_collected_before_a_policy_arrives() -> None:
    for kind in KINDS:
        assert not NOTHING.allows(kind, 0)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"collect": "yes"}, "collect"),
        ({"collect": {"window": "true"}}, "collect.window"),
        ({**policy_doc(), "idle_threshold_seconds": -1}, "idle_threshold_seconds"),
        ({**policy_doc(), "schedule": {"mode": "sometimes"}}, "schedule.mode"),
        ({**policy_doc(), "schedule": {"mode": "working_hours", "time_zone": "Mars/Olympus"}}, "schedule.time_zone"),
        ({**policy_doc(), "schedule": {"mode": "working_hours", "days": ["funday"]}}, "schedule.days"),
        ({**policy_doc(), "schedule": {"mode": "working_hours", "start": "9am"}}, "schedule.start"),
        ({**policy_doc(), "upload": {"max_batch_spans": 0}}, "upload.max_batch_spans"),
    ],
)
def test_bad_documents_are_refused_naming_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(doc)
    assert exc.value.field == field


def test_unknown_collectors_are_ignored_and_never_enabled() -> None:
    policy = parse_policy(policy_doc(collect={"keystrokes": True, "screenshots": True}))
    assert "keystrokes" not in str(policy.to_json())


def test_batch_size_cannot_exceed_the_protocol_limit() -> None:
    assert make_policy(upload={"max_batch_spans": 50000, "max_batch_seconds": 30}).max_batch_spans == 1000


def test_titles_are_stripped_when_the_policy_forbids_them() -> None:
    policy = make_policy(collect={"titles": False})
    sample = Sample("window", 0, {"app": "firefox", "title": "Inbox (3)", "pid": 5})
    assert policy.filter(sample) == Sample("window", 0, {"app": "firefox", "pid": 5})
    assert make_policy().filter(sample) == sample


def test_disabled_collectors_are_filtered_out() -> None:
    policy = make_policy(collect={"window": False, "sessions": False})
    assert policy.filter(Sample("window", 0, {"app": "x"})) is None
    assert policy.filter(Sample("session", 0, {"event": "login", "user": "a"})) is None
    assert policy.filter(Sample("idle", 0, {"state": "idle"})) is not None


def test_working_hours_are_judged_in_the_policy_time_zone() -> None:
    policy = make_policy(
        schedule={
            "mode": "working_hours",
            "time_zone": "Europe/London",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "09:00",
            "end": "17:00",
        }
    )
    # Monday 2025-06-02 (BST, UTC+1): 09:30 London is 08:30 UTC.
    assert policy.allows("window", at("Europe/London", 2025, 6, 2, 9, 30))
    assert not policy.allows("window", at("Europe/London", 2025, 6, 2, 8, 59))
    assert not policy.allows("window", at("Europe/London", 2025, 6, 2, 17, 0))
    # The same UTC instant that is 09:30 in London is 08:30 in UTC terms: still inside.
    assert policy.allows("window", at("UTC", 2025, 6, 2, 8, 30))
    # Saturday: outside whatever the hour.
    assert not policy.allows("window", at("Europe/London", 2025, 6, 7, 10, 0))
    # Winter (GMT): 09:30 London is 09:30 UTC; 08:30 UTC is before work.
    assert not policy.allows("window", at("UTC", 2025, 1, 6, 8, 30))
    assert policy.allows("window", at("UTC", 2025, 1, 6, 9, 30))


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    policy = make_policy(
        schedule={"mode": "working_hours", "time_zone": "UTC", "days": ["fri"], "start": "22:00", "end": "06:00"}
    )
    assert policy.allows("idle", at("UTC", 2025, 6, 6, 23, 0))  # Friday night
    assert policy.allows("idle", at("UTC", 2025, 6, 7, 5, 0))  # Saturday early, Friday's shift
    assert not policy.allows("idle", at("UTC", 2025, 6, 7, 23, 0))  # Saturday night
    assert not policy.allows("idle", at("UTC", 2025, 6, 6, 12, 0))  # Friday noon
