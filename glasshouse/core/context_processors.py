"""The navigation menu, built from the viewer's roles so each role sees only its own tools."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse

from glasshouse.access.roles import person_of, roles_of
from glasshouse.core.roles import AUDIT_ROLES, MONITORING_ROLES, ORG_ADMIN_ROLES, Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    section: str

    @property
    def url(self) -> str:
        return reverse(self.url_name)


def menu_for(roles: frozenset[Role], has_person: bool) -> list[NavItem]:
    items = [NavItem("Home", "core:home", "General")]
    # An account with no person and no role is not part of the organisation (yet): the
    # directory pages refuse it, so the menu does not offer them.
    if roles:
        items.append(NavItem("People", "org:people", "Organisation"))
        items.append(NavItem("Org chart", "org:chart", "Organisation"))
        items.append(NavItem("Teams", "org:teams", "Organisation"))
    if roles & ORG_ADMIN_ROLES:
        items.append(NavItem("Import people", "org:import", "Organisation"))
    if Role.MANAGER in roles:
        items.append(NavItem("My team", "org:my_team", "Organisation"))
    if roles & MONITORING_ROLES:
        items.append(NavItem("Monitoring", "activity:people", "IT & security"))
        items.append(NavItem("Live view", "activity:live", "IT & security"))
        items.append(NavItem("Devices", "devices:inventory", "IT & security"))
        items.append(NavItem("Device control", "controls:overview", "IT & security"))
        items.append(NavItem("USB requests", "controls:usb_requests", "IT & security"))
        items.append(NavItem("Device events", "controls:events", "IT & security"))
        items.append(NavItem("Activity overview", "reports:overview", "IT & security"))
        items.append(NavItem("Classification", "reports:rules", "IT & security"))
        items.append(NavItem("Uncategorised", "reports:uncategorised", "IT & security"))
        items.append(NavItem("Alerts", "alerts:inbox", "IT & security"))
    if Role.IT_ADMIN in roles:
        items.append(NavItem("Roles", "accounts:roles", "Administration"))
    if roles & AUDIT_ROLES:
        items.append(NavItem("Audit trail", "audit:log", "Compliance"))
        items.append(NavItem("Verify chain", "audit:verify", "Compliance"))
    if has_person:
        items.append(NavItem("My data", "activity:mine", "Me"))
    items.append(NavItem("Account & security", "accounts:security", "Me"))
    return items


def navigation(request: HttpRequest) -> dict[str, object]:
    user = request.user
    if not user.is_authenticated:
        return {"nav_items": [], "nav_roles": []}
    roles = roles_of(user)
    return {
        "nav_items": menu_for(roles, person_of(user) is not None),
        "nav_roles": sorted(r.label for r in roles),
        "nav_current": request.resolver_match.view_name if request.resolver_match else "",
    }
