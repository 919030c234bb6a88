"""Role x URL expectations for the agent API (joined by core's test_role_matrix).

Browser sessions mean nothing here: every persona is treated like any other caller without a
device key. POST-only endpoints answer GET with 405; the policy needs a device key (401).
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.core.tests.matrix import every, none

MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("agent_api:enroll", none, every(405, anonymous=405)),
    ("agent_api:batches", none, every(405, anonymous=405)),
    ("agent_api:policy", none, every(401, anonymous=401)),
    ("agent_api:openapi-json", none, every(200, anonymous=200)),
    ("agent_api:openapi-view", none, every(200, anonymous=200)),
    # django-ninja's catch-all for the bare prefix: nothing lives there.
    ("agent_api:api-root", none, every(404, anonymous=404)),
]
