"""Charts drawn on the server as inline SVG: no script, no CDN, readable by screen readers
(each chart has a title and a text equivalent in the table beside it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from glasshouse.activity.models import Category
from glasshouse.reports.afterhours import Group, Tally
from glasshouse.reports.locations import Location
from glasshouse.reports.overview import Overview
from glasshouse.reports.software import Use

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


@dataclass(frozen=True)
class Segment:
    value: float
    colour: str


@dataclass(frozen=True)
class Bar:
    label: str
    segments: list[Segment]
    tooltip: str  # the bar's figures in words (each bar's <title>)
    note: str = ""  # a short figure drawn at the end of the bar


def _svg(title: str, width: int, height: int, body: str) -> SafeString:
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="100%" style="max-width:{}px" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        title,
        width,
        height,
        width,
        title,
        mark_safe(body),  # noqa: S308 - built by the callers from numbers and escaped labels only
    )


def column_chart(title: str, bars: list[Bar], unit: str, scale: float | None = None) -> SafeString:
    """Vertical stacked bars (a column per bar, e.g. per week) on a 0..scale axis; `scale`
    defaults to a round number above the tallest bar."""
    width, height, left, bottom, top = 640, 240, 48, 28, 24
    plot_h = height - bottom - top
    peak = max((sum(s.value for s in b.segments) for b in bars), default=0.0)
    ymax = scale if scale else (_nice_max(peak) if peak else 4.0)
    slot = (width - left - 8) / max(len(bars), 1)
    bar_w = min(48.0, slot * 0.6)
    parts: list[str] = []
    for i in range(5):
        value = ymax * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e9f0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{value:g}{unit}</text>'
        )
    for n, b in enumerate(bars):
        x = left + slot * n + (slot - bar_w) / 2
        y = float(top + plot_h)
        rects = []
        for s in b.segments:
            h = plot_h * min(s.value, ymax) / ymax
            y -= h
            rects.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.colour}"/>')
        parts.append(
            f"<g><title>{escape(b.tooltip)}</title>{''.join(rects)}"
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" font-size="11" '
            f'fill="{COLOURS[Category.PRODUCTIVE]}">{escape(b.note)}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle" font-size="11" '
            f'fill="#57606a">{escape(b.label)}</text></g>'
        )
    return _svg(title, width, height, "".join(parts))


def bar_chart(title: str, bars: list[Bar], scale: float | None = None) -> SafeString:
    """Horizontal stacked bars, one row per bar (a team, an office), labelled on the left."""
    width, left, row, gap = 640, 170, 22, 8
    height = max(len(bars), 1) * (row + gap) + gap
    peak = max((sum(s.value for s in b.segments) for b in bars), default=0.0)
    xmax = scale if scale else (peak or 1.0)
    plot_w = width - left - 60
    parts: list[str] = []
    for n, b in enumerate(bars):
        y = gap + n * (row + gap)
        x = float(left)
        rects = []
        for s in b.segments:
            w = plot_w * min(s.value, xmax) / xmax
            rects.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" fill="{s.colour}"/>')
            x += w
        label = b.label if len(b.label) <= 26 else b.label[:25] + "\u2026"
        parts.append(
            f"<g><title>{escape(b.tooltip)}</title>"
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="12" fill="#24292f">{escape(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{plot_w}" height="{row}" fill="#f3f5f8"/>{"".join(rects)}'
            f'<text x="{x + 4:.1f}" y="{y + 15}" font-size="11" fill="#57606a">{escape(b.note)}</text></g>'
        )
    return _svg(title, width, height, "".join(parts))


def weekly_chart(ov: Overview) -> SafeString:
    """Stacked bars of active and idle hours per week, with the week's productive share above."""
    bars = []
    for w in ov.weeks:
        share = w.productive_share
        label = f"{share:.0%}" if share is not None else "\u2013"
        bars.append(
            Bar(
                f"{w.start:%d %b}",
                [Segment(w.active / 3600, ACTIVE), Segment(w.idle / 3600, IDLE)],
                f"Week of {w.start:%d %b}: {w.active / 3600:.1f} h active, {w.idle / 3600:.1f} h idle, "
                f"productive share {label}",
                label,
            )
        )
    return column_chart(
        "Active (dark) and idle (light) hours per week; the figure above each bar is that week's productive share",
        bars,
        " h",
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


# --- after hours, software, locations ---------------------------------------------------------

AFTER_WORKDAY, WEEKEND = "#bf8700", "#8250df"
AFTER_HOURS_COLOURS = {"after hours on work days": AFTER_WORKDAY, "weekend": WEEKEND}


def _share(part: float, whole: float) -> float:
    return 100 * part / whole if whole else 0.0


def _after_hours_bar(label: str, t: Tally, what: str) -> Bar:
    workday = t.after_hours - t.weekend
    share = t.after_hours_share
    note = f"{share:.0%}" if share is not None else "\u2013"
    return Bar(
        label,
        [Segment(_share(workday, t.active), AFTER_WORKDAY), Segment(_share(t.weekend, t.active), WEEKEND)],
        f"{what}: {t.active / 3600:.1f} h active, {workday / 3600:.1f} h after hours on work days, "
        f"{t.weekend / 3600:.1f} h at the weekend ({note} outside working hours)",
        note,
    )


def after_hours_by_group(groups: list[Group]) -> SafeString:
    return bar_chart(
        "Share of active time outside working hours per team: after hours on work days, then weekend",
        [_after_hours_bar(g.name, g.tally, g.name) for g in groups],
        scale=100.0,
    )


def after_hours_by_week(weeks: list[tuple[dt.date, Tally]]) -> SafeString:
    bars = [_after_hours_bar(f"{start:%d %b}", t, f"Week of {start:%d %b}") for start, t in weeks]
    peak = max((sum(s.value for s in b.segments) for b in bars), default=0.0)
    return column_chart(
        "Share of active time outside working hours per week: after hours on work days, then weekend",
        bars,
        "%",
        scale=min(100.0, _nice_max(peak)) if peak else 100.0,
    )


def users_chart(uses: list[Use], top: int = 15) -> SafeString:
    """People using each of the most used applications."""
    return bar_chart(
        f"People using each application (the {top} most used)",
        [
            Bar(
                u.name,
                [Segment(u.users, ACTIVE)],
                f"{u.name}: {u.users} people, {u.seconds / 3600:.1f} h",
                str(u.users),
            )
            for u in uses[:top]
        ],
    )


def locations_chart(locations: list[Location]) -> SafeString:
    """Active hours per person per day at each office and remote."""
    bars = []
    for loc in locations:
        value = (loc.active_per_person_day or 0.0) / 3600
        bars.append(
            Bar(
                loc.name,
                [Segment(value, ACTIVE)],
                f"{loc.name}: {value:.1f} h active per person per day over {loc.person_days} person-days",
                f"{value:.1f} h" if loc.person_days else "no data",
            )
        )
    return bar_chart("Active hours per person per day, by location", bars)
