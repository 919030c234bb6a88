"""The purpose gate for person-level monitoring data.

Every read of one person's monitoring data, from a page or the API, goes through
`access_person_monitoring`. It lets through:
- the person themselves (their own data, no purpose needed);
- an IT admin or security analyst who has stated a purpose; each look writes an audit row
  with that purpose.
HR partners, managers, auditors and everyone else are refused, whatever the URL. HR-side
apps see monitoring data only as team aggregates from `insights` (a later issue).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import Http404, HttpRequest

from glasshouse.access.roles import has_any_role, person_of
from glasshouse.audit.actions import record
from glasshouse.core.roles import MONITORING_ROLES
from glasshouse.org.models import Person

if TYPE_CHECKING:
    pass

_SESSION_KEY = "monitoring_purposes"
MIN_PURPOSE_DETAIL = 10


class PurposeCategory(models.TextChoices):
    SECURITY_INCIDENT = "security_incident", "Security incident investigation"
    POLICY_VIOLATION = "policy_violation", "Suspected policy violation"
    IT_SUPPORT = "it_support", "IT support requested by the person"
    LEGAL_REQUEST = "legal_request", "Legal or regulatory request"
    DATA_SUBJECT_REQUEST = "data_subject_request", "Data-subject access request"


@dataclass(frozen=True)
class Purpose:
    category: PurposeCategory
    detail: str

    def text(self) -> str:
        return f"{self.category.label}: {self.detail}"


def check_purpose(category: str, detail: str) -> Purpose:
    errors: dict[str, str] = {}
    if category not in PurposeCategory.values:
        errors["category"] = "Choose why you need to see this person's data."
    detail = detail.strip()
    if len(detail) < MIN_PURPOSE_DETAIL:
        errors["detail"] = (
            f"Describe the purpose in at least {MIN_PURPOSE_DETAIL} characters (a case number, ticket or reason)."
        )
    if errors:
        raise ValidationError(errors)
    return Purpose(PurposeCategory(category), detail)


@dataclass(frozen=True)
class MonitoringAccess:
    person: Person
    purpose: Purpose | None  # None when the person is looking at their own data

    @property
    def own_data(self) -> bool:
        return self.purpose is None


def _remembered_purpose(request: HttpRequest, person_id: int) -> Purpose | None:
    stored = request.session.get(_SESSION_KEY, {}).get(str(person_id))
    if not stored or stored["until"] < time.time():
        return None
    return Purpose(PurposeCategory(stored["category"]), stored["detail"])


def remember_purpose(request: HttpRequest, person_id: int, purpose: Purpose) -> None:
    purposes = {k: v for k, v in request.session.get(_SESSION_KEY, {}).items() if v["until"] >= time.time()}
    purposes[str(person_id)] = {
        "category": purpose.category.value,
        "detail": purpose.detail,
        "until": time.time() + settings.MONITORING_PURPOSE_TTL_SECONDS,
    }
    request.session[_SESSION_KEY] = purposes


class PurposeRequired(Exception):
    """The viewer may look, but has not stated a purpose for this person yet."""

    def __init__(self, person: Person) -> None:
        super().__init__(f"a purpose is required to view {person}")
        self.person = person


def access_person_monitoring(
    request: HttpRequest, person_id: int, purpose: Purpose | None = None, *, view: str
) -> MonitoringAccess:
    """Return access to one person's monitoring data, or raise.

    Raises PermissionDenied before looking the person up, so a refused role cannot even learn
    whether the id exists; Http404 for an unknown person; PurposeRequired when an IT/security
    viewer has no purpose for this person. `purpose`, when given, is remembered in the session
    for MONITORING_PURPOSE_TTL_SECONDS. Every granted look by someone else is audited.
    """
    user = request.user
    me = person_of(user)
    if me is not None and me.pk == person_id:
        return MonitoringAccess(me, None)
    if not has_any_role(user, MONITORING_ROLES):
        raise PermissionDenied("Person-level monitoring data is only available to IT admins and security analysts.")
    person = Person.objects.filter(pk=person_id).first()
    if person is None:
        raise Http404("No such person.")
    if purpose is not None:
        remember_purpose(request, person_id, purpose)
    else:
        purpose = _remembered_purpose(request, person_id)
        if purpose is None:
            raise PurposeRequired(person)
    record(
        actor=user,
        action="monitoring.person.view",
        target=person,
        purpose=purpose.text(),
        after={"view": view},
        request=request,
    )
    return MonitoringAccess(person, purpose)
