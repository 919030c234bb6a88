"""The service's side of web filtering: keeps the managed browser policy equal to the rules in
force now, and records the pages browsers refused.

Rules come and go with their schedules (HH:MM on a zone's wall clock), so while any rule has a
schedule the filter is re-evaluated at every minute boundary, which is exactly when a schedule
can start or end; files are rewritten only when the set of rules in force changes. A `web`
section that does not parse is refused whole with its reason in the log, and the rules written
before stay in force. The files stay when the agent stops: enforcement does not depend on the
agent running (a scheduled rule then stays as it was until the agent is back)."""

from __future__ import annotations

import json
import logging
import math
import pwd
from typing import Any, Protocol

from glasshouse_agent.policy import Policy, PolicyError
from glasshouse_agent.web.rules import WebPolicy, WebRule, normalize_domain, parse_web
from glasshouse_agent.web.writer import ManagedPolicyWriter, State, WriterError

log = logging.getLogger(__name__)

STATE_KEY = "web_policy_written"
RETRY_SECONDS = 60.0
# A browser's report is stamped by the native host on this machine's clock.
MAX_EVENT_AGE = 3600.0
MAX_EVENT_AHEAD = 60.0
MAX_URL_CHARS = 1024


class KeyValue(Protocol):
    """What the filter needs of the spool: its key/value table."""

    def get(self, key: str, default: str | None = None) -> str | None: ...

    def set(self, key: str, value: str | None) -> None: ...


class WebFilter:
    """`root` None: browser policy is not written at all (the default for a Service built in
    tests); the command line passes "/". What was written is remembered in `store` under
    STATE_KEY, so a restarted agent still removes exactly that."""

    def __init__(self, root: str | None, store: KeyValue) -> None:
        self.policy: WebPolicy | None = None  # None: no web section accepted yet
        self._in_force: tuple[WebRule, ...] | None = None  # what the files say now (None: unknown)
        self._next: float | None = None
        self.writer: ManagedPolicyWriter | None = None
        if root is not None:
            self.writer = ManagedPolicyWriter(
                root,
                load_state=lambda: _load(store.get(STATE_KEY)),
                save_state=lambda state: store.set(STATE_KEY, json.dumps(state, sort_keys=True) if state else None),
            )

    def apply(self, policy: Policy, now: float) -> None:
        """A new policy document arrived (or the stored one at start)."""
        try:
            parsed = parse_web(policy.web)
        except PolicyError as exc:
            log.error("web policy refused (%s); the web rules already in force stay", exc)
            return
        if parsed != self.policy:
            self.policy = parsed
            log.info(
                "web filtering: %d block and %d allow rules%s",
                sum(1 for r in parsed.rules if r.action == "block"),
                sum(1 for r in parsed.rules if r.action == "allow"),
                " (some scheduled)" if parsed.scheduled else "",
            )
        self.update(now)

    def update(self, now: float) -> None:
        """Write the rules in force at `now` if they differ from what the files say."""
        if self.policy is None:
            return
        in_force = self.policy.in_force(now)
        self._next = _next_minute(now) if self.policy.scheduled else None
        if in_force == self._in_force or self.writer is None:
            self._in_force = in_force
            return
        try:
            self.writer.write(in_force)
        except (OSError, WriterError) as exc:
            log.error("cannot write the managed browser policy: %s (trying again in %.0fs)", exc, RETRY_SECONDS)
            self._in_force = None
            self._next = now + RETRY_SECONDS
            return
        self._in_force = in_force
        log.info("managed browser policy now has %d rules in force", len(in_force))

    def next_wakeup(self) -> float | None:
        """When update() must run next (a possible schedule boundary or a retry), or None."""
        return self._next

    def tick(self, now: float) -> None:
        if self._next is not None and now >= self._next:
            self.update(now)


def _load(raw: str | None) -> State:
    if not raw:
        return {}
    try:
        state = json.loads(raw)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _next_minute(now: float) -> float:
    # Schedules are HH:MM on a zone's wall clock; every zone in use today is a whole number of
    # minutes from UTC, so a schedule can only start or end on a UTC minute boundary.
    return math.floor(now / 60.0) * 60.0 + 60.0


def web_block_event(message: Any, uid: int, policy: Policy, now: float) -> list[dict[str, Any]]:
    """A browser's report (through the native host, over the session socket) that it refused a
    page by policy, as a `web_block` event for the spool; [] if it is malformed, stale, or the
    policy blocks nothing. The URL is kept only when `web.full_urls` allows it; the user is
    the socket peer's uid as the kernel reported it, never what the peer says."""
    if not isinstance(message, dict) or not any(
        isinstance(rule, dict) and rule.get("action") == "block" for rule in _rules(policy)
    ):
        return []
    at, domain = message.get("time"), message.get("domain")
    if isinstance(at, bool) or not isinstance(at, int | float):
        return []
    if not now - MAX_EVENT_AGE <= at <= now + MAX_EVENT_AHEAD:
        return []
    if not isinstance(domain, str):
        return []
    try:
        domain = normalize_domain(domain)
    except ValueError:
        return []
    event: dict[str, Any] = {"kind": "web_block", "time": float(at), "domain": domain, "user": _user(uid)}
    url = message.get("url")
    if policy.web.get("full_urls") is True and isinstance(url, str) and url:
        event["url"] = url[:MAX_URL_CHARS]
    return [event]


def _rules(policy: Policy) -> list[Any]:
    rules = policy.web.get("rules")
    return rules if isinstance(rules, list) else []


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
