"""CSV import and export: whole-file validation, all-or-nothing writes, upserts, round trips,
progress, and a 10,000-person file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError

from conftest import Personas
from glasshouse.audit.models import AuditEntry
from glasshouse.org import actions, csvio
from glasshouse.org.models import EmploymentType, ImportStatus, PeopleImport, Person, PersonStatus, Team
from glasshouse.org.tests.factories import people_rows, to_csv

HEADER = ",".join(csvio.COLUMN_NAMES)


def run(data: bytes | str, on_progress: Callable[[PeopleImport], None] | None = None) -> PeopleImport:
    raw = data.encode() if isinstance(data, str) else data
    job = actions.do_create_import(None, "people.csv", raw, background=False)
    return actions.run_import(job.pk, on_progress=on_progress)


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def errors_at(job: PeopleImport) -> set[tuple[int | None, str]]:
    return {(e["row"], e["field"]) for e in job.errors}


GOOD = csv_text(
    "N1,Nia Lead,nia@example.test,Head of sales,Sales,,London,Europe/London,08:00,16:00,mon-fri,employee,"
    "2021-04-01,active",
    "N2,Noor Rep,noor@example.test,Account executive,Sales,nia@example.test,Remote,America/New_York,09:00,17:30,"
    '"mon,tue,wed",Contractor,2023-01-09,On leave',
    "N3,Ned Rep,ned@example.test,,,noor@example.test,london,Asia/Singapore,22:00,06:00,sun-thu,intern,"
    "2024-06-03,active",
)


def test_a_good_file_creates_people_with_managers_teams_and_offices(personas: Personas) -> None:
    before = Person.objects.count()
    job = run(GOOD)
    assert job.status == ImportStatus.DONE, job.errors
    assert (job.created_count, job.updated_count) == (3, 0)
    assert Person.objects.count() == before + 3
    nia, noor, ned = (Person.objects.get(employee_number=n) for n in ("N1", "N2", "N3"))
    assert (nia.manager, noor.manager, ned.manager) == (None, nia, noor)
    assert (nia.office, noor.office, ned.office) == (personas.office, None, personas.office)
    assert (noor.team, ned.team) == (personas.sales_team, None)
    assert (noor.work_days, ned.work_days) == ("mon,tue,wed", "mon,tue,wed,thu,sun")
    assert (noor.employment_type, noor.status) == (EmploymentType.CONTRACTOR, PersonStatus.ON_LEAVE)
    assert (ned.work_start, ned.start_date) == (dt.time(22), dt.date(2024, 6, 3))
    entry = AuditEntry.objects.get(action="org.people.import")
    assert entry.after == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0}


def test_a_file_with_bad_rows_is_refused_whole_with_every_problem(personas: Personas) -> None:
    people, teams = Person.objects.count(), Team.objects.count()
    job = run(
        csv_text(
            "N1,Nia Lead,nia@example.test,,Sales,,London,Europe/London,08:00,16:00,mon-fri,employee,2021-04-01,active",
            "N2,Noor Rep,not-an-email,,Salse,ghost@example.test,Paris,Mars/Base,9am,17:00,mon-fri,staff,2023-02-30,x",
            "",
            "N1,Nia Again,hr@example.test,,,,Remote,UTC,09:00,09:00,someday,employee,2023-01-01,active",
            "N4,Too Few",
        )
    )
    assert job.status == ImportStatus.INVALID
    assert (Person.objects.count(), Team.objects.count()) == (people, teams)
    assert not Person.objects.filter(employee_number="N1").exists()
    # Spreadsheet rows: header is 1, the blank line is row 4.
    assert errors_at(job) == {
        (3, "email"),
        (3, "team"),
        (3, "manager_email"),
        (3, "location"),
        (3, "time_zone"),
        (3, "work_start"),
        (3, "employment_type"),
        (3, "start_date"),
        (3, "status"),
        (5, "employee_number"),
        (5, "email"),
        (5, "work_end"),
        (5, "work_days"),
        (6, ""),
    }
    by_place = {(e["row"], e["field"]): e for e in job.errors}
    assert by_place[(3, "team")]["message"].startswith("There is no team called Salse. Did you mean Sales?")
    assert by_place[(3, "team")]["value"] == "Salse"
    assert "ghost@example.test" in by_place[(3, "manager_email")]["message"]
    assert "London, Remote" in by_place[(3, "location")]["message"]
    assert by_place[(5, "employee_number")]["message"] == "N1 is also on row 2."
    assert "Hana Partner (E003), who is not in this file" in by_place[(5, "email")]["message"]
    assert "2 cells but the header has 14 columns" in by_place[(6, "")]["message"]
    assert not AuditEntry.objects.filter(action="org.people.import").exists()


def test_unknown_and_missing_columns_refuse_the_file(personas: Personas) -> None:
    header = HEADER.replace("manager_email", "manager").replace(",status", "")
    job = run(header + "\nN1,Nia,nia@example.test,,,,Remote,UTC,09:00,17:00,mon-fri,employee,2021-04-01\n")
    assert job.status == ImportStatus.INVALID
    messages = {e["field"]: e["message"] for e in job.errors}
    assert "Unknown column 'manager'. Did you mean manager_email?" in messages["manager"]
    assert messages["status"] == "Missing column status."
    assert {e["row"] for e in job.errors} == {1}


def test_a_reporting_loop_across_the_file_and_glasshouse_is_refused(personas: Personas) -> None:
    # In Glasshouse Eve reports to Max; the file makes Max report to Eve.
    manager = personas.person("manager")
    row = csvio.person_row(manager)
    row[csvio.COLUMN_NAMES.index("manager_email")] = "employee@example.test"
    job = run(to_csv([dict(zip(csvio.COLUMN_NAMES, row, strict=True))]))
    assert job.status == ImportStatus.INVALID
    [error] = job.errors
    assert (error["row"], error["field"]) == (2, "manager_email")
    assert "Max Manager (E004) → Eve Employee (E005) → Max Manager (E004)" in error["message"]
    manager.refresh_from_db()
    assert manager.manager_id is None


def test_reimporting_updates_people_matched_on_employee_number(personas: Personas) -> None:
    run(GOOD)
    changed = GOOD.replace("Head of sales", "Chief revenue officer").replace(
        "ned@example.test,,,noor@example.test", "ned@example.test,,,nia@example.test"
    )
    job = run(changed)
    assert job.status == ImportStatus.DONE, job.errors
    assert (job.created_count, job.updated_count) == (0, 2)
    assert Person.objects.get(employee_number="N1").job_title == "Chief revenue officer"
    assert Person.objects.get(employee_number="N3").manager == Person.objects.get(employee_number="N1")
    assert Person.objects.filter(employee_number__startswith="N").count() == 3


def test_an_export_imports_back_unchanged(personas: Personas) -> None:
    employee = personas.person("employee")
    employee.job_title = '=HYPERLINK("http://evil.test")'
    employee.save()
    exported = actions.do_export_people(personas.hr)
    assert exported.splitlines()[0] == HEADER
    assert "'=HYPERLINK" in exported  # neutralised for spreadsheets
    snapshot = [csvio.person_row(p) for p in Person.objects.order_by("employee_number")]
    job = run(exported)
    assert job.status == ImportStatus.DONE, job.errors
    # Nothing counted as changed means every exported value parsed back to what was stored.
    assert (job.created_count, job.updated_count) == (0, 0)
    assert [csvio.person_row(p) for p in Person.objects.order_by("employee_number")] == snapshot
    employee.refresh_from_db()
    assert employee.job_title == '=HYPERLINK("http://evil.test")'
    assert AuditEntry.objects.get(action="org.people.export").after == {"people": 6}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"employee_number,full_name\nE1,Jos\xe9\n", "not UTF-8 text (unreadable byte on line 2)"),
        (b"PK\x03\x04\x14\x00\x06\x00binary", "not a CSV text file"),
    ],
)
def test_files_that_are_not_csv_text_are_refused_with_a_reason(personas: Personas, data: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        actions.do_create_import(personas.hr, "people.csv", data, background=False)
    assert message in exc.value.message_dict["file"][0]
    assert not PeopleImport.objects.exists()


def test_a_header_without_people_is_refused(personas: Personas) -> None:
    job = run("\ufeff" + HEADER + "\n\n")
    assert job.status == ImportStatus.INVALID
    assert job.errors[0]["message"] == "The file has a header row but no people."


def test_semicolon_separated_files_are_read(personas: Personas) -> None:
    job = run(GOOD.replace(",", ";").replace('"mon;tue;wed"', "mon,tue,wed"))
    assert job.status == ImportStatus.DONE, job.errors
    assert job.created_count == 3


def test_progress_moves_and_is_saved_as_it_goes(personas: Personas) -> None:
    seen: list[tuple[str, int, int]] = []

    def watch(job: PeopleImport) -> None:
        stored = PeopleImport.objects.get(pk=job.pk)
        seen.append((stored.status, stored.processed_rows, stored.total_rows))

    rows = people_rows(1200, teams=["Sales"], offices=["London"])
    job = run(to_csv(rows), on_progress=watch)
    assert job.status == ImportStatus.DONE
    validating = [done for status, done, total in seen if status == ImportStatus.VALIDATING]
    assert validating == [0, 500, 1000, 1200]
    assert all(total == 1200 for _, _, total in seen)
    assert [s for s, _, _ in seen][-2:] == [ImportStatus.IMPORTING, ImportStatus.DONE]


def test_errors_are_capped_with_a_count_of_the_rest(personas: Personas) -> None:
    rows = people_rows(700, teams=["Nowhere"], offices=[])
    job = run(to_csv(rows))
    assert job.status == ImportStatus.INVALID
    assert len(job.errors) == actions.MAX_STORED_ERRORS + 1
    assert job.errors[-1]["message"] == "… and 200 more problems not listed."


def test_an_unexpected_error_marks_the_import_failed(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(csvio, "validate", broken)
    job = run(GOOD)
    assert job.status == ImportStatus.FAILED
    assert job.finished_at is not None
    assert job.errors[0]["message"] == "disk full"
    assert PeopleImport.objects.get(pk=job.pk).status == ImportStatus.FAILED


def test_ten_thousand_people_import_in_one_go(personas: Personas) -> None:
    before = Person.objects.count()
    rows = people_rows(10_000, teams=["Sales", "IT", "People"], offices=["London"])
    job = run(to_csv(rows))
    assert job.status == ImportStatus.DONE, job.errors[:5]
    assert (job.created_count, job.processed_rows) == (10_000, 10_000)
    assert Person.objects.count() == before + 10_000
    last = Person.objects.select_related("manager").get(employee_number="G09999")
    assert last.manager is not None
    assert last.manager.employee_number == "G00999"
    assert Person.objects.filter(manager__employee_number="G00000").count() == 10
    assert AuditEntry.objects.filter(action="org.people.import").count() == 1
