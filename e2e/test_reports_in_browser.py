"""An IT admin classifies the biggest uncategorised application in the browser and watches the
overview's productive share change; the overview's CSV, XLSX and PDF downloads carry the same
numbers; an HR partner opening the shared link is refused."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from conftest import Personas
from e2e.conftest import SignIn
from glasshouse.activity.rollups import roll_up_pending
from glasshouse.devices.models import AgentPolicy
from glasshouse.ingest.tests.helpers import Agent, window

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def seed(personas: Personas) -> None:
    """Yesterday: 2 h in "code", 1 h in "solitaire", 3 h active, 20 min idle."""
    AgentPolicy.objects.filter(team__isnull=True).update(collect_browser=True)
    t = dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(9), dt.UTC).timestamp()
    spans = [
        window(t, t + 7200, app="code"),
        window(t + 7200, t + 10800, app="solitaire"),
        {"kind": "idle", "start": t, "end": t + 10800, "state": "active"},
        {"kind": "idle", "start": t + 10800, "end": t + 12000, "state": "idle"},
        {"kind": "browser", "start": t, "end": t + 600, "app": "firefox", "domain": "docs.python.org"},
    ]
    assert Agent.enrolled(personas.person("employee")).send({"batch_seq": 1, "spans": spans}).status_code == 200
    roll_up_pending()


def download(page: Page, name: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("link", name=name, exact=True).click()
    path = info.value.path()
    return Path(path).read_bytes()


def test_classifying_changes_the_overview_and_exports_download(
    personas: Personas, sign_in: SignIn, live_server: object, browser: object
) -> None:
    seed(personas)
    page = sign_in("it@example.test")
    page.locator("nav.sidebar").get_by_role("link", name="Activity overview").click()
    share = page.locator("[data-kpi=productive-share]")
    expect(share).to_have_text("0%")
    expect(page.locator("svg.chart").first).to_be_visible()

    page.locator("nav.sidebar").get_by_role("link", name="Uncategorised").click()
    rows = page.locator("tbody tr")
    expect(rows.first).to_have_attribute("data-subject", "code")  # the biggest unknown first
    page.get_by_role("button", name="Productive: code", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("code is now productive")
    expect(page.locator("tbody tr[data-subject=code]")).to_have_count(0)

    page.locator("nav.sidebar").get_by_role("link", name="Activity overview").click()
    expect(share).to_have_text("67%")
    share_url = page.locator("#share-link").input_value()

    rows_csv = list(csv.DictReader(io.StringIO(download(page, "CSV").decode())))
    by_item = {(r["section"], r["item"]): r for r in rows_csv}
    assert by_item[("summary", "productive share")]["percent"] == "66.7"
    assert by_item[("top apps", "code")]["category"] == "productive"
    book = load_workbook(io.BytesIO(download(page, "XLSX")))
    assert [c.value for c in book["Top applications"][3]][:3] == ["top apps", "code", "productive"]
    pdf = download(page, "PDF")
    assert pdf.startswith(b"%PDF")
    assert "66.7" in "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)

    # The shared link carries filters, not rights: an HR partner is refused.
    hr = page.context.browser.new_context().new_page()  # type: ignore[union-attr]
    hr.goto(f"{live_server}/accounts/login/")
    hr.get_by_label("Work e-mail").fill("hr@example.test")
    hr.get_by_label("Password").fill("persona-password-123")
    hr.get_by_role("button", name="Sign in").click()
    hr.wait_for_load_state()
    assert hr.goto(share_url).status == 403  # type: ignore[union-attr]
    hr.context.close()
