"""Refuse NUL characters in query strings and JSON bodies before any view sees them.

PostgreSQL text cannot hold NUL (0x00), so a search term or JSON field containing one would
otherwise reach the database and fail there as a server error. Django's form fields already
refuse NUL; this covers the query parameters and JSON that views and the API read directly.
The agent API's gzip bodies are handled by its own validation (NULs in window titles are
replaced, so one odd title cannot make a whole batch undeliverable).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

AGENT_API_PREFIX = "/api/agent/"
NUL_MESSAGE = "Input must not contain NUL (0x00) characters."


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        bad_param = next((k for k, v in request.GET.lists() if "\x00" in k or any("\x00" in x for x in v)), None)
        if bad_param is not None:
            return self.refuse(request, bad_param.replace("\x00", "\\0"))
        if (
            request.content_type == "application/json"
            and not request.path.startswith(AGENT_API_PREFIX)
            and (b"\\u0000" in request.body or b"\x00" in request.body)
        ):
            return self.refuse(request, "body")
        return self.get_response(request)

    @staticmethod
    def refuse(request: HttpRequest, field: str) -> HttpResponse:
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": NUL_MESSAGE, "field": field}, status=400)
        return HttpResponse(f"{field}: {NUL_MESSAGE}", status=400, content_type="text/plain")
