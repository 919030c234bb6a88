"""The audit trail for auditors and IT admins: a filterable log and a chain verification page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from glasshouse.access.views import require_roles
from glasshouse.audit.chain import verify_chain
from glasshouse.audit.models import AuditEntry
from glasshouse.core.roles import AUDIT_ROLES


def filtered_entries(params: dict[str, str]) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.order_by("-seq")
    if params.get("action"):
        entries = entries.filter(action__startswith=params["action"])
    if params.get("actor"):
        entries = entries.filter(actor_label__icontains=params["actor"])
    if params.get("target"):
        entries = entries.filter(Q(target_label__icontains=params["target"]) | Q(target_id=params["target"]))
    if params.get("purpose") == "1":
        entries = entries.exclude(purpose="")
    return entries


@require_roles(*AUDIT_ROLES)
def log_view(request: HttpRequest) -> HttpResponse:
    params = {k: request.GET.get(k, "").strip() for k in ("action", "actor", "target", "purpose")}
    page = Paginator(filtered_entries(params), 50).get_page(request.GET.get("page"))
    actions = AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
    query = urlencode({k: v for k, v in params.items() if v})
    return render(request, "audit/log.html", {"page": page, "params": params, "actions": actions, "query": query})


@require_roles(*AUDIT_ROLES)
@require_http_methods(["GET", "POST"])
def verify_view(request: HttpRequest) -> HttpResponse:
    report = verify_chain() if request.method == "POST" else None
    return render(request, "audit/verify.html", {"report": report})
