"""The home page and error pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from glasshouse.access.roles import person_of, roles_of
from glasshouse.core.context_processors import menu_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    roles = roles_of(request.user)
    person = person_of(request.user)
    tiles = [item for item in menu_for(roles, person is not None) if item.url_name != "core:home"]
    return render(request, "core/home.html", {"person": person, "tiles": tiles, "has_roles": bool(roles)})


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    reason = str(exception) if exception and str(exception) else "You do not have access to this page."
    return render(request, "core/403.html", {"reason": reason}, status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "core/404.html", status=404)
