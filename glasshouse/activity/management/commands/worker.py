"""The background worker: the one long-running process. Each pass rolls up pending batches,
evaluates alerts, sends due scheduled reports, and a few times a day makes the coming days'
span partitions and applies retention. On the embedded SQLite default it needs no other service.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from glasshouse.activity import retention
from glasshouse.activity.rollups import roll_up_pending
from glasshouse.alerts.evaluate import run_pending as run_alerts
from glasshouse.reports.scheduled import send_due as send_scheduled_reports

log = logging.getLogger(__name__)

# Storage upkeep (partitions ahead, retention) is cheap but needed only a few times a day.
UPKEEP_SECONDS = 3600


class Command(BaseCommand):
    help = "Run background jobs (rollups, span retention) until stopped; --once runs one pass and exits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Roll up what is pending now, then exit.")
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds to sleep when idle.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"Rolled up {roll_up_pending()} batches.")
            self.stdout.write(f"Raised {run_alerts()} alerts.")
            self.upkeep()
            return
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("Worker running; stop with Ctrl-C or SIGTERM.")
        self.last_upkeep = float("-inf")
        while not stopping:
            # Connections may have been closed by the server between passes.
            close_old_connections()
            try:
                done = self.one_pass()
            except Exception:
                # One bad pass (a database restart, a bug in one job) must not stop rollups and
                # alerts for good: log it with its traceback and try again after a pause.
                log.exception("Worker pass failed; retrying in %s s.", options["interval"])
                done = 0
            if not done:
                time.sleep(options["interval"])
        self.stdout.write("Worker stopped.")

    def one_pass(self) -> int:
        """Rollups, then alerts (time rules see the batches just counted), then storage upkeep
        when it is due. Returns how many batches were rolled up."""
        done = roll_up_pending()
        if done:
            self.stdout.write(f"Rolled up {done} batches.")
        raised = run_alerts()
        if raised:
            self.stdout.write(f"Raised {raised} alerts.")
        mailed = send_scheduled_reports()
        if mailed:
            self.stdout.write(f"Sent {mailed} scheduled reports.")
        if time.monotonic() - self.last_upkeep >= UPKEEP_SECONDS:
            self.upkeep()
            self.last_upkeep = time.monotonic()
        return done

    def upkeep(self) -> None:
        """Create the coming days' span partitions, then drop the days past retention. Rollups
        run first in every pass, so a pending batch is counted before its spans can expire."""
        retention.prepare_days_ahead()
        dropped = retention.drop_expired()
        if dropped:
            self.stdout.write(f"Retention: removed the spans of {dropped} expired day(s).")
