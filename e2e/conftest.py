"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) against a live server.

No browser is downloaded: Playwright launches the system Chromium. Without it the tests are
skipped with the reason on a developer's machine and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from conftest import PERSONA_PASSWORD

# Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the test
# itself (fixtures, assertions) are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# The endpoint agent as `make test` installs it, in its own virtualenv.
AGENT = Path(__file__).resolve().parents[1] / "agent" / ".venv" / "bin" / "glasshouse-agent"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def installed_agent() -> None:
    """Tests that run the real agent: skipped with the reason when it is not installed, and a
    failure under CI=true."""
    if not AGENT.exists():
        reason = f"the agent is not installed at {AGENT} (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        reason = "Debian's chromium is not installed (scripts/ensure-chromium.sh installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


SignIn = Callable[..., Page]  # (email, password=PERSONA_PASSWORD) -> the signed-in page


@pytest.fixture
def sign_in(page: Page, live_server: object) -> SignIn:
    """sign_in("hr@example.test") signs in through the real login form and returns the page."""

    def go(email: str, password: str = PERSONA_PASSWORD) -> Page:
        page.goto(f"{live_server}/accounts/login/")
        page.get_by_label("Work e-mail").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        return page

    return go
