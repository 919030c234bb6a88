"""Create the first IT admin on a fresh installation (there are no default accounts)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from glasshouse.accounts.actions import do_create_admin


class Command(BaseCommand):
    help = "Create an IT admin account. Prompts for the password unless --password-file is given."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--password-file", help="read the password from this file (first line)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["password_file"]:
            password = Path(options["password_file"]).read_text().splitlines()[0]
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            user = do_create_admin(options["email"], password)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created IT admin {user.email}."))
