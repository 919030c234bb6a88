"""Role x URL expectations for the control pages and the agent's USB request endpoints (joined
by core's test_role_matrix).

IT admins and security analysts see policies, categories, the request inbox and the events
log; only IT admins change anything or make offline codes. HR partners, managers, employees,
auditors and outsiders get 403. POST-only URLs answer a GET with 405 once the role check has
passed. The agent endpoints need a device key whatever the browser session.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.controls.models import WebCategory
from glasshouse.core.tests.matrix import every, none, only

MONITORING = ("it_admin", "security")
IT = ("it_admin",)


def default_scope(p: Personas) -> dict[str, object]:
    return {"scope": "default"}


def sales_scope(p: Personas) -> dict[str, object]:
    return {"scope": str(p.sales_team.pk)}


def sales_item(p: Personas) -> dict[str, object]:
    return {"scope": str(p.sales_team.pk), "pk": 1}


def a_category(p: Personas) -> dict[str, object]:
    # Shipped by the data migration.
    return {"pk": WebCategory.objects.get(name="social").pk}


def a_category_domain(p: Personas) -> dict[str, object]:
    category = WebCategory.objects.get(name="social")
    return {"pk": category.pk, "domain_pk": category.domains.first().pk}  # type: ignore[union-attr]


def one(p: Personas) -> dict[str, object]:
    return {"pk": 1}


def request_one(p: Personas) -> dict[str, object]:
    return {"request_id": 1}


MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("controls:overview", none, only(MONITORING)),
    ("controls:usb", default_scope, only(MONITORING)),
    ("controls:usb", sales_scope, only(MONITORING)),
    ("controls:usb_allow_add", sales_scope, only(IT, ok=405)),
    ("controls:usb_allow_remove", sales_item, only(IT, ok=405)),
    ("controls:usb_delete", sales_scope, only(IT, ok=405)),
    ("controls:usb_history", sales_scope, only(MONITORING)),
    ("controls:web", default_scope, only(MONITORING)),
    ("controls:web", sales_scope, only(MONITORING)),
    ("controls:web_rule_add", sales_scope, only(IT, ok=405)),
    ("controls:web_rule_remove", sales_item, only(IT, ok=405)),
    ("controls:web_delete", sales_scope, only(IT, ok=405)),
    ("controls:categories", none, only(MONITORING)),
    ("controls:category", a_category, only(MONITORING)),
    ("controls:category_delete", a_category, only(IT, ok=405)),
    ("controls:category_domain_remove", a_category_domain, only(IT, ok=405)),
    ("controls:apps", default_scope, only(MONITORING)),
    ("controls:apps", sales_scope, only(MONITORING)),
    ("controls:app_add", sales_scope, only(IT, ok=405)),
    ("controls:app_remove", sales_item, only(IT, ok=405)),
    ("controls:apps_delete", sales_scope, only(IT, ok=405)),
    ("controls:usb_requests", none, only(MONITORING)),
    ("controls:usb_request_decide", one, only(IT, ok=405)),
    ("controls:offline_code", none, only(IT)),
    ("controls:events", none, only(MONITORING)),
    ("agent_api:usb_requests", none, every(405, anonymous=405)),
    ("agent_api:usb_request", request_one, every(401, anonymous=401)),
]
