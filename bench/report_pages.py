"""Benchmark: every report page rendered over HTTP for an organisation of 1,000 people x 30 days
on PostgreSQL (issue 5's target: under 300 ms at p95).

Run by hand: `.venv/bin/python bench/report_pages.py [--people 1000] [--days 30] [--requests 30]`.

* A fresh PostgreSQL database (made for the run, dropped after it), production settings (as
  bench/ingest.py sets them). The organisation is the demo's shape scaled up: a company, four
  departments and teams of 50 under them, three offices and a quarter of people remote, six
  time zones, one device each. `days` days of window, browser and idle spans per working day
  are written through the event sink in batches of 1,000, as the ingest API writes them, and
  rolled up by the worker's own code (like bench/report_queries.py).
* The pages are found at run time: every GET-able URL name in the `reports` namespace, plus
  the activity live view and one person's page and day timeline (after stating a purpose, as
  the purpose gate asks). A URL name with a `fmt` argument is tried with csv, xlsx and pdf;
  one with a `pk` gets a person's id; a name that cannot be reversed with those, or answers a
  GET with 405 (POST-only), is listed as skipped.
* gunicorn (2 sync workers, one per core) serves them; an IT admin's session cookie (made by
  Django's own login in the set-up process) signs every request. Each page gets 3 warm-up
  requests, then `--requests` timed ones, one at a time on a fresh connection; p50, p95 and max
  are printed. Queries per request are counted once per page in the set-up process (Django's
  test client with CaptureQueriesContext against the same database).
* Peer: aw-server 0.12.0's query for one person x 30 days (time per app, what its web UI runs),
  exactly as bench/report_queries.py runs it, when /tmp/aw-venv exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest import PG_URL, glasshouse_env, server  # noqa: E402  (bench/ingest.py)
from ingest import free_port as free_tcp_port  # noqa: E402
from report_queries import TEAM_SIZE, ZONES, bench_aw, person_day_spans  # noqa: E402

PG_BENCH_DB = "glasshouse_bench_pages"
SITES = ["github.com", "mail.example.com", "docs.python.org", "youtube.com", "news.ycombinator.com", "reddit.com"]
WARM_UP = 3
FORMATS = ("csv", "xlsx", "pdf")


# --- the set-up child: data, session, the list of pages -------------------------------------


def build(people: int, days: int, per_day: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
    from django.utils import timezone

    from glasshouse.accounts.models import RoleAssignment, User
    from glasshouse.activity.models import IngestBatch, SpanKind
    from glasshouse.activity.rollups import roll_up_step
    from glasshouse.activity.sinks import SpanIn, write_spans
    from glasshouse.core.roles import Role
    from glasshouse.devices.models import Device
    from glasshouse.org.models import Office, Person, Team

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # the manifest production pages need
    rng = random.Random(11)
    company = Team.objects.create(name="Northwind Analytics")
    departments = [Team.objects.create(name=n, parent=company) for n in ("Engineering", "Sales", "Operations", "IT")]
    teams = [
        Team.objects.create(name=f"Team {n:02}", parent=departments[n % len(departments)])
        for n in range(max(1, people // TEAM_SIZE))
    ]
    offices = [
        Office.objects.create(name=n, city=n, country=c, time_zone=z)
        for n, c, z in (
            ("London", "UK", "Europe/London"),
            ("Berlin", "DE", "Europe/Berlin"),
            ("Austin", "US", "America/Chicago"),
        )
    ]
    staff = Person.objects.bulk_create(
        [
            Person(
                full_name=f"Person {n}",
                email=f"p{n}@bench.example",
                employee_number=f"B{n:06}",
                team=teams[n // TEAM_SIZE % len(teams)],
                office=None if n % 4 == 3 else offices[n % 3],
                time_zone=ZONES[n % len(ZONES)],
            )
            for n in range(people)
        ]
    )
    devices = Device.objects.bulk_create(
        [Device(key_hash="x", hostname=f"host-{p.pk}", os="linux", agent_version="bench", person=p) for p in staff]
    )
    today = timezone.now().astimezone(dt.UTC).date()
    first_day = today - dt.timedelta(days=days)
    work_days = [first_day + dt.timedelta(days=d) for d in range(days)]
    work_days = [d for d in work_days if d.weekday() < 5]
    started = time.perf_counter()
    total = 0
    for i, (person, device) in enumerate(zip(staff, devices, strict=True)):
        spans: list[SpanIn] = []
        for day in work_days:
            start = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC).timestamp()
            windows = person_day_spans(rng, start, per_day)
            for app, s, e in windows:
                spans.append(SpanIn(int(SpanKind.WINDOW), s, e, app, f"/usr/bin/{app}", None))
                if app in ("firefox", "chromium"):
                    spans.append(SpanIn(int(SpanKind.BROWSER), s, e, app, None, None, rng.choice(SITES)))
            # Active with an idle stretch before lunch and one in the afternoon.
            end = windows[-1][2]
            marks = [windows[0][1], start + 4 * 3600, start + 4.5 * 3600, start + 7 * 3600, start + 7.25 * 3600, end]
            for n, (s, e) in enumerate(itertools.pairwise(marks)):
                if e > s:
                    spans.append(SpanIn(int(SpanKind.IDLE), s, e, state="idle" if n % 2 else "active"))
        for seq, n in enumerate(range(0, len(spans), 1000), start=1):
            chunk = spans[n : n + 1000]
            with transaction.atomic():
                batch = IngestBatch.objects.create(device=device, seq=seq, span_count=len(chunk))
                total += write_spans(device, person.pk, chunk, ingest_id=batch.pk)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{people} people, {total:,} spans", file=sys.stderr, flush=True)
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    while roll_up_step(limit=100):
        pass
    rollup_seconds = time.perf_counter() - started
    Device.objects.update(last_seen_at=timezone.now() - dt.timedelta(minutes=3))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    admin_person = staff[0]
    admin = User.objects.create(email="it@bench.example", display_name="Bench Admin")
    Person.objects.filter(pk=admin_person.pk).update(user=admin)
    RoleAssignment.objects.create(user=admin, role=Role.IT_ADMIN)
    subject = staff[1]
    # A page still being written elsewhere (500) is listed as skipped rather than ending the run.
    client = Client(HTTP_HOST="127.0.0.1", raise_request_exception=False)
    client.force_login(admin)
    # The purpose gate: state a purpose once; the session remembers it for this person.
    gate = client.post(
        reverse("activity:person", args=[subject.pk]),
        {"category": "it_support", "detail": "Benchmark of the report pages (ticket BENCH-1)"},
    )
    assert gate.status_code in (200, 302), gate.status_code

    def names(patterns: list[URLPattern | URLResolver], ns: str = "") -> list[str]:
        out: list[str] = []
        for p in patterns:
            if isinstance(p, URLResolver):
                out += names(p.url_patterns, f"{ns}{p.namespace}:" if p.namespace else ns)
            elif p.name:
                out.append(f"{ns}{p.name}")
        return out

    wanted = [n for n in dict.fromkeys(names(get_resolver().url_patterns)) if n.startswith("reports:")]
    wanted += ["activity:live", "activity:live_status", "activity:person", "activity:timeline"]
    extra_query = {"activity:timeline": f"day={work_days[-1].isoformat()}"}
    pages: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in wanted:
        attempts: list[tuple[str, dict[str, object]]] = [(name, {})]
        attempts += [(f"{name} ({fmt})", {"fmt": fmt}) for fmt in FORMATS]
        attempts += [(name, {"pk": subject.pk})]
        found = False
        for label, kwargs in attempts:
            try:
                path = reverse(name, kwargs=kwargs)
            except NoReverseMatch:
                continue
            if name in extra_query:
                path += "?" + extra_query[name]
            client.get(path)  # warm, so the count is a steady request's
            with CaptureQueriesContext(connection) as queries:
                response = client.get(path)
            found = True
            if response.status_code == 405:
                skipped.append(f"{name} (POST only)")
                break
            if response.status_code != 200:
                skipped.append(f"{label} (answered {response.status_code})")
                continue
            pages.append({"label": label, "path": path, "queries": len(queries), "bytes": len(response.content)})
        if not found:
            skipped.append(f"{name} (arguments unknown to the benchmark)")
    from django.db.models import Count

    from glasshouse.activity.models import DailyUsage, Span, TeamDailyUsage

    return {
        "cookie": f"{client.cookies['sessionid'].key}={client.cookies['sessionid'].value}",
        "pages": pages,
        "skipped": skipped,
        "spans": Span.objects.count(),
        "daily_rows": DailyUsage.objects.aggregate(n=Count("pk"))["n"],
        "team_rows": TeamDailyUsage.objects.aggregate(n=Count("pk"))["n"],
        "write_seconds": write_seconds,
        "rollup_seconds": rollup_seconds,
    }


# --- the timed part ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def time_pages(port: int, cookie: str, pages: list[dict[str, Any]], requests: int) -> list[dict[str, Any]]:
    headers = {"Cookie": cookie, "Host": "127.0.0.1"}

    def get(path: str) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status}")
        return elapsed

    out = []
    for page in pages:
        for _ in range(WARM_UP):
            get(page["path"])
        times = [get(page["path"]) for _ in range(requests)]
        out.append(
            {
                **page,
                "p50": statistics.median(times),
                "p95": percentile(times, 0.95),
                "max": max(times),
            }
        )
        print(f"  {page['label']}: p95 {out[-1]['p95']:.1f} ms", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=30, help="window spans per person and working day")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--aw-venv", type=Path, default=Path("/tmp/aw-venv"))  # noqa: S108 - a path a developer chose
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build(args.people, args.days, args.per_day)))
        return

    import psycopg

    database_url = PG_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {PG_BENCH_DB}")
    try:
        with tempfile.TemporaryDirectory(prefix="gh-bench-pages-") as tmp_name:
            tmp = Path(tmp_name)
            env = glasshouse_env(database_url, tmp)
            print("Building the organisation on PostgreSQL ...", file=sys.stderr)
            cmd = [sys.executable, __file__, "--child", "--people", str(args.people), "--days", str(args.days)]
            cmd += ["--per-day", str(args.per_day)]
            done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
            built = json.loads(done.stdout.strip().splitlines()[-1])
            port = free_tcp_port()
            gunicorn = [
                str(Path(sys.executable).parent / "gunicorn"),
                "glasshouse.config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
            ]
            print("Timing the pages ...", file=sys.stderr)
            with server(gunicorn, env, port, tmp / "gunicorn.log", ROOT):
                results = time_pages(port, built["cookie"], built["pages"], args.requests)
            aw_bin = args.aw_venv / "bin" / "aw-server"
            aw = bench_aw(aw_bin, tmp, args.days, 460, args.requests) if aw_bin.exists() else None
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")

    print(
        f"\n{args.people:,} people in teams of {TEAM_SIZE}, {args.days} days ({built['spans']:,} spans, "
        f"{built['daily_rows']:,} person-day and {built['team_rows']:,} team-day rollup rows; written in "
        f"{built['write_seconds']:.0f} s, rolled up in {built['rollup_seconds']:.0f} s), PostgreSQL, gunicorn "
        f"with {args.workers} workers; {args.requests} requests per page after {WARM_UP} warm-up.\n"
    )
    print("| page | p50 | p95 | max | queries per request | under 300 ms at p95 |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        ok = "yes" if r["p95"] < 300 else "**no**"
        print(
            f"| `{r['label']}` `{r['path']}` | {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['max']:.1f} ms "
            f"| {r['queries']} | {ok} |"
        )
    if built["skipped"]:
        print("\nSkipped: " + ", ".join(built["skipped"]))
    if aw is None:
        print(f"\naw-server not found at {args.aw_venv}: make it as bench/ingest.py says.")
    else:
        print(
            f"\nPeer: aw-server 0.12.0, time per app for ONE person x {args.days} days ({aw['events']:,} events, "
            f"its web UI's query2): median {aw['median_ms']:.1f} ms, max {aw['max_ms']:.1f} ms "
            f"over {args.requests} requests."
        )


if __name__ == "__main__":
    main()
