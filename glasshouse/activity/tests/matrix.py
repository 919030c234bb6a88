"""Role x URL expectations for the timeline and live view (joined by core's test_role_matrix;
the older activity pages are listed in core's matrix).

The timeline is person-level monitoring data: the person themselves, or IT/security (who get
the purpose form first, 200); everyone else 403. The live view shows per-team counts to IT and
security only.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.core.tests.matrix import employee_person, none, only

MONITORING = ("it_admin", "security")

MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("activity:timeline", employee_person, only((*MONITORING, "employee"))),
    ("activity:live", none, only(MONITORING)),
    ("activity:live_status", none, only(MONITORING)),
]
