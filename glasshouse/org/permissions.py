"""Who may do what in the organisation: `can_*` predicates and `access_*_or_404` helpers used by
pages and the API alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from glasshouse.access.roles import has_any_role, person_of, roles_of
from glasshouse.core.roles import ORG_ADMIN_ROLES
from glasshouse.org.models import Person, PersonQuerySet
from glasshouse.org.queries import reports_below

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from glasshouse.accounts.models import User

NOT_IN_ORGANISATION = (
    "Your account is not linked to anyone in the organisation yet, so the directory is closed to it. "
    "Ask an IT admin to link your account to your person record."
)


def is_in_organisation(user: User | AnonymousUser) -> bool:
    """An active person or someone holding a role; an account with neither is an outsider."""
    return bool(roles_of(user))


def check_in_organisation(user: User | AnonymousUser) -> None:
    if not is_in_organisation(user):
        raise PermissionDenied(NOT_IN_ORGANISATION)


def can_manage_org(user: User | AnonymousUser) -> bool:
    return has_any_role(user, ORG_ADMIN_ROLES)


def employment_visibility(user: User | AnonymousUser) -> Callable[[Person], bool]:
    """A predicate for `can_see_employment` that answers for many people after one query.

    Employee number, employment type, start date, status and working hours are visible to HR
    partners and IT admins, to the person themselves and to anyone above them in reporting lines.
    """
    if can_manage_org(user):
        return lambda person: True
    me = person_of(user)
    if me is None:
        return lambda person: False
    visible = {me.pk, *(pk for pk, _level in reports_below(me.pk))}
    return lambda person: person.pk in visible


def can_see_employment(user: User | AnonymousUser, person: Person) -> bool:
    return employment_visibility(user)(person)


def visible_people(user: User | AnonymousUser) -> PersonQuerySet:
    if not user.is_authenticated:
        return Person.objects.none()
    return Person.objects.for_user(user)


def access_person_or_404(user: User | AnonymousUser, pk: int) -> Person:
    return get_object_or_404(visible_people(user).select_related("team", "office", "manager"), pk=pk)
