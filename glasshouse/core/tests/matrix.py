"""Role x URL expectations for the core, accounts, audit and monitoring URLs and the API.

Each app keeps its own `tests/matrix.py`; `test_role_matrix` joins them and fails when any URL
pattern in the project has no entry, so a new view cannot ship without saying who may see it.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas

ALL = ("it_admin", "security", "hr", "manager", "employee", "auditor", "outsider")


def every(status: int, anonymous: int = 302) -> dict[str, int]:
    return {**dict.fromkeys(ALL, status), "anonymous": anonymous}


def only(allowed: tuple[str, ...], ok: int = 200, refused: int = 403, anonymous: int = 302) -> dict[str, int]:
    return {**{p: ok if p in allowed else refused for p in ALL}, "anonymous": anonymous}


def none(p: Personas) -> dict[str, object]:
    return {}


def employee_person(p: Personas) -> dict[str, object]:
    return {"pk": p.person("employee").pk}


def employee_person_id(p: Personas) -> dict[str, object]:
    return {"person_id": p.person("employee").pk}


def employee_account(p: Personas) -> dict[str, object]:
    return {"pk": p.employee.pk, "op": "grant"}


MONITORING = ("it_admin", "security")
AUDIT = ("it_admin", "auditor")
WITH_PERSON = ("it_admin", "security", "hr", "manager", "employee", "auditor")

MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("core:home", none, every(200)),
    ("accounts:login", none, every(200, anonymous=200)),
    ("accounts:login_otp", none, every(302, anonymous=302)),
    ("accounts:logout", none, every(405, anonymous=405)),
    ("accounts:security", none, every(200)),
    ("accounts:password_change", none, every(200)),
    ("accounts:totp_setup", none, every(200)),
    ("accounts:totp_disable", none, every(200)),
    ("accounts:roles", none, only(("it_admin",))),
    ("accounts:role_change", employee_account, only(("it_admin",), ok=405)),
    ("audit:log", none, only(AUDIT)),
    ("audit:verify", none, only(AUDIT)),
    ("activity:people", none, only(MONITORING)),
    # The employee opens their own data; IT and security get the purpose form; nobody else.
    ("activity:person", employee_person, only((*MONITORING, "employee"))),
    ("activity:mine", none, only(WITH_PERSON, ok=302)),
    ("api:me", none, every(200, anonymous=401)),
    ("api:entries", none, only(AUDIT, anonymous=401)),
    ("api:verify", none, only(AUDIT, anonymous=401)),
    # Without a purpose IT/security get 422 naming the missing purpose; the person gets 200.
    ("api:person_activity", employee_person_id, {**only(MONITORING, ok=422, anonymous=401), "employee": 200}),
    ("api:api-root", none, every(404, anonymous=404)),
    ("api:openapi-json", none, every(200, anonymous=200)),
    ("api:openapi-view", none, every(200, anonymous=200)),
]
