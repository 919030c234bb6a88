"""Who may do what with alerts: IT admins and security analysts read and work the inbox; only
IT admins change rules. Everyone else (HR, managers, employees, auditors) is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.shortcuts import get_object_or_404

from glasshouse.access.roles import has_any_role
from glasshouse.alerts.models import Alert, Rule
from glasshouse.core.roles import Role

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User


def can_edit_rules(user: User | AnonymousUser) -> bool:
    return has_any_role(user, {Role.IT_ADMIN})


def access_alert_or_404(user: User | AnonymousUser, pk: int) -> Alert:
    return get_object_or_404(Alert.objects.for_user(user).select_related("person", "device"), pk=pk)


def access_rule_or_404(user: User | AnonymousUser, pk: int) -> Rule:
    return get_object_or_404(Rule.objects.for_user(user), pk=pk)
