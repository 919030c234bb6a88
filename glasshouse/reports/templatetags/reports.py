"""Durations and shares as the report pages show them."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """3 h 05 m, 12 m, 40 s."""
    total = round(seconds or 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} m"
    if minutes:
        return f"{minutes} m"
    return f"{secs} s"


@register.filter
def percent(share: float | None) -> str:
    return "\u2013" if share is None else f"{share:.0%}"
