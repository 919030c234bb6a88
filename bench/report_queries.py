"""Benchmark: report queries from the rollups, side by side with aw-server's query API.

Run by hand: `.venv/bin/python bench/report_queries.py [--people 1000] [--days 30] [--per-day 330]`.

In one run:

* Glasshouse, once into a fresh SQLite file and once into a fresh PostgreSQL database (made for
  the run and dropped after it), under the production settings: an organisation of `people`
  in teams of 50 across six time zones, one device each; `days` days of window and idle spans
  (`per-day` spans per person and working day, about 10 million in all by default) written
  through the event sink in batches of 1,000 exactly as the ingest API writes them (the HTTP
  path is measured by bench/ingest.py), then rolled up by the worker's own code. Then, timed:
  per-application totals for the whole organisation over the 30 days, and for one team of
  50 over the last 7 days (`activity.queries.app_totals`, the query team and organisation
  reports use), each run `--repeat` times after one untimed run; the median and the slowest
  are printed.
* aw-server 0.12.0 (its own virtualenv, as in bench/ingest.py) holds ONE person's 30 days, the
  same spans, as events in one bucket, and answers the same question, time per app, with its
  query2 API (`merge_events_by_keys` + `sort_by_duration`, what its web UI runs). ActivityWatch
  is single-user, so that is the largest comparable question it can answer.

Prints Markdown tables and the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
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

from ingest import PG_URL, glasshouse_env, request, server  # noqa: E402  (bench/ingest.py)
from ingest import free_port as free_tcp_port  # noqa: E402

PG_BENCH_DB = "glasshouse_bench_reports"
TEAM_SIZE = 50
ZONES = ["Europe/London", "America/New_York", "Asia/Singapore", "Europe/Berlin", "America/Los_Angeles", "UTC"]
APPS = [
    "firefox",
    "code",
    "gnome-terminal-server",
    "thunderbird",
    "libreoffice-calc",
    "libreoffice-writer",
    "slack",
    "evince",
    "nautilus",
    "gimp",
    "zoom",
    "keepassxc",
    "chromium",
    "dbeaver",
    "inkscape",
    "teams",
    "spotify",
    "steam",
]


def person_day_spans(rng: random.Random, day_start: float, per_day: int) -> list[tuple[str, float, float]]:
    """(app, start, end) window spans for one working day of about 8 hours from `day_start`."""
    t = day_start + rng.uniform(0, 3600)
    mean = 8 * 3600 / per_day
    spans = []
    weights = [30, 25, 12, 8, 6, 5, 5, 2, 2, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.3, 0.2]
    for app in rng.choices(APPS, weights=weights, k=per_day):
        length = rng.expovariate(1 / mean)
        spans.append((app, t, t + length))
        t += length
    return spans


# --- the child: one database ---------------------------------------------------------------


def child(people: int, days: int, per_day: int, repeat: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from glasshouse.activity.models import IngestBatch, Span, SpanKind
    from glasshouse.activity.queries import app_totals
    from glasshouse.activity.rollups import roll_up_step
    from glasshouse.activity.sinks import SpanIn, write_spans
    from glasshouse.devices.models import Device
    from glasshouse.org.models import Person, Team

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    teams = Team.objects.bulk_create([Team(name=f"Team {n:02}") for n in range(max(1, people // TEAM_SIZE))])
    staff = Person.objects.bulk_create(
        [
            Person(
                full_name=f"Person {n}",
                email=f"p{n}@bench.example",
                employee_number=f"B{n:06}",
                team=teams[n // TEAM_SIZE % len(teams)],
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
    total = 0
    started = time.perf_counter()
    for i, (person, device) in enumerate(zip(staff, devices, strict=True)):
        spans: list[SpanIn] = []
        for d in range(days):
            day = first_day + dt.timedelta(days=d)
            if day.weekday() >= 5:
                continue
            # Work starts around 08:00 UTC give or take the person's zone: only the local-day
            # split in the rollups cares, and it gets a realistic mix.
            start = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC).timestamp()
            for app, s, e in person_day_spans(rng, start, per_day):
                spans.append(SpanIn(int(SpanKind.WINDOW), s, e, app, f"/usr/bin/{app}", f"{app} - work"))
        for seq, n in enumerate(range(0, len(spans), 1000), start=1):
            chunk = spans[n : n + 1000]
            with transaction.atomic():
                batch = IngestBatch.objects.create(device=device, seq=seq, span_count=len(chunk))
                total += write_spans(device, person.pk, chunk, ingest_id=batch.pk)
        if (i + 1) % 100 == 0:
            rate = total / (time.perf_counter() - started)
            print(f"  {i + 1}/{people} people, {total:,} spans ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    batches = IngestBatch.objects.count()
    done = 0
    while step := roll_up_step(limit=100):
        done += step
        if done % 2000 < 100:
            print(f"  rolled up {done:,}/{batches:,} batches", file=sys.stderr, flush=True)
    rollup_seconds = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    stored = Span.objects.count()

    def timed(run: Any) -> dict[str, float]:
        run()  # untimed: the first run pays for cold caches and query planning
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1000)
        return {"median_ms": statistics.median(times), "max_ms": max(times)}

    org = timed(lambda: app_totals(first_day, today))
    week = timed(lambda: app_totals(today - dt.timedelta(days=7), today, [teams[0].pk]))
    check = app_totals(first_day, today, top=100)
    return {
        "vendor": connection.vendor,
        "spans": stored,
        "write_seconds": write_seconds,
        "rollup_seconds": rollup_seconds,
        "org": org,
        "team_week": week,
        "org_hours": sum(a.seconds for a in check) / 3600,
        "top_app": check[0].app,
    }


# --- aw-server -----------------------------------------------------------------------------


def bench_aw(aw_bin: Path, tmp: Path, days: int, per_day: int, repeat: int) -> dict[str, Any]:
    rng = random.Random(7)
    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=days)
    events = []
    for d in range(days):
        day = first_day + dt.timedelta(days=d)
        if day.weekday() >= 5:
            continue
        start = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC).timestamp()
        for app, s, e in person_day_spans(rng, start, per_day):
            events.append(
                {
                    "timestamp": dt.datetime.fromtimestamp(s, dt.UTC).isoformat(),
                    "duration": e - s,
                    "data": {"app": app, "title": f"{app} - work"},
                }
            )
    port = free_tcp_port()
    data = tmp / "aw"
    env = {**os.environ, "HOME": str(data)}
    for name in ("DATA", "CONFIG", "CACHE", "STATE"):
        env[f"XDG_{name}_HOME"] = str(data / name.lower())
    cmd = [str(aw_bin), "--testing", "--host", "127.0.0.1", "--port", str(port)]
    with server(cmd, env, port, tmp / "aw-server.log", tmp):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        headers = {"Content-Type": "application/json"}

        def call(method: str, path: str, body: Any = None) -> Any:
            payload = None if body is None else json.dumps(body).encode()
            status, answer = request(conn, method, path, payload, headers)
            if status != 200:
                raise RuntimeError(f"aw-server {method} {path}: {status} {answer[:300]!r}")
            return json.loads(answer) if answer else None

        bucket = "aw-watcher-window_bench"
        call("POST", f"/api/0/buckets/{bucket}", {"client": "bench", "type": "currentwindow", "hostname": "bench"})
        for i in range(0, len(events), 1000):
            call("POST", f"/api/0/buckets/{bucket}/events", events[i : i + 1000])
        period = f"{first_day.isoformat()}T00:00:00+00:00/{(today + dt.timedelta(days=1)).isoformat()}T00:00:00+00:00"
        query = {
            "timeperiods": [period],
            "query": [
                f'events = query_bucket("{bucket}");',
                'events = merge_events_by_keys(events, ["app"]);',
                "RETURN = sort_by_duration(events);",
            ],
        }
        call("POST", "/api/0/query/", query)  # untimed, like the Glasshouse side
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            answer = call("POST", "/api/0/query/", query)
            times.append((time.perf_counter() - t0) * 1000)
        conn.close()
    return {
        "events": len(events),
        "median_ms": statistics.median(times),
        "max_ms": max(times),
        "apps": len(answer[0]),
    }


# --- main ----------------------------------------------------------------------------------


def run_child(database_url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = glasshouse_env(database_url, tmp)
    cmd = [sys.executable, __file__, "--child", "--people", str(args.people), "--days", str(args.days)]
    cmd += ["--per-day", str(args.per_day), "--repeat", str(args.repeat)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=460, help="window spans per person and working day")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--storage", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--aw-venv", type=Path, default=Path("/tmp/aw-venv"))  # noqa: S108 - a path a developer chose
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.people, args.days, args.per_day, args.repeat)))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="gh-bench-reports-") as tmp_name:
        tmp = Path(tmp_name)
        if args.storage in ("sqlite", "both"):
            print("Glasshouse on SQLite ...", file=sys.stderr)
            results.append(run_child(f"sqlite:///{tmp / 'bench.sqlite3'}", tmp, args))
        if args.storage in ("postgresql", "both"):
            import psycopg

            print("Glasshouse on PostgreSQL ...", file=sys.stderr)
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB}")
                admin.execute(f"CREATE DATABASE {PG_BENCH_DB}")
            try:
                results.append(run_child(PG_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}", tmp, args))
            finally:
                with psycopg.connect(PG_URL, autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        aw_bin = args.aw_venv / "bin" / "aw-server"
        print("aw-server ...", file=sys.stderr)
        aw = bench_aw(aw_bin, tmp, args.days, args.per_day, args.repeat) if aw_bin.exists() else None

    print(f"\n{args.people:,} people in teams of {TEAM_SIZE}, {args.days} days, {args.per_day} window spans per")
    print(f"person and working day; each query run {args.repeat} times after one untimed run.\n")
    print(
        f"| system | storage | spans stored | write (sink) | roll-up | org x {args.days} days: median / max "
        f"| team of {TEAM_SIZE} x 7 days: median / max |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| Glasshouse | {r['vendor']} | {r['spans']:,} | {r['write_seconds']:.0f} s "
            f"({r['spans'] / r['write_seconds']:,.0f}/s) | {r['rollup_seconds']:.0f} s "
            f"({r['spans'] / r['rollup_seconds']:,.0f}/s) | {r['org']['median_ms']:.1f} / {r['org']['max_ms']:.1f} ms "
            f"| {r['team_week']['median_ms']:.1f} / {r['team_week']['max_ms']:.1f} ms |"
        )
    if aw is None:
        print(f"\naw-server not found at {aw_bin}: make it as bench/ingest.py says.")
        return
    print(
        f"| aw-server 0.12.0 | SQLite (peewee) | {aw['events']:,} (one person) | | | "
        f"{aw['median_ms']:.1f} / {aw['max_ms']:.1f} ms (one person, {aw['apps']} apps) | |"
    )
    print(
        f"\n| Glasshouse into | org of {args.people:,} x {args.days} days vs aw-server's one person x "
        f"{args.days} days (ratio of median times) |"
    )
    print("| --- | ---: |")
    for r in results:
        print(f"| {r['vendor']} | {aw['median_ms'] / r['org']['median_ms']:.1f}x faster |")


if __name__ == "__main__":
    main()
