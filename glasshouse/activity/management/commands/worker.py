"""The background worker: one long-running process for rollups (and, later, alerts, scheduled
reports and retention). On the embedded SQLite default it needs no other service.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from glasshouse.activity.rollups import roll_up_pending


class Command(BaseCommand):
    help = "Run background jobs (activity rollups) until stopped; --once runs one pass and exits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Roll up what is pending now, then exit.")
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds to sleep when idle.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(f"Rolled up {roll_up_pending()} batches.")
            return
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("Worker running; stop with Ctrl-C or SIGTERM.")
        while not stopping:
            # Connections may have been closed by the server between passes.
            close_old_connections()
            done = roll_up_pending()
            if done:
                self.stdout.write(f"Rolled up {done} batches.")
            else:
                time.sleep(options["interval"])
        self.stdout.write("Worker stopped.")
