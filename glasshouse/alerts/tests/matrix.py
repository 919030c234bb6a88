"""Role x URL expectations for the alert pages (joined by core's test_role_matrix).

IT admins and security analysts read and work the inbox, the rules and the delivery log; only
IT admins add, change or delete rules. Alerts name people and devices: HR partners, managers,
employees, auditors and outsiders get 403 everywhere. POST-only URLs answer a GET with 405 once
the role check has passed.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Personas
from glasshouse.alerts.models import Alert, Rule, RuleKind
from glasshouse.core.tests.matrix import none, only

MONITORING = ("it_admin", "security")
IT = ("it_admin",)


def a_rule(p: Personas) -> dict[str, object]:
    rule, _ = Rule.objects.get_or_create(name="USB", defaults={"kind": RuleKind.USB, "emails": "soc@example.test"})
    return {"pk": rule.pk}


def an_alert(p: Personas) -> dict[str, object]:
    a_rule(p)
    rule = Rule.objects.get(name="USB")
    alert, _ = Alert.objects.get_or_create(
        dedupe_key=f"{rule.pk}:matrix",
        defaults={
            "rule": rule,
            "rule_name": rule.name,
            "kind": rule.kind,
            "severity": rule.severity,
            "person": p.person("employee"),
            "occurred_at": "2025-01-15T09:00:00Z",
            "summary": "USB stick inserted",
        },
    )
    return {"pk": alert.pk}


MATRIX: list[tuple[str, Callable[[Personas], dict[str, object]], dict[str, int]]] = [
    ("alerts:inbox", none, only(MONITORING)),
    ("alerts:detail", an_alert, only(MONITORING)),
    ("alerts:acknowledge", an_alert, only(MONITORING, ok=405)),
    ("alerts:comment", an_alert, only(MONITORING, ok=405)),
    ("alerts:rules", none, only(MONITORING)),
    ("alerts:rule_new", none, only(IT)),
    ("alerts:rule_edit", a_rule, only(IT)),
    ("alerts:rule_delete", a_rule, only(IT, ok=405)),
    ("alerts:deliveries", none, only(MONITORING)),
]
