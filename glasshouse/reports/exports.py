"""Every report as CSV, XLSX and PDF, from one shape: a `Report` of titled `Table`s, built
from the same rows as the page's tables, so an export never says something the page does not.

CSV is one table: a `section` column (the table's key) and the union of the tables' columns,
blank where a table has no such column. XLSX has a sheet per table, PDF a heading and a table
per table. Cells a spreadsheet would read as a formula are prefixed with `'` in CSV and XLSX.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.styles import Font
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, TableStyle
from reportlab.platypus import Table as PdfTable

Cell = float | int | str
PDF_WIDTH_MM = 174


@dataclass(frozen=True)
class Table:
    key: str  # the CSV section, e.g. "top apps"
    title: str  # the sheet and heading, e.g. "Top applications"
    columns: tuple[str, ...]
    rows: Sequence[Sequence[Cell]] = ()
    empty: str = "Nothing in this period."


@dataclass(frozen=True)
class Report:
    slug: str  # the file name's stem, e.g. "overview"
    title: str
    description: str  # the filters in words
    tables: list[Table]


def hours(seconds: float) -> float:
    return round(seconds / 3600, 2)


def percent(share: float | None) -> float | str:
    return "" if share is None else round(100 * share, 1)


def _defuse(value: Cell) -> Cell:
    # Names come from agents: a leading = + - @ would be a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _header(report: Report) -> list[str]:
    columns: list[str] = []
    for table in report.tables:
        columns += [c for c in table.columns if c not in columns]
    return ["section", *columns]


def to_csv(report: Report) -> str:
    header = _header(report)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for table in report.tables:
        for row in table.rows:
            cells = dict(zip(table.columns, row, strict=True))
            writer.writerow([table.key, *(_defuse(cells.get(c, "")) for c in header[1:])])
    return out.getvalue()


def to_xlsx(report: Report) -> bytes:
    wb = Workbook()
    for n, table in enumerate(report.tables):
        ws = wb.active if n == 0 else wb.create_sheet()
        assert ws is not None
        ws.title = table.title[:31]  # Excel's limit
        ws.append([f"{report.title}: {report.description}"])
        ws.append(["section", *table.columns])
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for row in table.rows:
            # openpyxl writes strings as text, never formulas, unless they start with "=".
            ws.append([table.key, *(_defuse(c) for c in row)])
        ws.column_dimensions["B"].width = 40
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def to_pdf(report: Report) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"Glasshouse {report.title}",
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
    )
    styles = getSampleStyleSheet()
    story: list[object] = [
        Paragraph(_esc(report.title), styles["Title"]),
        Paragraph(_esc(report.description), styles["Normal"]),
        Spacer(1, 6 * mm),
    ]
    for table in report.tables:
        story.append(Paragraph(_esc(table.title), styles["Heading2"]))
        if not table.rows:
            story.append(Paragraph(_esc(table.empty), styles["Normal"]))
            continue
        # The first column holds names, so it gets twice the width of the others.
        unit = PDF_WIDTH_MM / (len(table.columns) + 1)
        widths = [2 * unit * mm, *([unit * mm] * (len(table.columns) - 1))]
        data = [
            [c.capitalize() for c in table.columns],
            *([str(c)[:60] if i == 0 else str(c) for i, c in enumerate(row)] for row in table.rows),
        ]
        pdf_table = PdfTable(data, colWidths=widths, repeatRows=1)
        pdf_table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                    ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                ]
            )
        )
        story.append(pdf_table)
        story.append(Spacer(1, 4 * mm))
    doc.build(story)  # type: ignore[arg-type]
    return buffer.getvalue()


def render(report: Report, fmt: str) -> bytes | str:
    if fmt == "csv":
        return to_csv(report)
    if fmt == "xlsx":
        return to_xlsx(report)
    return to_pdf(report)


def _esc(text: str) -> str:
    # reportlab's Paragraph reads a little XML; table cells are plain strings already.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
