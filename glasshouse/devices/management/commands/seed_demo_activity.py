"""Replay N days (default 30) of realistic agent activity for the demo organisation through the
real agent API: a token and an enrolled device per person (about 5% have none), then gzip
batches of window, idle and session spans in each person's own zone and working hours.

Deterministic and idempotent (see glasshouse.devices.demo_activity); refuses to run unless
DEBUG is on, like seed_demo. Run `manage.py worker --once` afterwards to roll the spans up.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from glasshouse.devices.demo_activity import (
    DEFAULT_SEED,
    Replayer,
    ReplayError,
    default_credentials_path,
    ensure_demo_classification,
    ensure_demo_controls,
    ensure_demo_policies,
)


def _moment(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Replay N days of realistic agent activity for every demo person through the agent API (DEBUG only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="How many days back to replay (default 30).")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Seed of every random choice.")
        parser.add_argument(
            "--end", type=_moment, default=None, help="Replay up to this ISO time instead of now (tests, benchmarks)."
        )
        parser.add_argument(
            "--credentials",
            type=Path,
            default=None,
            help="Where the replayed agents keep their device keys (default VAR_DIR/demo-agents.json).",
        )
        parser.add_argument(
            "--no-policies",
            action="store_true",
            help="Do not add the demo team policies (titles for Engineering, working hours for Sales EMEA).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo_activity invents monitoring data about every person in the database, so it runs only "
                "with DEBUG on (the development settings). Never run it on a production installation."
            )
        days: int = options["days"]
        if not 1 <= days <= 366:
            raise CommandError("--days must be between 1 and 366.")
        if not options["no_policies"]:
            for change in ensure_demo_policies():
                self.stdout.write(f"Added the demo agent policy for {change}.")
            for change in ensure_demo_controls():
                self.stdout.write(f"Added demo device control: {change}.")
            for change in ensure_demo_classification():
                self.stdout.write(f"Classified for the demo: {change}.")
        credentials: Path = options["credentials"] or default_credentials_path()
        replayer = Replayer(
            days=days, seed=options["seed"], end=options["end"], credentials=credentials, progress=self.stdout.write
        )
        self.stdout.write(f"Replaying {days} days of agent activity through /api/agent/v1/ ...")
        started = time.monotonic()
        try:
            totals = replayer.run()
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"{totals.spans:,} spans in {totals.batches:,} batches for {totals.people} people in {elapsed:.1f} s "
                f"({totals.spans / max(elapsed, 1e-6):,.0f} spans/s); {totals.enrolled} devices enrolled this run, "
                f"{totals.without_device} people without a device, {totals.up_to_date} devices already up to date."
            )
        )
        if totals.skipped_no_key:
            self.stdout.write(
                self.style.WARNING(
                    f"{totals.skipped_no_key} devices exist but their keys are not in {credentials}; left as they are."
                )
            )
