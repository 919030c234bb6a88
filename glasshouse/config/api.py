"""The JSON API (django-ninja, OpenAPI 3 at /api/v1/openapi.json).

Browsers and scripts signed in with a session use it with CSRF protection; agents get their
own per-device-key API in a later issue. Each app contributes a router from its `api.py`.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.security import django_auth

from glasshouse.accounts.api import router as accounts_router
from glasshouse.activity.api import router as activity_router
from glasshouse.audit.api import router as audit_router
from glasshouse.org.api import router as org_router

api = NinjaAPI(
    title="Glasshouse API",
    version="1",
    auth=django_auth,
    urls_namespace="api",
    description="Organisation, accounts, audit and (purpose-gated) monitoring reads.",
)


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Forbidden"}, status=403)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if hasattr(exc, "error_dict"):
        errors = {field: [str(m) for e in errs for m in e.messages] for field, errs in exc.error_dict.items()}
    else:
        errors = {"__all__": [str(m) for m in exc.messages]}
    return api.create_response(request, {"detail": "Invalid input", "errors": errors}, status=422)


api.add_router("/accounts", accounts_router)
api.add_router("/org", org_router)
api.add_router("/audit", audit_router)
api.add_router("/monitoring", activity_router)
