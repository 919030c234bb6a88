"""The alert pages as IT and security use them: rules with clear field errors, the inbox with
filters, acknowledging and commenting (audited), and refusals for everyone else."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from conftest import ClientFor, Personas
from glasshouse.alerts import actions
from glasshouse.alerts.models import Alert, AlertStatus, Rule, RuleKind
from glasshouse.alerts.tests.helpers import SECRET, make_rule
from glasshouse.audit.models import AuditEntry

pytestmark = pytest.mark.django_db


def post(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    client.get(reverse("core:home"))
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def rule_form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Big copies",
        "kind": "file_copy",
        "enabled": "on",
        "severity": "high",
        "schedule": "always",
        "team": "",
        "minutes": "",
        "category": "",
        "usage_source": "sites",
        "domains": "",
        "min_bytes": "100000000",
        "emails": "soc@example.test",
        "webhook_url": "",
        "webhook_secret": "",
    }
    data.update(overrides)
    return data


def make_alert(severity: str = "high", status: str = "open", key: str = "1") -> Alert:
    rule = Rule.objects.first() or make_rule(RuleKind.USB)
    return Alert.objects.create(
        rule=rule,
        rule_name=rule.name,
        kind=rule.kind,
        severity=severity,
        status=status,
        dedupe_key=f"{rule.pk}:{key}",
        occurred_at="2025-01-15T09:00:00Z",
        summary=f"{severity} {status} alert",
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": " "}, "name", "required"),
        ({"kind": "idle", "minutes": ""}, "minutes", "minutes"),
        ({"kind": "idle", "minutes": "20000"}, "minutes", "7 days"),
        ({"kind": "time_category", "minutes": "60"}, "category", "category"),
        ({"kind": "time_site", "minutes": "60"}, "domains", "List the sites"),
        ({"kind": "site_visit", "domains": "not a domain"}, "domains", "Not a domain"),
        ({"min_bytes": ""}, "min_bytes", "size"),
        ({"emails": "soc@example.test\nnobody"}, "emails", "nobody"),
        ({"emails": ""}, "emails", "at least one recipient"),
        ({"webhook_url": "https://hooks.example.test/x", "webhook_secret": "short"}, "webhook_secret", "16"),
        ({"webhook_url": "ftp://hooks.example.test/x"}, "webhook_url", ""),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    client_for: ClientFor, overrides: dict[str, Any], field: str, message: str
) -> None:
    response = post(client_for("it_admin"), reverse("alerts:rule_new"), rule_form(**overrides))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message.lower() in " ".join(errors[field]).lower()
    assert not Rule.objects.exists()


def test_it_admin_creates_and_edits_a_rule_audited(client_for: ClientFor) -> None:
    client = client_for("it_admin")
    data = rule_form(webhook_url="https://hooks.example.test/x", webhook_secret=SECRET)
    assert post(client, reverse("alerts:rule_new"), data).status_code == 302
    rule = Rule.objects.get()
    assert (rule.kind, rule.min_bytes, rule.webhook_secret) == ("file_copy", 100_000_000, SECRET)
    created = AuditEntry.objects.get(action="alerts.rule.create")
    assert created.after["webhook_secret"] == "(set)"  # the secret itself never reaches the audit trail
    # Editing without typing the secret again keeps it.
    response = post(
        client,
        reverse("alerts:rule_edit", kwargs={"pk": rule.pk}),
        {**data, "webhook_secret": "", "severity": "critical"},
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.severity, rule.webhook_secret) == ("critical", SECRET)
    updated = AuditEntry.objects.get(action="alerts.rule.update")
    assert updated.before == {"severity": "high"}
    assert updated.after == {"severity": "critical"}
    assert post(client, reverse("alerts:rule_delete", kwargs={"pk": rule.pk})).status_code == 302
    assert not Rule.objects.exists()
    assert AuditEntry.objects.filter(action="alerts.rule.delete").count() == 1


def test_security_reads_rules_but_cannot_change_them(client_for: ClientFor) -> None:
    rule = make_rule(RuleKind.USB)
    client = client_for("security")
    page = client.get(reverse("alerts:rules"))
    assert page.status_code == 200
    assert "USB device inserted or blocked" in page.content.decode()
    assert "New rule" not in page.content.decode()
    assert post(client, reverse("alerts:rule_new"), rule_form()).status_code == 403
    assert post(client, reverse("alerts:rule_delete", kwargs={"pk": rule.pk})).status_code == 403
    assert Rule.objects.count() == 1


def test_inbox_filters_by_severity_and_status(client_for: ClientFor) -> None:
    make_alert("high", "open", "a")
    make_alert("low", "open", "b")
    make_alert("high", "acknowledged", "c")
    client = client_for("security")
    text = client.get(reverse("alerts:inbox"), {"severity": "high", "status": "open"}).content.decode()
    assert "high open alert" in text
    assert "low open alert" not in text
    assert "high acknowledged alert" not in text
    assert client.get(reverse("alerts:inbox"), {"severity": "loud"}).status_code == 400


def test_acknowledge_and_comment_are_audited(client_for: ClientFor, personas: Personas) -> None:
    alert = make_alert()
    client = client_for("security")
    assert post(client, reverse("alerts:acknowledge", kwargs={"pk": alert.pk})).status_code == 302
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED
    assert alert.acknowledged_by == personas.security
    response = post(
        client, reverse("alerts:comment", kwargs={"pk": alert.pk}), {"body": "Spoke to Eve; approved stick."}
    )
    assert response.status_code == 302
    assert alert.comments.get().body == "Spoke to Eve; approved stick."
    assert post(client, reverse("alerts:comment", kwargs={"pk": alert.pk}), {"body": "  "}).status_code == 400
    assert alert.comments.count() == 1
    actions_written = set(AuditEntry.objects.filter(target_id=str(alert.pk)).values_list("action", flat=True))
    assert actions_written == {"alerts.alert.acknowledge", "alerts.alert.comment"}
    page = client.get(reverse("alerts:detail", kwargs={"pk": alert.pk})).content.decode()
    assert "Spoke to Eve" in page
    assert "Acknowledged by sec@example.test" in page


@pytest.mark.parametrize("persona", ["hr", "manager", "employee", "auditor"])
def test_others_cannot_work_the_inbox(client_for: ClientFor, persona: str) -> None:
    alert = make_alert()
    client = client_for(persona)
    assert post(client, reverse("alerts:acknowledge", kwargs={"pk": alert.pk})).status_code == 403
    assert post(client, reverse("alerts:comment", kwargs={"pk": alert.pk}), {"body": "x"}).status_code == 403
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN
    assert not alert.comments.exists()


def test_check_rule_refuses_a_webhook_without_a_secret() -> None:
    rule = Rule(name="x", kind=RuleKind.USB, webhook_url="https://hooks.example.test/x")
    with pytest.raises(ValidationError) as refused:
        actions.check_rule(rule)
    assert "webhook_secret" in refused.value.message_dict
