"""Verify the audit hash chain; exits 1 and names the first broken entry when it was tampered with."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from glasshouse.audit.chain import verify_chain


class Command(BaseCommand):
    help = "Recompute every audit entry's hash and report the first entry that does not fit the chain."

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain()
        if report.ok:
            self.stdout.write(self.style.SUCCESS(report.describe()))
            return
        self.stderr.write(self.style.ERROR(report.describe()))
        raise SystemExit(1)
