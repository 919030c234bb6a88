"""Who holds which role. The single place every view, API endpoint and template asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from glasshouse.accounts.models import RoleAssignment
from glasshouse.core.roles import Role
from glasshouse.org.models import Person, PersonStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

_CACHE_ATTR = "_glasshouse_roles"


def person_of(user: User | AnonymousUser) -> Person | None:
    if not user.is_authenticated:
        return None
    try:
        return user.person
    except Person.DoesNotExist:
        return None


def roles_of(user: User | AnonymousUser) -> frozenset[Role]:
    """Granted roles plus the derived ones: EMPLOYEE for an active person, MANAGER for anyone
    with active direct reports. Cached on the user object for the request."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached: frozenset[Role] | None = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    roles = {Role(r) for r in RoleAssignment.objects.filter(user=user).values_list("role", flat=True)}
    person = person_of(user)
    if person is not None and person.status != PersonStatus.LEFT:
        roles.add(Role.EMPLOYEE)
        if Person.objects.active().filter(manager=person).exists():
            roles.add(Role.MANAGER)
    result = frozenset(roles)
    setattr(user, _CACHE_ATTR, result)
    return result


def has_any_role(user: User | AnonymousUser, roles: frozenset[Role] | set[Role] | tuple[Role, ...]) -> bool:
    return bool(roles_of(user) & set(roles))
