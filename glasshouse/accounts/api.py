"""Who am I: the signed-in account, its person and roles."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from glasshouse.access.roles import person_of, roles_of

router = Router(tags=["accounts"])


class MeOut(Schema):
    email: str
    display_name: str
    person_id: int | None
    roles: list[str]


@router.get("/me", response=MeOut)
def me(request: HttpRequest) -> MeOut:
    person = person_of(request.user)
    return MeOut(
        email=getattr(request.user, "email", ""),
        display_name=getattr(request.user, "display_name", ""),
        person_id=person.pk if person else None,
        roles=sorted(r.value for r in roles_of(request.user)),
    )
