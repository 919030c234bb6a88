"""Role x URL expectations for the monitoring reports and classification (joined by core's
test_role_matrix).

IT admins and security analysts see the overview, its exports, the rules and the queue; only
IT admins change rules (POST-only URLs answer a GET with 405 once the role check passed). HR
partners, managers, employees, auditors and outsiders get 403: purpose separation.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.core.tests.matrix import none, only

MONITORING = ("it_admin", "security")
IT = ("it_admin",)


def fmt(name: str) -> Callable[[Personas], dict[str, object]]:
    def kwargs(p: Personas) -> dict[str, object]:
        return {"fmt": name}

    return kwargs


def one(p: Personas) -> dict[str, object]:
    return {"pk": 1}


MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("reports:overview", none, only(MONITORING)),
    ("reports:export", fmt("csv"), only(MONITORING)),
    ("reports:export", fmt("xlsx"), only(MONITORING)),
    ("reports:export", fmt("pdf"), only(MONITORING)),
    ("reports:after_hours", none, only(MONITORING)),
    ("reports:after_hours_export", fmt("csv"), only(MONITORING)),
    ("reports:after_hours_export", fmt("xlsx"), only(MONITORING)),
    ("reports:after_hours_export", fmt("pdf"), only(MONITORING)),
    ("reports:software", none, only(MONITORING)),
    ("reports:software_export", fmt("csv"), only(MONITORING)),
    ("reports:software_export", fmt("xlsx"), only(MONITORING)),
    ("reports:software_export", fmt("pdf"), only(MONITORING)),
    ("reports:locations", none, only(MONITORING)),
    ("reports:locations_export", fmt("csv"), only(MONITORING)),
    ("reports:locations_export", fmt("xlsx"), only(MONITORING)),
    ("reports:locations_export", fmt("pdf"), only(MONITORING)),
    ("reports:rules", none, only(MONITORING)),
    ("reports:rule_add", none, only(IT, ok=405)),
    ("reports:rule_change", one, only(IT, ok=405)),
    ("reports:rule_remove", one, only(IT, ok=405)),
    ("reports:uncategorised", none, only(MONITORING)),
    ("reports:classify", none, only(IT, ok=405)),
    ("reports:schedules", none, only(MONITORING)),
    ("reports:schedule_add", none, only(IT, ok=405)),
    ("reports:schedule_delete", one, only(IT, ok=405)),
]
