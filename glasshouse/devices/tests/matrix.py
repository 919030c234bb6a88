"""Role x URL expectations for device pages (joined by core's test_role_matrix).

IT admins and security analysts see inventory, tokens and policies; only IT admins change
them. HR partners, managers, employees, auditors and outsiders get 403.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.core.tests.matrix import none, only
from glasshouse.devices.models import AgentPolicy, Device, EnrollmentToken
from glasshouse.ingest.tests.helpers import make_token

MONITORING = ("it_admin", "security")
IT = ("it_admin",)


def a_device(p: Personas) -> dict[str, object]:
    device = Device.objects.create(key_hash="0" * 64, hostname="matrix", os="linux", agent_version="0.1.0")
    return {"pk": device.pk}


def a_token(p: Personas) -> dict[str, object]:
    make_token()
    return {"pk": EnrollmentToken.objects.get().pk}


def sales_team(p: Personas) -> dict[str, object]:
    return {"team_pk": p.sales_team.pk}


def sales_policy(p: Personas) -> dict[str, object]:
    AgentPolicy.objects.create(team=p.sales_team)
    return {"team_pk": p.sales_team.pk}


MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("devices:inventory", none, only(MONITORING)),
    ("devices:device_revoke", a_device, only(IT, ok=405)),
    ("devices:device_assign", a_device, only(IT, ok=405)),
    ("devices:tokens", none, only(MONITORING)),
    ("devices:token_revoke", a_token, only(IT, ok=405)),
    ("devices:policies", none, only(MONITORING)),
    ("devices:policy_default", none, only(IT)),
    ("devices:policy_team", sales_team, only(IT)),
    ("devices:policy_delete", sales_policy, only(IT, ok=405)),
]
