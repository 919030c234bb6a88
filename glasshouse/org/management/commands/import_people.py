"""Import people from a CSV file on the command line, with the same checks and writing as the
web import: every row is validated first and nothing is written unless all of them pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from glasshouse.org import actions, csvio
from glasshouse.org.models import ImportStatus, PeopleImport


class Command(BaseCommand):
    help = "Import people from a CSV file (see the Import people page for the columns)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the CSV file")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
        try:
            job = actions.do_create_import(None, path.name, data, background=False)
        except ValidationError as exc:
            raise CommandError(f"{path}: {' '.join(exc.messages)}") from exc

        job = actions.run_import(job.pk, on_progress=self._progress, actor_label="manage.py import_people")
        for error in job.errors:
            where = f"row {error['row']}" if error["row"] else "file"
            column = f" {error['field']}" if error["field"] else ""
            value = f" {error['value']!r}" if error["value"] else ""
            self.stderr.write(f"{where}{column}{value}: {error['message']}")
        if job.status != ImportStatus.DONE:
            raise CommandError(csvio.import_summary(job))
        self.stdout.write(self.style.SUCCESS(csvio.import_summary(job)))

    def _progress(self, job: PeopleImport) -> None:
        if not job.finished:
            self.stdout.write(csvio.import_summary(job))
