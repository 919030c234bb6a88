"""Generated people CSV files for the import tests and the 10,000-person timing."""

from __future__ import annotations

import csv
import io
import random

from glasshouse.org.csvio import COLUMN_NAMES


def people_rows(count: int, *, teams: list[str], offices: list[str], prefix: str = "G") -> list[dict[str, str]]:
    """`count` people in a reporting tree (each reports to someone earlier in the file, ten
    reports at most per manager), spread over the given teams and offices."""
    rng = random.Random(7)
    rows = []
    for i in range(count):
        rows.append(
            {
                "employee_number": f"{prefix}{i:05d}",
                "full_name": f"Person {prefix}{i}",
                "email": f"person.{prefix.lower()}{i}@example.test",
                "job_title": rng.choice(["Engineer", "Analyst", "Designer", "Account executive"]),
                "team": rng.choice(teams) if teams else "",
                "manager_email": f"person.{prefix.lower()}{(i - 1) // 10}@example.test" if i else "",
                "location": rng.choice([*offices, "Remote"]),
                "time_zone": rng.choice(["Europe/London", "America/New_York", "Asia/Singapore", "UTC"]),
                "work_start": "09:00",
                "work_end": "17:30",
                "work_days": rng.choice(["mon-fri", "mon,tue,wed", "tue-sat"]),
                "employment_type": rng.choice(["employee", "employee", "contractor", "intern"]),
                "start_date": f"20{rng.randint(10, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "status": rng.choice(["active", "active", "active", "on_leave"]),
            }
        )
    return rows


def to_csv(rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMN_NAMES) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()
