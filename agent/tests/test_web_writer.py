"""Managed browser policy files (Chromium, Chrome, Firefox) under a temporary root: formats,
merging with an administrator's Firefox policies.json, removal of exactly what was written, and
re-evaluation at schedule boundaries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.policy import Policy
from glasshouse_agent.web.control import STATE_KEY, WebFilter, web_block_event
from glasshouse_agent.web.rules import parse_web
from glasshouse_agent.web.writer import ManagedPolicyWriter, State, chromium_filters, firefox_patterns
from tests.conftest import make_policy

CHROMIUM = "etc/chromium/policies/managed/glasshouse.json"
CHROME = "etc/opt/chrome/policies/managed/glasshouse.json"
FIREFOX = "etc/firefox/policies/policies.json"

RULES = {
    "rules": [
        {"action": "block", "kind": "domain", "value": "facebook.com"},
        {"action": "block", "kind": "url", "value": "https://news.example.com/sport"},
        {"action": "allow", "kind": "url", "value": "https://www.youtube.com/@company"},
        {"action": "block", "kind": "domain", "value": "youtube.com"},
        {"action": "allow", "kind": "url", "value": "http://intranet.example:8080/wiki?page=1"},
    ]
}


class Store:
    """The spool's key/value table, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.data.get(key, default)

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


def read(root: Path, relative: str) -> Any:
    return json.loads((root / relative).read_text())


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def writer(root: Path, store: Store) -> ManagedPolicyWriter:
    def load() -> State:
        raw = store.get("state")
        return dict(json.loads(raw)) if raw else {}

    return ManagedPolicyWriter(str(root), load, lambda s: store.set("state", json.dumps(s)))


def test_chromium_filter_format() -> None:
    block, allow = chromium_filters(parse_web(RULES).rules)
    # A bare host is the domain and its subdomains; a URL rule is one host's path prefix.
    assert block == ["facebook.com", "https://.news.example.com/sport", "youtube.com"]
    assert allow == ["https://.www.youtube.com/@company", "http://.intranet.example:8080/wiki?page=1"]


def test_firefox_match_patterns() -> None:
    block, allow = firefox_patterns(parse_web(RULES).rules)
    assert block == ["*://*.facebook.com/*", "https://news.example.com/sport*", "*://*.youtube.com/*"]
    # Match patterns cannot name a port.
    assert allow == ["https://www.youtube.com/@company*", "http://intranet.example/wiki?page=1*"]


def test_writes_all_three_browsers_and_removes_everything_it_wrote(tmp_path: Path) -> None:
    store = Store()
    w = writer(tmp_path, store)
    w.write(parse_web(RULES).rules)
    expected = {
        "URLBlocklist": ["facebook.com", "https://.news.example.com/sport", "youtube.com"],
        "URLAllowlist": ["https://.www.youtube.com/@company", "http://.intranet.example:8080/wiki?page=1"],
    }
    assert read(tmp_path, CHROMIUM) == expected
    assert read(tmp_path, CHROME) == expected
    assert read(tmp_path, FIREFOX) == {
        "policies": {
            "WebsiteFilter": {
                "Block": ["*://*.facebook.com/*", "https://news.example.com/sport*", "*://*.youtube.com/*"],
                "Exceptions": ["https://www.youtube.com/@company*", "http://intranet.example/wiki?page=1*"],
            }
        }
    }
    for relative in (CHROMIUM, CHROME, FIREFOX):
        assert (tmp_path / relative).stat().st_mode & 0o777 == 0o644  # browsers run as the user
    assert (tmp_path / "etc/chromium/policies").stat().st_mode & 0o777 == 0o755
    # A fresh writer (a restarted agent) with the same state takes it all out again, including
    # the directories it had to create.
    writer(tmp_path, store).write([])
    assert files(tmp_path) == []


def test_a_changed_rule_set_replaces_the_old_one(tmp_path: Path) -> None:
    store = Store()
    w = writer(tmp_path, store)
    w.write(parse_web(RULES).rules)
    w.write(parse_web({"rules": [{"action": "block", "kind": "domain", "value": "tiktok.com"}]}).rules)
    assert read(tmp_path, CHROMIUM) == {"URLBlocklist": ["tiktok.com"]}
    assert read(tmp_path, FIREFOX) == {"policies": {"WebsiteFilter": {"Block": ["*://*.tiktok.com/*"]}}}


