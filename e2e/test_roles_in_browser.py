"""Each role signs in through the real form and sees its own menu; refusals are explained."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from conftest import Personas
from e2e.conftest import SignIn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The menu each role must see (by nav URL name) and what it must not see.
EXPECTED_MENUS = {
    "it@example.test": ({"org:import", "activity:people", "accounts:roles", "audit:log"}, set()),
    "sec@example.test": ({"activity:people"}, {"org:import", "accounts:roles", "audit:log"}),
    "hr@example.test": ({"org:import"}, {"activity:people", "accounts:roles", "audit:log"}),
    "manager@example.test": ({"org:my_team", "activity:mine"}, {"activity:people", "org:import", "audit:log"}),
    "employee@example.test": ({"activity:mine", "org:people"}, {"org:my_team", "activity:people", "org:import"}),
    "auditor@example.test": ({"audit:log", "audit:verify"}, {"activity:people", "org:import", "accounts:roles"}),
}


def menu(page: Page) -> set[str]:
    return set(page.locator("nav.sidebar a").evaluate_all("els => els.map(e => e.dataset.nav)"))


@pytest.mark.parametrize("email", list(EXPECTED_MENUS))
def test_each_role_sees_its_menu(personas: Personas, sign_in: SignIn, email: str) -> None:
    page = sign_in(email)
    expect(page.locator("header .whoami")).to_contain_text(email)
    must, must_not = EXPECTED_MENUS[email]
    seen = menu(page)
    assert must <= seen, f"{email} is missing {must - seen}"
    assert not (must_not & seen), f"{email} must not see {must_not & seen}"


def test_hr_partner_is_refused_an_it_only_page(personas: Personas, sign_in: SignIn, live_server: object) -> None:
    page = sign_in("hr@example.test")
    employee = personas.person("employee")
    response = page.goto(f"{live_server}/monitoring/people/{employee.pk}/")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_test_id("forbidden-reason")).to_contain_text("IT admins and security analysts")
    response = page.goto(f"{live_server}/monitoring/people/")
    assert response is not None
    assert response.status == 403


def test_wrong_password_shows_an_error(personas: Personas, sign_in: SignIn) -> None:
    page = sign_in("hr@example.test", "not-the-password")
    expect(page.get_by_test_id("login-error")).to_contain_text("do not match")


def test_security_analyst_states_purpose_and_the_auditor_sees_it(
    personas: Personas, sign_in: SignIn, live_server: object
) -> None:
    employee = personas.person("employee")
    page = sign_in("sec@example.test")
    page.goto(f"{live_server}/monitoring/people/{employee.pk}/")
    page.get_by_label("Purpose").select_option("security_incident")
    page.get_by_label("Case, ticket or reason").fill("SEC-2201 suspicious USB copy")
    page.get_by_role("button", name="Open and record this look").click()
    expect(page.get_by_test_id("purpose-banner")).to_contain_text("SEC-2201 suspicious USB copy")
    page.get_by_role("button", name="Log out").click()

    page = sign_in("auditor@example.test")
    page.goto(f"{live_server}/audit/?action=monitoring.person.view")
    expect(page.get_by_test_id("audit-table")).to_contain_text("SEC-2201 suspicious USB copy")
    page.goto(f"{live_server}/audit/verify/")
    page.get_by_role("button", name="Verify now").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("Audit chain intact")
