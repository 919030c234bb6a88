"""Shared fixtures: the in-test protocol server, and a real X11 desktop (Xvfb + openbox +
xterms driven by xdotool) for the collectors. Missing desktop tools skip those tests with the
reason, except under CI=true where a missing tool is a failure: CI must install them
(scripts/setup-agent-test-deps.sh)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from glasshouse_agent.policy import Policy, parse_policy
from tests.desktop import Desktop, running_desktop
from tests.fakeserver import FakeServer


def policy_doc(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "collect": {"window": True, "titles": True, "idle": True, "sessions": True, "browser": False},
        "idle_threshold_seconds": 300,
        "pulse_seconds": 5,
        "schedule": {"mode": "always", "time_zone": "UTC"},
        "upload": {"max_batch_spans": 1000, "max_batch_seconds": 30},
        "spool": {"max_rows": 500000, "max_age_days": 14},
    }
    collect = overrides.pop("collect", None)
    if isinstance(collect, dict):
        doc["collect"] = {**doc["collect"], **collect}  # type: ignore[dict-item]
    doc.update(overrides)
    return doc


def make_policy(**overrides: object) -> Policy:
    return parse_policy(policy_doc(**overrides))


@pytest.fixture(autouse=True)
def _no_system_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches this machine's system bus: a service (or `glasshouse-agent run`) started
    without its own bus address finds none. The logind tests run a private bus of their own."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/glasshouse-agent-tests/system_bus_socket")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def desktop() -> Iterator[Desktop]:
    with running_desktop() as desk:
        yield desk