def test_firefox_policies_of_others_are_kept(tmp_path: Path) -> None:
    path = tmp_path / FIREFOX
    path.parent.mkdir(parents=True)
    original = {
        "policies": {
            "DisableTelemetry": True,
            "WebsiteFilter": {"Block": ["*://*.casino.example/*", "*://*.facebook.com/*"]},
        },
        "comment": "managed by the admin's own tool",
    }
    path.write_text(json.dumps(original))
    store = Store()
    w = writer(tmp_path, store)
    w.write(parse_web(RULES).rules)
    doc = read(tmp_path, FIREFOX)
    assert doc["policies"]["DisableTelemetry"] is True
    assert doc["comment"] == "managed by the admin's own tool"
    # The admin's facebook entry was there first: it is not ours, so it is not duplicated and
    # will not be removed by us.
    assert doc["policies"]["WebsiteFilter"]["Block"] == [
        "*://*.casino.example/*",
        "*://*.facebook.com/*",
        "https://news.example.com/sport*",
        "*://*.youtube.com/*",
    ]
    # Someone else changes the file meanwhile; that survives our next write and our removal.
    doc["policies"]["Homepage"] = {"URL": "https://intranet.example/"}
    path.write_text(json.dumps(doc))
    w.write([])
    assert read(tmp_path, FIREFOX) == {
        "policies": {
            "DisableTelemetry": True,
            "WebsiteFilter": {"Block": ["*://*.casino.example/*", "*://*.facebook.com/*"]},
            "Homepage": {"URL": "https://intranet.example/"},
        },
        "comment": "managed by the admin's own tool",
    }
    assert (tmp_path / "etc/firefox/policies").is_dir()  # not ours: stays
    assert not (tmp_path / CHROMIUM).exists()


def test_an_unparsable_firefox_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / FIREFOX
    path.parent.mkdir(parents=True)
    path.write_text("{ this is not json")
    from glasshouse_agent.web.writer import WriterError

    with pytest.raises(WriterError, match="left as it is"):
        writer(tmp_path, Store()).write(parse_web(RULES).rules)
    assert path.read_text() == "{ this is not json"


def test_a_fresh_agent_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    # E.g. another installation's file, or a test run with an empty spool on a real machine.
    path = tmp_path / CHROMIUM
    path.parent.mkdir(parents=True)
    path.write_text('{"URLBlocklist": ["someone-else.example"]}')
    writer(tmp_path, Store()).write([])
    assert path.read_text() == '{"URLBlocklist": ["someone-else.example"]}'


def test_unchanged_content_is_not_rewritten(tmp_path: Path) -> None:
    store = Store()
    w = writer(tmp_path, store)
    rules = parse_web(RULES).rules
    w.write(rules)
    before = os.stat(tmp_path / CHROMIUM).st_ino
    w.write(rules)
    assert os.stat(tmp_path / CHROMIUM).st_ino == before  # no rename: browsers see no change


# -- the service's filter: schedules, refusals, restarts -------------------------------------


def policy_with(web: dict[str, Any]) -> Policy:
    return make_policy(web=web)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0, micro: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC).timestamp()


SCHEDULED = {
    "rules": [
        {
            "action": "block",
            "kind": "domain",
            "value": "facebook.com",
            "schedule": {"days": ["mon"], "start": "09:00", "end": "17:00", "time_zone": "UTC"},
        }
    ]
}


