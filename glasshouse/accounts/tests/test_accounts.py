"""Sign-in, rate limiting, two-factor, password change and role grants, as a user meets them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from conftest import PERSONA_PASSWORD, ClientFor, Personas
from glasshouse.accounts.models import RoleAssignment, User
from glasshouse.audit.models import AuditEntry
from glasshouse.core.roles import Role

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

ROOT = Path(__file__).resolve().parents[3]


def csrf_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    return client


def post(client: Client, url: str, data: dict[str, str]) -> Response:
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def sign_in(client: Client, email: str, password: str) -> Response:
    return post(client, "/accounts/login/", {"email": email, "password": password})


def test_passwords_are_hashed_with_argon2(personas: Personas) -> None:
    assert personas.employee.password.startswith("argon2$")


def test_sign_in_and_out_are_audited(personas: Personas) -> None:
    client = csrf_client()
    response = sign_in(client, "Employee@Example.test", PERSONA_PASSWORD)
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert AuditEntry.objects.filter(action="accounts.login", actor_label="employee@example.test").exists()
    post(client, "/accounts/logout/", {})
    assert client.get("/").status_code == 302
    assert AuditEntry.objects.filter(action="accounts.logout").exists()


def test_wrong_password_is_refused_and_audited(personas: Personas) -> None:
    response = sign_in(csrf_client(), "employee@example.test", "wrong-password")
    assert response.status_code == 200
    assert "do not match" in response.content.decode()
    failed = AuditEntry.objects.get(action="accounts.login.failed")
    assert failed.actor_label == "employee@example.test"


@override_settings(LOGIN_FAILURE_LIMIT=3)
def test_repeated_failures_lock_the_account_even_with_the_right_password(personas: Personas) -> None:
    client = csrf_client()
    for _ in range(3):
        sign_in(client, "employee@example.test", "wrong-password")
    response = sign_in(client, "employee@example.test", PERSONA_PASSWORD)
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert client.get("/").status_code == 302  # still signed out
    # Another account from another address is not affected.
    other = Client(enforce_csrf_checks=True, REMOTE_ADDR="10.9.9.9")
    other.get("/accounts/login/")
    assert sign_in(other, "hr@example.test", PERSONA_PASSWORD).status_code == 302


def test_totp_setup_then_sign_in_needs_a_code(personas: Personas) -> None:
    client = csrf_client()
    sign_in(client, "employee@example.test", PERSONA_PASSWORD)
    post(client, "/accounts/2fa/setup/", {"start": "1"})
    page = client.get("/accounts/2fa/setup/").content.decode()
    assert "<svg" in page  # the QR code is rendered inline, no external service
    device = TOTPDevice.objects.get(user=personas.employee, confirmed=False)
    bad = post(client, "/accounts/2fa/setup/", {"token": "000000" if totp(device.bin_key) != 0 else "111111"})
    assert "not valid" in bad.content.decode()
    # Right after a wrong code django-otp throttles guessing; the page says to wait.
    too_soon = post(client, "/accounts/2fa/setup/", {"token": f"{totp(device.bin_key):06d}"})
    assert "Wait 1 second" in too_soon.content.decode() or "Wait 2 seconds" in too_soon.content.decode()
    time.sleep(1.1)
    used_code = f"{totp(device.bin_key):06d}"
    post(client, "/accounts/2fa/setup/", {"token": used_code})
    device.refresh_from_db()
    assert device.confirmed
    post(client, "/accounts/logout/", {})

    client = csrf_client()
    response = sign_in(client, "employee@example.test", PERSONA_PASSWORD)
    assert response["Location"] == "/accounts/login/code/"
    assert client.get("/").status_code == 302  # the password alone does not sign in
    device.refresh_from_db()
    # A code is accepted once (no replay): the confirmation used this step's, so sign in with the
    # next step's code, which the default tolerance of one step accepts.
    replay = post(client, "/accounts/login/code/", {"token": used_code})
    assert "not valid" in replay.content.decode()
    time.sleep(2.1)  # the failed replay throttles for a moment
    response = post(client, "/accounts/login/code/", {"token": f"{totp(device.bin_key, drift=1):06d}"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert AuditEntry.objects.filter(action="accounts.login", after__method="password+totp").exists()


def test_change_password(personas: Personas) -> None:
    client = csrf_client()
    sign_in(client, "employee@example.test", PERSONA_PASSWORD)
    weak = post(
        client,
        "/accounts/password/",
        {"old_password": PERSONA_PASSWORD, "new_password1": "12345", "new_password2": "12345"},
    )
    assert weak.status_code == 200
    assert "too short" in weak.content.decode()
    ok = post(
        client,
        "/accounts/password/",
        {
            "old_password": PERSONA_PASSWORD,
            "new_password1": "a-much-better-passphrase",
            "new_password2": "a-much-better-passphrase",
        },
    )
    assert ok.status_code == 302
    assert client.get("/").status_code == 200  # still signed in after the change
    assert User.objects.get(pk=personas.employee.pk).check_password("a-much-better-passphrase")
    assert AuditEntry.objects.filter(action="accounts.password.change").exists()


def test_it_admin_grants_and_revokes_roles_with_audit(personas: Personas, client_for: ClientFor) -> None:
    client = client_for("it_admin")
    client.get("/accounts/roles/")
    url = f"/accounts/roles/{personas.employee.pk}/grant/"
    post(client, url, {"role": Role.AUDITOR.value})
    assert RoleAssignment.objects.filter(user=personas.employee, role=Role.AUDITOR).exists()
    grant = AuditEntry.objects.get(action="accounts.role.grant")
    assert grant.after == {"role": "auditor"}
    assert grant.actor_label == "it@example.test"
    post(client, f"/accounts/roles/{personas.employee.pk}/revoke/", {"role": Role.AUDITOR.value})
    assert not RoleAssignment.objects.filter(user=personas.employee, role=Role.AUDITOR).exists()
    assert AuditEntry.objects.filter(action="accounts.role.revoke").exists()


def test_manager_role_cannot_be_granted(personas: Personas, client_for: ClientFor) -> None:
    client = client_for("it_admin")
    client.get("/accounts/roles/")
    post(client, f"/accounts/roles/{personas.employee.pk}/grant/", {"role": Role.MANAGER.value})
    assert not RoleAssignment.objects.filter(user=personas.employee).exists()


def test_last_it_admin_cannot_remove_own_role(personas: Personas, client_for: ClientFor) -> None:
    client = client_for("it_admin")
    client.get("/accounts/roles/")
    response = post(client, f"/accounts/roles/{personas.it_admin.pk}/revoke/", {"role": Role.IT_ADMIN.value})
    assert RoleAssignment.objects.filter(user=personas.it_admin, role=Role.IT_ADMIN).exists()
    assert "last IT admin" in client.get(response["Location"]).content.decode()


def test_roles_are_derived_from_reporting_lines(personas: Personas, client_for: ClientFor) -> None:
    me = client_for("manager").get("/api/v1/accounts/me").json()
    assert me["roles"] == ["employee", "manager"]
    assert client_for("employee").get("/api/v1/accounts/me").json()["roles"] == ["employee"]
    assert client_for("outsider").get("/api/v1/accounts/me").json()["roles"] == []


def test_createadmin_bootstraps_an_it_admin(db: None, tmp_path: Path) -> None:
    from django.core.management import call_command

    secret = tmp_path / "pw"
    secret.write_text("a-long-first-admin-password\n")
    call_command("createadmin", "first@example.test", password_file=str(secret))
    user = User.objects.get(email="first@example.test")
    assert RoleAssignment.objects.filter(user=user, role=Role.IT_ADMIN).exists()
    assert user.check_password("a-long-first-admin-password")


def _start_production(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "glasshouse.config.settings.production",
            "GLASSHOUSE_VAR_DIR": str(ROOT / "var"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "GLASSHOUSE_SECRET_KEY"),
        ({"GLASSHOUSE_SECRET_KEY": "glasshouse-development-only-insecure-key"}, "default or weak"),
        ({"GLASSHOUSE_SECRET_KEY": "x" * 80}, "default or weak"),
        ({"GLASSHOUSE_SECRET_KEY": "k3y-" * 20, "GLASSHOUSE_DEBUG": "true"}, "GLASSHOUSE_DEBUG"),
    ],
)
def test_production_refuses_to_start_insecurely(env: dict[str, str], message: str) -> None:
    result = _start_production(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_production_starts_with_a_real_key() -> None:
    result = _start_production({"GLASSHOUSE_SECRET_KEY": "Zq8-" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kL9nP2rS5uX8"})
    assert result.returncode == 0, result.stderr
