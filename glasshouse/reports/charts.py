"""Charts drawn on the server as inline SVG: no script, no CDN, readable by screen readers
(each chart has a title and a text equivalent in the table beside it)."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from glasshouse.activity.models import Category
from glasshouse.reports.overview import Overview

COLOURS = {
    Category.PRODUCTIVE: "#2da44e",
    Category.NEUTRAL: "#8c959f",
    Category.UNPRODUCTIVE: "#cf222e",
    Category.UNCATEGORISED: "#d4a72c",
}
ACTIVE, IDLE = "#0969da", "#b6c8e6"


def _nice_max(hours: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000):
        if hours <= step * 4:
            return float(step * 4)
    return hours


def weekly_chart(ov: Overview) -> SafeString:
    """Stacked bars of active and idle hours per week, with the week's productive share above."""
    width, height, left, bottom, top = 640, 240, 48, 28, 24
    plot_h = height - bottom - top
    weeks = ov.weeks
    peak = max((w.active + w.idle for w in weeks), default=0.0) / 3600
    ymax = _nice_max(peak) if peak else 4.0
    slot = (width - left - 8) / max(len(weeks), 1)
    bar = min(48.0, slot * 0.6)
    parts: list[str] = []
    for i in range(5):
        value = ymax * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e9f0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#57606a">{value:g} h</text>'
        )
    for n, w in enumerate(weeks):
        x = left + slot * n + (slot - bar) / 2
        active_h = plot_h * (w.active / 3600) / ymax
        idle_h = plot_h * (w.idle / 3600) / ymax
        y_active = top + plot_h - active_h
        y_idle = y_active - idle_h
        share = w.productive_share
        label = f"{share:.0%}" if share is not None else "\u2013"
        parts.append(
            f"<g><title>Week of {w.start:%d %b}: {w.active / 3600:.1f} h active, {w.idle / 3600:.1f} h idle, "
            f"productive share {label}</title>"
            f'<rect x="{x:.1f}" y="{y_active:.1f}" width="{bar:.1f}" height="{active_h:.1f}" fill="{ACTIVE}"/>'
            f'<rect x="{x:.1f}" y="{y_idle:.1f}" width="{bar:.1f}" height="{idle_h:.1f}" fill="{IDLE}"/>'
            f'<text x="{x + bar / 2:.1f}" y="{y_idle - 5:.1f}" text-anchor="middle" font-size="11" '
            f'fill="{COLOURS[Category.PRODUCTIVE]}">{label}</text>'
            f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="11" '
            f'fill="#57606a">{w.start:%d %b}</text></g>'
        )
    return format_html(
        '<svg class="chart" role="img" aria-labelledby="weekly-title" viewBox="0 0 {} {}" width="100%" '
        'style="max-width:{}px" xmlns="http://www.w3.org/2000/svg"><title id="weekly-title">{}</title>{}</svg>',
        width,
        height,
        width,
        "Active (dark) and idle (light) hours per week; the figure above each bar is that week's productive share",
        mark_safe("".join(parts)),  # noqa: S308 - built above from numbers and dates only
    )


def category_bar(ov: Overview) -> SafeString:
    """One bar split by category: where focused application time went."""
    width, height = 640, 28
    x = 0.0
    parts: list[str] = []
    for category, label, seconds, share in ov.categories():
        if share <= 0:
            continue
        w = width * share
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS[Category(category)]}">'
            f"<title>{escape(label)}: {seconds / 3600:.1f} h ({share:.0%})</title></rect>"
        )
        x += w
    if not parts:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eef1f5"/>')
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%" style="max-width:{}px" '
        'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">{}</svg>',
        "Focused application time by category",
        width,
        height,
        width,
        mark_safe("".join(parts)),  # noqa: S308 - labels escaped above, the rest are numbers
    )
