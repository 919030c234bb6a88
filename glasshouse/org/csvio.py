"""The people CSV: its columns, validating a whole file before anything is written, and the export.

Format (also shown on the import page, generated from COLUMNS):
- UTF-8 text (a byte-order mark is fine); comma-separated, or semicolon/tab when the header row
  uses those; a header row naming every column in COLUMNS, in any order, case-insensitive.
  Unknown or missing columns refuse the file.
- One person per row, matched on employee_number: an existing person is updated, a new number
  creates a person. People missing from the file are left as they are.
- manager_email is the manager's e-mail address (blank: no manager). The manager may be in the
  same file or already in Glasshouse.
- team must name an existing team (blank: no team). Unknown teams are refused rather than
  created, so a typo cannot quietly start a new team; create teams on the Teams page first.
- location is an office name or "Remote"; an unknown office is refused.
- The export writes exactly these columns, so an exported file imports back unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from glasshouse.org.models import (
    WEEKDAYS,
    EmploymentType,
    ImportStatus,
    Office,
    PeopleImport,
    Person,
    PersonStatus,
    Team,
)
from glasshouse.org.validation import PersonInput, describe_reporting_loop, find_loops, person_field_errors

REMOTE = "Remote"


@dataclass(frozen=True)
class Column:
    name: str
    description: str
    example: str
    required: bool = True


COLUMNS = (
    Column("employee_number", "Unique number from your HR system; used to match people on re-import.", "E1042"),
    Column("full_name", "Name as colleagues see it.", "Ada Lovelace"),
    Column("email", "Work e-mail address; unique.", "ada@example.com"),
    Column("job_title", "May be blank.", "Data engineer", required=False),
    Column("team", "Name of an existing team; blank for none.", "Platform", required=False),
    Column(
        "manager_email",
        "The manager's e-mail, in this file or already in Glasshouse; blank for none.",
        "grace@example.com",
        required=False,
    ),
    Column("location", f"An office name, or {REMOTE}.", "London"),
    Column("time_zone", "IANA time zone name.", "Europe/London"),
    Column("work_start", "Start of the working day, HH:MM (24-hour clock).", "09:00"),
    Column("work_end", "End of the working day, HH:MM; may be past midnight for night shifts.", "17:30"),
    Column("work_days", "Days worked: a range, a list, or both.", "mon-fri  or  mon,tue,wed"),
    Column("employment_type", ", ".join(EmploymentType.values) + ".", "employee"),
    Column("start_date", "First day, YYYY-MM-DD.", "2024-03-01"),
    Column("status", ", ".join(PersonStatus.values) + ".", "active"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
COLUMN_ORDER = {name: i for i, name in enumerate(COLUMN_NAMES)}
REQUIRED_VALUES = frozenset(c.name for c in COLUMNS if c.required)
EXAMPLES = {c.name: c.example for c in COLUMNS}

# Where a person field's problem is reported in the file.
FIELD_TO_COLUMN = {"team": "team", "office": "location", "manager": "manager_email"}

# Spreadsheets run cells starting with these as formulas; the export neutralises them with a
# leading apostrophe and the import takes it off again, so values survive a round trip.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_TIME = re.compile(r"^\d{1,2}:\d{2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class RowError:
    row: int | None
    field: str
    value: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "value": self.value, "message": self.message}


@dataclass
class ImportRow:
    row: int
    data: PersonInput
    manager_email: str
    existing: Person | None
    manager_number: str | None = None


@dataclass
class Validated:
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def decode(data: bytes) -> str:
    """The upload as text, or ValidationError({"file": why}) when it is not a CSV text file."""
    if not data.strip():
        raise ValidationError({"file": "The file is empty; it needs a header row and one row per person."})
    if b"\x00" in data[:4096] or data.startswith(b"PK\x03\x04"):
        raise ValidationError(
            {"file": "This is not a CSV text file (perhaps a workbook). Save it as 'CSV UTF-8' and upload that."}
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationError(
            {
                "file": f"The file is not UTF-8 text (unreadable byte on line {line}). "
                "Save it as 'CSV UTF-8' from your spreadsheet and upload again."
            }
        ) from exc


def _delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def _records(text: str) -> tuple[list[list[str]], RowError | None]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    records: list[list[str]] = []
    try:
        records.extend(reader)
    except csv.Error as exc:
        return records, RowError(len(records) + 1, "", "", f"This row cannot be read as CSV: {exc}.")
    return records, None


def _header_errors(header: list[str]) -> list[RowError]:
    names = [h.strip().lower() for h in header]
    errors = [
        RowError(1, name, name, f"Column {name} appears more than once.") for name, n in Counter(names).items() if n > 1
    ]
    for name in names:
        if name not in COLUMN_NAMES:
            hint = difflib.get_close_matches(name, COLUMN_NAMES, n=1)
            also = f" Did you mean {hint[0]}?" if hint else ""
            known = ", ".join(COLUMN_NAMES)
            errors.append(RowError(1, name, name, f"Unknown column '{name}'.{also} The columns are: {known}."))
    errors.extend(RowError(1, c, "", f"Missing column {c}.") for c in COLUMN_NAMES if c not in names)
    return errors


def _cell(raw: str) -> str:
    if raw.startswith("'") and raw[1:2] in FORMULA_STARTS:
        return raw[1:]
    return raw.strip()


def _parse_time(value: str) -> dt.time:
    if not _TIME.match(value):
        raise ValueError("Use HH:MM on a 24-hour clock, e.g. 09:00 or 17:30.")
    hours, minutes = (int(part) for part in value.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{value} is not a time of day; use 00:00 to 23:59.")
    return dt.time(hours, minutes)


def _parse_date(value: str) -> dt.date:
    try:
        if _DATE.match(value):
            return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a real date.") from None
    raise ValueError("Use YYYY-MM-DD, e.g. 2024-03-01.")


def parse_work_days(value: str) -> tuple[str, ...]:
    """Days from "mon-fri", "mon,tue,wed" or "mon-wed,fri"; a range may wrap ("fri-mon").

    Unknown tokens are kept so the field check can name them."""
    days: list[str] = []
    for token in (t.strip().lower() for t in value.split(",")):
        first, _, last = token.partition("-")
        if last and first in WEEKDAYS and last in WEEKDAYS:
            start, end = WEEKDAYS.index(first), WEEKDAYS.index(last)
            days.extend(WEEKDAYS[(start + i) % 7] for i in range((end - start) % 7 + 1))
        elif token:
            days.append(token)
    return tuple(days)


def _choice(value: str, choices: type[EmploymentType] | type[PersonStatus]) -> str:
    """Accepts the stored value or the label a person would type ("On leave" for on_leave)."""
    wanted = value.lower()
    for stored, label in choices.choices:
        if wanted in (stored, label.lower()):
            return str(stored)
    return value


class _Lookups:
    """Teams, offices and people already in Glasshouse, loaded once per file."""

    def __init__(self) -> None:
        self.teams = {t.name.lower(): t for t in Team.objects.all()}
        self.offices = {o.name.lower(): o for o in Office.objects.all()}
        self.people = {p.employee_number: p for p in Person.objects.all()}

    def team(self, name: str) -> Team | None:
        if not name:
            return None
        if found := self.teams.get(name.lower()):
            return found
        names = [t.name for t in self.teams.values()]
        hint = difflib.get_close_matches(name, names, n=1)
        also = f" Did you mean {hint[0]}?" if hint else ""
        raise ValueError(f"There is no team called {name}.{also} Create it on the Teams page first.")

    def office(self, name: str) -> Office | None:
        if name.lower() == REMOTE.lower():
            return None
        if found := self.offices.get(name.lower()):
            return found
        known = ", ".join([*(o.name for o in self.offices.values()), REMOTE])
        raise ValueError(f"There is no office called {name}; use one of: {known}.")


def _parse_row(number: int, cells: dict[str, str], lookups: _Lookups) -> tuple[ImportRow, list[RowError]]:
    problems: dict[str, str] = {}

    def parsed(column: str, parse: Callable[[str], Any], default: Any) -> Any:
        value = cells[column]
        if not value:
            if column in REQUIRED_VALUES:
                problems[column] = f"A value is required, e.g. {EXAMPLES[column]}."
            return default
        try:
            return parse(value)
        except ValueError as exc:
            problems[column] = str(exc)
            return default

    data = PersonInput(
        full_name=cells["full_name"],
        email=cells["email"],
        employee_number=cells["employee_number"],
        job_title=cells["job_title"],
        team=parsed("team", lookups.team, None),
        office=parsed("location", lookups.office, None),
        time_zone=parsed("time_zone", str, "UTC"),
        work_start=parsed("work_start", _parse_time, dt.time(9, 0)),
        work_end=parsed("work_end", _parse_time, dt.time(17, 0)),
        work_days=parsed("work_days", parse_work_days, WEEKDAYS[:5]),
        employment_type=parsed("employment_type", lambda v: _choice(v, EmploymentType), EmploymentType.EMPLOYEE),
        start_date=parsed("start_date", _parse_date, dt.date.min),
        status=parsed("status", lambda v: _choice(v, PersonStatus), PersonStatus.ACTIVE),
    )
    for name, message in person_field_errors(data).items():
        problems.setdefault(FIELD_TO_COLUMN.get(name, name), message)
    row = ImportRow(number, data, cells["manager_email"].lower(), lookups.people.get(data.employee_number))
    errors = [RowError(number, c, cells[c], m) for c, m in sorted(problems.items(), key=lambda p: COLUMN_ORDER[p[0]])]
    return row, errors


def validate(text: str, *, progress: Callable[[int, int], None], every: int = 500) -> Validated:
    """Every row and every field, then duplicates, managers and reporting loops across the file
    and Glasshouse. `progress(done, total)` is called every `every` rows."""
    result = Validated()
    records, unreadable = _records(text)
    if unreadable is not None:
        result.errors.append(unreadable)
        return result
    if not records or not any(cell.strip() for cell in records[0]):
        result.errors.append(RowError(1, "", "", "The first row must be the header row naming the columns."))
        return result
    result.errors.extend(_header_errors(records[0]))
    if result.errors:
        return result
    header = [h.strip().lower() for h in records[0]]
    # Spreadsheet row numbers: the header is row 1 and blank lines still count.
    numbered = [(i + 1, r) for i, r in enumerate(records) if i > 0 and any(cell.strip() for cell in r)]
    if not numbered:
        result.errors.append(RowError(2, "", "", "The file has a header row but no people."))
        return result

    total = len(numbered)
    progress(0, total)
    lookups = _Lookups()
    for done, (number, record) in enumerate(numbered, start=1):
        if len(record) != len(header):
            result.errors.append(
                RowError(number, "", "", f"This row has {len(record)} cells but the header has {len(header)} columns.")
            )
        else:
            row, errors = _parse_row(number, dict(zip(header, map(_cell, record), strict=True)), lookups)
            result.rows.append(row)
            result.errors.extend(errors)
        if done % every == 0 or done == total:
            progress(done, total)
    result.errors.extend(_cross_row_errors(result.rows, lookups))
    result.errors.sort(key=lambda e: (e.row or 0, COLUMN_ORDER.get(e.field, -1)))
    return result


def _cross_row_errors(rows: list[ImportRow], lookups: _Lookups) -> list[RowError]:
    errors: list[RowError] = []
    first_row_of_number: dict[str, int] = {}
    first_row_of_email: dict[str, int] = {}
    for row in rows:
        number, email = row.data.employee_number, row.data.email
        if number and (seen := first_row_of_number.setdefault(number, row.row)) != row.row:
            errors.append(RowError(row.row, "employee_number", number, f"{number} is also on row {seen}."))
        if email and (seen := first_row_of_email.setdefault(email, row.row)) != row.row:
            errors.append(RowError(row.row, "email", email, f"{email} is also on row {seen}."))

    # Whose address is whose once the file is in: people in the file take the file's address.
    owner = {p.email.lower(): p for p in lookups.people.values() if p.employee_number not in first_row_of_number}
    in_file = {row.data.email: row.data.employee_number for row in rows}
    for row in rows:
        clash = owner.get(row.data.email)
        if clash is not None:
            errors.append(
                RowError(
                    row.row,
                    "email",
                    row.data.email,
                    f"{row.data.email} already belongs to {clash.full_name} ({clash.employee_number}), "
                    "who is not in this file.",
                )
            )

    number_of_pk = {p.pk: n for n, p in lookups.people.items()}
    for row in rows:
        if not row.manager_email:
            continue
        found = in_file.get(row.manager_email) or (
            owner[row.manager_email].employee_number if row.manager_email in owner else None
        )
        if found is None:
            errors.append(
                RowError(
                    row.row,
                    "manager_email",
                    row.manager_email,
                    f"Nobody with the e-mail {row.manager_email} is in this file or in Glasshouse.",
                )
            )
        elif found == row.data.employee_number:
            errors.append(
                RowError(row.row, "manager_email", row.manager_email, "A person cannot be their own manager.")
            )
        else:
            row.manager_number = found

    # Reporting lines after the import: the file's for people in it, Glasshouse's for the rest.
    parents: dict[str, str | None] = {
        n: number_of_pk.get(p.manager_id) if p.manager_id else None for n, p in lookups.people.items()
    }
    parents.update({row.data.employee_number: row.manager_number for row in rows})
    by_number = {row.data.employee_number: row for row in rows}
    names = {n: p.full_name for n, p in lookups.people.items()} | {
        r.data.employee_number: r.data.full_name for r in rows
    }
    for loop in find_loops((row.data.employee_number for row in rows if row.manager_number), parents.get):
        message = describe_reporting_loop([f"{names[n]} ({n})" for n in loop])
        errors.extend(
            RowError(by_number[n].row, "manager_email", by_number[n].manager_email, message)
            for n in loop
            if n in by_number
        )
    return errors


def _safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def person_row(person: Person) -> list[str]:
    return [
        _safe(v)
        for v in (
            person.employee_number,
            person.full_name,
            person.email,
            person.job_title,
            person.team.name if person.team else "",
            person.manager.email if person.manager else "",
            person.location_label,
            person.time_zone,
            person.work_start.strftime("%H:%M"),
            person.work_end.strftime("%H:%M"),
            person.work_days,
            person.employment_type,
            person.start_date.isoformat(),
            person.status,
        )
    ]


def write_people(people: Iterable[Person]) -> str:
    """The export, also the template (with no people): re-importing it changes nothing."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMN_NAMES)
    writer.writerows(person_row(p) for p in people)
    return out.getvalue()


def import_summary(job: PeopleImport) -> str:
    """How an import stands, in the words the status page and the command line show."""
    if job.status == ImportStatus.VALIDATING:
        if job.total_rows == 0:
            return "Reading the file…"
        return f"Validating {job.processed_rows:,} of {job.total_rows:,} rows"
    if job.status == ImportStatus.IMPORTING:
        return f"Writing {job.total_rows:,} people…"
    if job.status == ImportStatus.DONE:
        unchanged = job.total_rows - job.created_count - job.updated_count
        return (
            f"Imported {job.total_rows:,} rows: {job.created_count:,} people added, "
            f"{job.updated_count:,} updated, {unchanged:,} unchanged."
        )
    if job.status == ImportStatus.INVALID:
        return "Refused: the file has problems, so nothing was written. Fix the rows listed and try again."
    return "The import failed and nothing was written. Tell an IT admin what it says below."
