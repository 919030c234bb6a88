"""Small template filters shared by every app."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """Show stored JSON (audit before/after) as JSON, not as a Python repr."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
