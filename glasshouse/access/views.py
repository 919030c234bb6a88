"""View decorators built on the access layer: one way for HTML views to say who may enter."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

from glasshouse.access.roles import has_any_role
from glasshouse.core.roles import Role

V = TypeVar("V", bound=Callable[..., HttpResponseBase])


def require_roles(*roles: Role) -> Callable[[V], V]:
    """Signed in and holding one of `roles`; otherwise the login page or a 403 that says why."""
    wanted = frozenset(roles)
    labels = ", ".join(sorted(r.label for r in roles))

    def decorator(view: V) -> V:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_any_role(request.user, wanted):
                raise PermissionDenied(f"This page is for: {labels}.")
            return view(request, *args, **kwargs)

        return login_required(wrapper)  # type: ignore[return-value]

    return decorator
