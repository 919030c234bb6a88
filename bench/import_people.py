"""Benchmark: import a 10,000-person CSV through `manage.py import_people` (the same validation
and write path as the web import) into a fresh SQLite database and a fresh PostgreSQL database.

Run by hand: `.venv/bin/python bench/import_people.py [--people 10000]`. Prints one row per
database and the wall time of the whole command (process start, validation, one-transaction
write, audit row). No peer runs here: see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("GLASSHOUSE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def make_csv(path: Path, people: int) -> None:
    from glasshouse.org.tests.factories import people_rows, to_csv

    rows = people_rows(people, teams=["Bench"], offices=["Bench office"], prefix="B")
    path.write_bytes(to_csv(rows))


def manage(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def prepare(env: dict[str, str]) -> None:
    manage(env, "migrate", "--noinput", "-v0")
    manage(
        env,
        "shell",
        "-c",
        "from glasshouse.org.models import Office, Team;"
        "Team.objects.get_or_create(name='Bench');"
        "Office.objects.get_or_create(name='Bench office', defaults={'time_zone': 'UTC'})",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glasshouse.config.settings.development")
    import django

    django.setup()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "people.csv"
        make_csv(csv_path, args.people)
        targets = {"SQLite": f"sqlite:///{tmp}/bench.sqlite3"}
        pg_db = "glasshouse_bench"
        subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {pg_db}"], check=False)
        if subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {pg_db}"], check=False).returncode == 0:
            targets["PostgreSQL"] = PG_URL.rsplit("/", 1)[0] + f"/{pg_db}"
        print("| database | people | import_people wall time | people/s |")
        print("| --- | ---: | ---: | ---: |")
        for name, url in targets.items():
            env = {**os.environ, "DATABASE_URL": url, "GLASSHOUSE_VAR_DIR": tmp}
            prepare(env)
            seconds = manage(env, "import_people", str(csv_path))
            print(f"| {name} | {args.people:,} | {seconds:.2f} s | {args.people / seconds:,.0f} |")
        if "PostgreSQL" in targets:
            subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {pg_db}"], check=False)


if __name__ == "__main__":
    main()
