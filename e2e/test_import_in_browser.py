"""An HR partner imports people from CSV in the browser: a bad file is refused whole with
per-row, per-field errors; a good file imports with progress and the people appear."""

from __future__ import annotations

import pytest
from playwright.sync_api import FilePayload, Page, expect

from conftest import Personas
from e2e.conftest import SignIn
from glasshouse.org.models import Person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEADER = (
    "employee_number,full_name,email,job_title,team,manager_email,location,time_zone,"
    "work_start,work_end,work_days,employment_type,start_date,status"
)
GOOD_ROW = (
    "N100,Nia Newcomer,nia@example.test,Analyst,Sales,manager@example.test,London,Europe/London,"
    "09:00,17:00,mon-fri,employee,2024-03-01,active"
)
BAD_ROWS = [
    GOOD_ROW,
    "N101,Bad Zone,badzone@example.test,Analyst,Sales,,London,Mars/Olympus,"
    "09:00,17:00,mon-fri,employee,2024-03-01,active",
    "N102,Bad Mail,not-an-email,Analyst,Sales,,London,UTC,09:00,17:00,mon-fri,employee,2024-13-01,active",
]


def upload(page: Page, live_server: object, name: str, text: str) -> None:
    page.goto(f"{live_server}/org/import/")
    payload: FilePayload = {"name": name, "mimeType": "text/csv", "buffer": text.encode()}
    page.get_by_label("CSV file").set_input_files(files=[payload])
    page.get_by_role("button", name="Check and import").click()


def test_bad_file_is_refused_whole_with_row_errors(personas: Personas, sign_in: SignIn, live_server: object) -> None:
    before = Person.objects.count()
    page = sign_in("hr@example.test")
    upload(page, live_server, "bad.csv", "\n".join([HEADER, *BAD_ROWS]) + "\n")
    progress = page.locator("#import-progress")
    expect(progress).to_have_attribute("data-status", "invalid")
    table = progress.locator("table")
    # Row 3 has the unknown time zone; row 4 a bad e-mail and a bad date (header is row 1).
    expect(table.locator("tr", has_text="Mars/Olympus")).to_contain_text("time_zone")
    expect(table.locator("tr", has_text="Mars/Olympus").locator("td").first).to_have_text("3")
    expect(table.locator("tr", has_text="not-an-email")).to_contain_text("email")
    expect(table.locator("tr", has_text="2024-13-01")).to_contain_text("start_date")
    expect(table.locator("tr", has_text="2024-13-01").locator("td").first).to_have_text("4")
    assert Person.objects.count() == before  # nothing imported, not even the good row
    assert not Person.objects.filter(email="nia@example.test").exists()


def test_good_file_imports_with_progress(personas: Personas, sign_in: SignIn, live_server: object) -> None:
    page = sign_in("hr@example.test")
    upload(page, live_server, "good.csv", f"{HEADER}\n{GOOD_ROW}\n")
    expect(page.locator("#import-progress")).to_have_attribute("data-status", "done")
    nia = Person.objects.get(email="nia@example.test")
    assert nia.manager == personas.person("manager")
    page.goto(f"{live_server}/org/people/?q=Nia")
    expect(page.get_by_role("link", name="Nia Newcomer")).to_be_visible()
