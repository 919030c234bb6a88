"""Limit/offset query parameters shared by every paginated API list, with bounds so that no
request can ask the database for an out-of-range slice (a 422 names the parameter instead)."""

from __future__ import annotations

from ninja import P, QueryEx

MAX_LIMIT = 200
# Far beyond any real list, and far below the 64-bit range the databases accept for OFFSET.
MAX_OFFSET = 10**9

Limit = QueryEx[int, P(ge=1, le=MAX_LIMIT)]
Offset = QueryEx[int, P(ge=0, le=MAX_OFFSET)]
