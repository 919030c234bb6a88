"""The overview as CSV, XLSX and PDF: the same rows as the page's tables, so an export never
says something the page does not."""

from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from openpyxl.styles import Font
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from glasshouse.reports.overview import Overview

Row = tuple[str, str, str, float | str, float | str]
HEADER = ("section", "item", "category", "hours", "percent")


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def _percent(share: float | None) -> float | str:
    return "" if share is None else round(100 * share, 1)


def summary_rows(ov: Overview) -> list[Row]:
    rows: list[Row] = [
        ("summary", "active", "", _hours(ov.active), _percent(ov.active_share)),
        ("summary", "idle", "", _hours(ov.idle), _percent(None if ov.active_share is None else 1 - ov.active_share)),
        ("summary", "productive share", "", "", _percent(ov.productive_share)),
    ]
    rows += [
        ("category", label, label, _hours(seconds), _percent(share)) for _, label, seconds, share in ov.categories()
    ]
    return rows


def sections(ov: Overview) -> list[tuple[str, list[Row]]]:
    """(title, rows) for every table of the report."""
    apps: list[Row] = [("top apps", i.name, i.category, _hours(i.seconds), "") for i in ov.top_apps]
    sites: list[Row] = [("top sites", i.name, i.category, _hours(i.seconds), "") for i in ov.top_sites]
    weeks: list[Row] = [
        (
            "weeks",
            w.start.isoformat(),
            "",
            _hours(w.active),
            _percent(w.productive_share),
        )
        for w in ov.weeks
    ]
    return [("Summary", summary_rows(ov)), ("Top applications", apps), ("Top sites", sites), ("Weeks", weeks)]


def to_csv(ov: Overview) -> str:
    """One table: section, item, category, hours, percent. For a week, hours are active hours
    and percent its productive share."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for _, rows in sections(ov):
        # Names come from agents: a leading = + - @ would be a formula in a spreadsheet.
        writer.writerows(tuple(_defuse(c) for c in row) for row in rows)
    return out.getvalue()


def _defuse(value: float | str) -> float | str:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_xlsx(ov: Overview) -> bytes:
    wb = Workbook()
    first = True
    for title, rows in sections(ov):
        ws = wb.active if first else wb.create_sheet()
        assert ws is not None
        first = False
        ws.title = title
        ws.append([f"Overview: {ov.filters.describe()}"])
        ws.append(list(HEADER))
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for row in rows:
            # openpyxl writes strings as text, never formulas, unless they start with "=".
            ws.append([_defuse(c) for c in row])
        ws.column_dimensions["B"].width = 40
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def to_pdf(ov: Overview) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, title="Glasshouse overview", leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm
    )
    styles = getSampleStyleSheet()
    story: list[object] = [
        Paragraph("Activity overview", styles["Title"]),
        Paragraph(_esc(ov.filters.describe()), styles["Normal"]),
        Spacer(1, 6 * mm),
    ]
    for title, rows in sections(ov):
        story.append(Paragraph(title, styles["Heading2"]))
        if not rows:
            story.append(Paragraph("Nothing in this period.", styles["Normal"]))
            continue
        data = [["Item", "Category", "Hours", "%"], *([r[1][:60], r[2], str(r[3]), str(r[4])] for r in rows)]
        table = Table(data, colWidths=[80 * mm, 35 * mm, 25 * mm, 25 * mm], repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                    ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
                    ("FONTSIZE", (0, 0), (-1, -1), 9),
                ]
            )
        )
        story.append(table)
        story.append(Spacer(1, 4 * mm))
    doc.build(story)  # type: ignore[arg-type]
    return buffer.getvalue()


def _esc(text: str) -> str:
    # reportlab's Paragraph reads a little XML; table cells are plain strings already.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