def test_scheduled_rules_are_written_and_lifted_at_their_boundaries(tmp_path: Path) -> None:
    store = Store()
    web = WebFilter(str(tmp_path), store)
    now = utc(2026, 3, 30, 8, 59, 30)  # a Monday
    web.apply(policy_with(SCHEDULED), now)
    assert not (tmp_path / CHROMIUM).exists()
    assert web.next_wakeup() == utc(2026, 3, 30, 9, 0)  # the next minute boundary
    web.tick(utc(2026, 3, 30, 8, 59, 59))  # not due yet
    assert not (tmp_path / CHROMIUM).exists()
    web.tick(utc(2026, 3, 30, 9, 0, 0, 5000))
    assert read(tmp_path, CHROMIUM) == {"URLBlocklist": ["facebook.com"]}
    web.tick(utc(2026, 3, 30, 16, 59, 0, 1000))
    assert (tmp_path / CHROMIUM).exists()
    web.tick(utc(2026, 3, 30, 17, 0, 0, 1000))
    assert files(tmp_path) == []
    assert web.next_wakeup() == utc(2026, 3, 30, 17, 1)


def test_unscheduled_rules_need_no_wakeups(tmp_path: Path) -> None:
    web = WebFilter(str(tmp_path), Store())
    web.apply(policy_with(RULES), 1_800_000_000.0)
    assert web.next_wakeup() is None
    assert (tmp_path / CHROMIUM).exists()


def test_a_lifted_rule_is_removed_when_the_next_policy_arrives(tmp_path: Path) -> None:
    store = Store()
    web = WebFilter(str(tmp_path), store)
    web.apply(policy_with(RULES), 1_800_000_000.0)
    web.apply(policy_with({"rules": []}), 1_800_000_001.0)
    assert files(tmp_path) == []
    assert json.loads(store.get(STATE_KEY) or "{}").get("chromium", []) == []


def test_a_bad_web_section_is_refused_and_the_old_rules_stay(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    web = WebFilter(str(tmp_path), Store())
    web.apply(policy_with(RULES), 1_800_000_000.0)
    before = (tmp_path / CHROMIUM).read_text()
    bad = {
        "rules": [
            {"action": "block", "kind": "domain", "value": "a.com", "schedule": {"start": "18:00", "end": "08:00"}}
        ]
    }
    with caplog.at_level(logging.ERROR):
        web.apply(policy_with(bad), 1_800_000_001.0)
    assert "web.rules[0].schedule.end" in caplog.text
    assert "already in force stay" in caplog.text
    assert (tmp_path / CHROMIUM).read_text() == before


def test_a_restarted_agent_removes_what_its_predecessor_wrote(tmp_path: Path) -> None:
    store = Store()  # the spool survives the restart
    WebFilter(str(tmp_path), store).apply(policy_with(RULES), 1_800_000_000.0)
    WebFilter(str(tmp_path), store).apply(policy_with({}), 1_800_000_100.0)
    assert files(tmp_path) == []


def test_write_failures_are_retried(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("a file where a directory should be")
    web = WebFilter(str(tmp_path), Store())
    web.apply(policy_with(RULES), 1_800_000_000.0)
    assert web.next_wakeup() == 1_800_000_060.0
    (tmp_path / "etc").unlink()
    web.tick(1_800_000_060.0)
    assert (tmp_path / CHROMIUM).exists()
    assert web.next_wakeup() is None


def test_no_root_writes_nothing(tmp_path: Path) -> None:
    web = WebFilter(None, Store())
    web.apply(policy_with(RULES), 1_800_000_000.0)
    assert files(tmp_path) == []


def test_web_block_events() -> None:
    now = 1_800_000_000.0
    blocking = policy_with(RULES)
    message = {"type": "web_block", "time": now, "domain": "Facebook.com", "url": "https://facebook.com/x", "user": "x"}
    (event,) = web_block_event(message, 0, blocking, now)
    # The user is the uid the kernel reported (0 here), not what the peer claimed.
    assert event == {"kind": "web_block", "time": now, "domain": "facebook.com", "user": "root"}
    full = policy_with({**RULES, "full_urls": True})
    assert web_block_event(message, 0, full, now)[0]["url"] == "https://facebook.com/x"
    assert web_block_event(message, 0, policy_with({}), now) == []  # nothing is blocked: no such event
    assert web_block_event({**message, "domain": "not a domain"}, 0, blocking, now) == []
    assert web_block_event({**message, "time": now - 7200}, 0, blocking, now) == []
    assert web_block_event({**message, "time": "now"}, 0, blocking, now) == []
    assert web_block_event({**message, "time": True}, 0, blocking, now) == []
    assert web_block_event("blocked", 0, blocking, now) == []
