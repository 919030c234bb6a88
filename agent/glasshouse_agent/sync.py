"""The service's link to the server, run in its own thread: keeps the policy current (ETag, so
an unchanged policy costs a 304) and moves batches from the spool to the server with
exponential backoff. Whatever happens to the network, spans stay in the spool until acked."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable

from glasshouse_agent.policy import NOTHING, Policy, PolicyError, parse_policy
from glasshouse_agent.spool import Spool
from glasshouse_agent.uplink import RejectedError, RetryableError, UnauthorizedError, Uplink

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 300.0  # the protocol's ceiling
REVOKED_KEY = "revoked"


class PolicyHolder:
    """The current policy, shared between the sync thread (writer) and the main loop (reader).
    `version` increases on every change so readers can notice one cheaply."""

    def __init__(self, policy: Policy = NOTHING, on_change: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._version = 0
        self._on_change = on_change

    def get(self) -> tuple[Policy, int]:
        with self._lock:
            return self._policy, self._version

    def set(self, policy: Policy) -> None:
        with self._lock:
            if policy == self._policy:
                return
            self._policy = policy
            self._version += 1
        if self._on_change is not None:
            self._on_change()


def load_stored_policy(spool: Spool) -> Policy:
    """The last policy fetched, so an agent that starts offline still obeys it."""
    raw = spool.get("policy")
    if raw is None:
        return NOTHING
    try:
        return parse_policy(json.loads(raw))
    except (PolicyError, ValueError):
        log.warning("stored policy is unreadable; collecting nothing until the server answers")
        return NOTHING


class Syncer:
    def __init__(
        self,
        spool: Spool,
        uplink: Uplink,
        holder: PolicyHolder,
        *,
        policy_interval: float = 60.0,
        backoff_base: float = 1.0,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.spool = spool
        self.uplink = uplink
        self.holder = holder
        self.policy_interval = policy_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._clock = clock
        self._rng = rng
        self.failures = 0
        self._next_policy = 0.0

    # -- policy --------------------------------------------------------------------------

    def refresh_policy(self) -> bool:
        """Fetch the policy if it changed. Returns True when a new policy was applied. A policy
        that does not parse is refused whole and the previous one stays in force."""
        if self.revoked:
            return False
        try:
            resp = self.uplink.get_policy(self.spool.get("policy_etag"))
        except UnauthorizedError as exc:
            self._revoke(str(exc))
            return False
        except (RetryableError, RejectedError) as exc:
            log.warning("policy fetch failed: %s", exc)
            return False
        if not resp.changed:
            return False
        try:
            policy = parse_policy(resp.document)
        except PolicyError as exc:
            log.error("server sent a policy we cannot apply (%s); keeping the previous one", exc)
            return False
        # Store the document in the same shape we parse, then the ETag: a crash between the two
        # only costs one extra 200 next time.
        self.spool.set("policy", policy.dumps())
        self.spool.set("policy_etag", resp.etag)
        self.holder.set(policy)
        log.info("policy applied (etag %s)", resp.etag)
        return True

    # -- upload --------------------------------------------------------------------------

    @property
    def revoked(self) -> bool:
        return self.spool.get(REVOKED_KEY) is not None

    def upload_step(self, *, force: bool = False) -> float:
        """Try to move one batch. Returns how long to wait before the next step (0: go on)."""
        policy, _ = self.holder.get()
        if self.revoked:
            return 60.0
        batch = self.spool.assign_batch(
            max_spans=policy.max_batch_spans, max_seconds=policy.max_batch_seconds, force=force
        )
        if batch is None:
            return min(policy.max_batch_seconds, 5.0)
        try:
            accepted = self.uplink.post_batch(batch.body())
        except UnauthorizedError as exc:
            self._revoke(str(exc))
            return 60.0
        except RejectedError as exc:
            log.error("server refused batch %d as malformed (%s); quarantined", batch.seq, exc)
            self.spool.quarantine(batch.seq, exc.status, str(exc))
            return 0.0
        except RetryableError as exc:
            self.spool.record_attempt(batch.seq, str(exc))
            return self._backoff(exc.retry_after, f"batch {batch.seq}: {exc}")
        if accepted < batch.seq:
            self.spool.record_attempt(batch.seq, f"acked only up to {accepted}")
            return self._backoff(None, f"batch {batch.seq} acked only up to {accepted}")
        self.spool.ack(batch.seq)
        self.failures = 0
        return 0.0

    def _backoff(self, retry_after: float | None, why: str) -> float:
        # Exponential with "equal jitter": never less than half the step, so a fleet that lost
        # the server at the same moment spreads out without hammering it at zero delay.
        step = min(self.backoff_cap, self.backoff_base * 2.0 ** min(self.failures, 30))
        delay = step / 2 + self._rng() * step / 2
        if retry_after is not None:
            delay = min(self.backoff_cap, max(delay, retry_after))
        self.failures += 1
        log.warning("upload retry in %.1fs (%s)", delay, why)
        return delay

    def _revoke(self, why: str) -> None:
        # Keep spooling (bounded by the caps) but stop talking: a revoked key must not be
        # retried in a loop, and re-enrolment clears this flag.
        log.error("server refused this device (%s); uploads stop until it is enrolled again", why)
        self.spool.set(REVOKED_KEY, why)

    def flush(self, *, max_steps: int = 10_000) -> bool:
        """Upload everything now, without waiting for batch timers. True if the spool emptied;
        False at the first failure (the caller decides whether to try again)."""
        for _ in range(max_steps):
            stats = self.spool.stats()
            if stats.queued == 0 and stats.in_flight == 0 and stats.gaps == 0:
                return True
            if self.upload_step(force=True) > 0:
                return False
        return False

    # -- thread body ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = self._clock()
            if now >= self._next_policy:
                self.refresh_policy()
                self._next_policy = now + self.policy_interval
            try:
                wait = self.upload_step()
            except Exception:
                # Never let one surprise kill the only thread that uploads; the spool is intact.
                log.exception("upload step failed")
                wait = 5.0
            wait = min(wait, max(0.0, self._next_policy - self._clock()))
            if wait > 0:
                stop.wait(wait)
