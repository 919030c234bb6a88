"""Benchmark: span ingestion through the real agent HTTP API, side by side with aw-server.

Run by hand: `.venv/bin/python bench/ingest.py [--batches 100] [--server gunicorn] [--aw-events 5000]`.

In one run, on loopback only, with bounded loops:

* Glasshouse: served by gunicorn (the production WSGI server in requirements.txt) with
  `--workers` synchronous workers (default 2, one per core), or with `--server runserver` by
  `manage.py runserver --noreload --nothreading` (one request at a time), under the
  *production* settings (DEBUG off, a
  random strong secret key, persistent database connections), once into a fresh SQLite file
  and once into a fresh PostgreSQL database made for the run and dropped after it. A device is
  enrolled through the real enroll endpoint with a token made in `manage.py shell`; the client
  (this process, two threads so that the next request is always queued) posts gzip batches of 1,000 window spans to
  /api/agent/v1/batches. Bodies are built and compressed before the clock starts (that is the
  agent's work, not the server's). A span counts once the server acknowledged its batch, which
  it does only after the transaction committed; the stored row count is checked afterwards.
* aw-server 0.12.0 from PyPI, in its own virtual environment (default /tmp/aw-venv, made with
  `pip install aw-server==0.12.0 'flask<2.3' 'peewee<4'`), in `--testing` mode on a free port
  with its data in a temporary XDG directory: the same window spans sent as heartbeats
  (POST .../heartbeat?pulsetime=5, one per request, as its watchers do) and as bulk inserts
  (POST .../events with lists of 1,000 events).

Prints Markdown tables: rates and the ratios Glasshouse / aw-server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.client
import json
import os
import random
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("GLASSHOUSE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BENCH_DB = "glasshouse_bench_ingest"
SPANS_PER_BATCH = 1000
# One request at a time on one persistent database connection, like one synchronous worker of
# a production WSGI server. Threaded runserver opens a new thread, and so a new database
# connection (a new backend process on PostgreSQL), for every client connection.
RUNSERVER_FLAGS = os.environ.get("BENCH_RUNSERVER_FLAGS", "--nothreading").split()
APPS = [
    ("firefox", "/usr/lib/firefox/firefox"),
    ("code", "/usr/share/code/code"),
    ("gnome-terminal-server", "/usr/libexec/gnome-terminal-server"),
    ("thunderbird", "/usr/lib/thunderbird/thunderbird"),
    ("libreoffice-calc", "/usr/lib/libreoffice/program/soffice.bin"),
    ("libreoffice-writer", "/usr/lib/libreoffice/program/soffice.bin"),
    ("slack", "/usr/lib/slack/slack"),
    ("evince", "/usr/bin/evince"),
    ("nautilus", "/usr/bin/nautilus"),
    ("gimp", "/usr/bin/gimp-2.10"),
    ("zoom", "/opt/zoom/zoom"),
    ("keepassxc", "/usr/bin/keepassxc"),
]
WORDS = ["report", "budget", "inbox", "draft", "meeting", "notes", "invoice", "roadmap"]
WORDS += ["review", "plan", "issue", "build", "deploy", "sales", "q3", "team"]


# --- the workload --------------------------------------------------------------------------


def make_spans(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """Contiguous window spans over the last weeks: a dozen apps, titles from a pool of a few
    thousand that repeat the way real ones do (a few very often, most rarely)."""
    rng = random.Random(seed)
    titles = [f"{' '.join(rng.sample(WORDS, 3))} #{i} - {rng.choice(APPS)[0]}" for i in range(5000)]
    t = time.time() - 60 * 86400
    spans: list[dict[str, Any]] = []
    for _ in range(count):
        app, exe = APPS[min(int(rng.expovariate(0.4)), len(APPS) - 1)]
        length = round(rng.uniform(1.0, 90.0), 3)
        spans.append(
            {
                "kind": "window",
                "start": round(t, 3),
                "end": round(t + length, 3),
                "app": app,
                "exe": exe,
                "title": titles[min(int((rng.paretovariate(0.8) - 1) * 20), len(titles) - 1)],
                "pid": 1000 + rng.randrange(0, 30000),
            }
        )
        t += length
    return spans


# --- processes and ports -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s:\n{log.read_text()[-3000:]}")


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


@dataclass
class Result:
    system: str
    storage: str
    how: str
    events: int
    seconds: float
    stored: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


# --- Glasshouse ----------------------------------------------------------------------------


def glasshouse_env(database_url: str, var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSHOUSE_", "DJANGO_", "DATABASE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="glasshouse.config.settings.production",
        GLASSHOUSE_SECRET_KEY=secrets.token_urlsafe(64),
        GLASSHOUSE_SSL_REDIRECT="false",
        GLASSHOUSE_DEBUG="false",
        GLASSHOUSE_VAR_DIR=str(var_dir),
        GLASSHOUSE_STATIC_ROOT=str(var_dir / "static"),
        GLASSHOUSE_LOG_LEVEL="WARNING",
        DB_CONN_MAX_AGE="600",
        DATABASE_URL=database_url,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


SETUP_SNIPPET = """
import datetime as dt
from django.utils import timezone
from glasshouse.devices.actions import do_create_token
from glasshouse.devices.models import AgentPolicy
# aw-server stores titles, so the comparison stores them too.
AgentPolicy.objects.filter(team__isnull=True).update(collect_titles=True)
print(do_create_token(None, label='bench', expires_at=timezone.now() + dt.timedelta(days=1), max_uses=64).secret)
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def post_batches(port: int, uploads: list[list[tuple[str, int, bytes]]]) -> None:
    """One thread per list in `uploads`, each posting its (auth, seq, gzip body) items in order,
    like one agent uploading its spool; all threads at once. Every batch must be acked."""
    failures: list[str] = []

    def agent(items: list[tuple[str, int, bytes]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for auth, seq, body in items:
                if failures:
                    return
                headers = {"Authorization": auth, "Content-Type": "application/json", "Content-Encoding": "gzip"}
                # A fresh connection per batch, as an agent uploading every 30 s makes. On a kept-alive
                # connection runserver's separate header and body writes meet the client's delayed
                # ACK (Nagle) and every response waits ~40 ms on loopback, which would measure that
                # stall instead of the server.
                conn.close()
                status, answer = request(conn, "POST", "/api/agent/v1/batches", body, headers)
                if status != 200 or json.loads(answer) != {"accepted_seq": seq}:
                    failures.append(f"batch {seq}: {status} {answer[:300]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=agent, args=(items,)) for items in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(failures[0])


def count_spans(storage: str, database_url: str) -> int:
    if storage == "SQLite":
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM activity_span").fetchone()[0])
    out = subprocess.run(
        ["psql", database_url, "-tAc", "SELECT count(*) FROM activity_span"], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


def bench_glasshouse(
    storage: str, database_url: str, var_dir: Path, batches: list[bytes], connections: int, serve: list[str]
) -> tuple[Result, str]:
    env = glasshouse_env(database_url, var_dir)
    manage(env, "migrate", "--noinput", "-v0")
    token = manage(env, "shell", "-c", SETUP_SNIPPET).strip().splitlines()[-1]
    port = free_port()
    log = var_dir / f"glasshouse-{storage}.log"
    cmd = [arg.replace("PORT", str(port)) for arg in serve]
    try:
        with server(cmd, env, port, log, ROOT):
            seconds, events = drive_glasshouse(port, token, batches, connections)
    except Exception:
        print(f"--- {storage} server log (tail) ---\n{log.read_text()[-5000:]}", file=sys.stderr)
        raise
    stored = count_spans(storage, database_url)
    expected = len(batches) * SPANS_PER_BATCH
    if stored != expected:
        raise RuntimeError(f"{storage}: {stored} spans stored, expected {expected}")
    return Result("Glasshouse", storage, "HTTP batches of 1,000 (gzip JSON)", events, seconds, stored), log.read_text()


def drive_glasshouse(port: int, token: str, batches: list[bytes], connections: int) -> tuple[float, int]:
    """`connections` devices (one enrolment each) upload at the same time, each its own share of
    the batches in order, as that many agents would."""
    auths = []
    for n in range(connections):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        enroll = {"token": token, "hostname": f"bench-{n}", "os": "linux", "agent_version": "0.1.0", "username": "b"}
        status, answer = request(
            conn, "POST", "/api/agent/v1/enroll", json.dumps(enroll).encode(), {"Content-Type": "application/json"}
        )
        conn.close()
        if status != 201:
            raise RuntimeError(f"enrol failed: {status} {answer!r}")
        device = json.loads(answer)
        auths.append(f"Device {device['device_id']}:{device['device_key']}")
    # Warm-up: the first batch (seq 1) opens the database connection and fills caches; untimed.
    post_batches(port, [[(auths[0], 1, batches[0])]])
    # Batch i (seq i + 1) goes to device i % connections: each device's seqs rise, as a spool's do.
    uploads: list[list[tuple[str, int, bytes]]] = [[] for _ in auths]
    for i, body in enumerate(batches[1:], start=1):
        uploads[i % connections].append((auths[i % connections], i + 1, body))
    started = time.perf_counter()
    post_batches(port, uploads)
    seconds = time.perf_counter() - started
    # A retry of an acknowledged batch is acknowledged again and stores nothing.
    post_batches(port, [[uploads[-1][-1]]])
    return seconds, (len(batches) - 1) * SPANS_PER_BATCH


# --- aw-server -----------------------------------------------------------------------------


def aw_event(span: dict[str, Any]) -> dict[str, Any]:
    start = dt.datetime.fromtimestamp(span["start"], dt.UTC).isoformat()
    return {
        "timestamp": start,
        "duration": span["end"] - span["start"],
        "data": {"app": span["app"], "title": span["title"]},
    }


def bench_aw(aw_bin: Path, tmp: Path, spans: list[dict[str, Any]], bulk_spans: list[dict[str, Any]]) -> list[Result]:
    port = free_port()
    data = tmp / "aw"
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(data / "data"),
        "XDG_CONFIG_HOME": str(data / "config"),
        "XDG_CACHE_HOME": str(data / "cache"),
        "XDG_STATE_HOME": str(data / "state"),
        "HOME": str(data),
    }
    log = tmp / "aw-server.log"
    events = [aw_event(s) for s in spans]
    results: list[Result] = []
    cmd = [str(aw_bin), "--testing", "--host", "127.0.0.1", "--port", str(port)]
    with server(cmd, env, port, log, tmp):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        json_headers = {"Content-Type": "application/json"}

        def call(method: str, path: str, body: Any = None) -> Any:
            payload = None if body is None else json.dumps(body).encode()
            status, answer = request(conn, method, path, payload, json_headers)
            if status not in (200, 304):
                raise RuntimeError(f"aw-server {method} {path}: {status} {answer[:300]!r}")
            return json.loads(answer) if answer else None

        for bucket in ("bench-heartbeat", "bench-bulk"):
            call(
                "POST", f"/api/0/buckets/{bucket}", {"client": "bench", "type": "currentwindow", "hostname": "bench-1"}
            )
        # Heartbeats: one request per event, as aw-watcher-window sends them.
        call("POST", "/api/0/buckets/bench-heartbeat/heartbeat?pulsetime=5", events[0])
        started = time.perf_counter()
        for event in events[1:]:
            call("POST", "/api/0/buckets/bench-heartbeat/heartbeat?pulsetime=5", event)
        seconds = time.perf_counter() - started
        stored = int(call("GET", "/api/0/buckets/bench-heartbeat/events/count"))
        results.append(
            Result(
                "aw-server 0.12.0", "SQLite (peewee)", "heartbeat, one per request", len(events) - 1, seconds, stored
            )
        )
        # Bulk: lists of 1,000 events, the same events as Glasshouse gets.
        bulk = [aw_event(s) for s in bulk_spans]
        started = time.perf_counter()
        for i in range(0, len(bulk), SPANS_PER_BATCH):
            call("POST", "/api/0/buckets/bench-bulk/events", bulk[i : i + SPANS_PER_BATCH])
        seconds = time.perf_counter() - started
        stored = int(call("GET", "/api/0/buckets/bench-bulk/events/count"))
        if stored != len(bulk):
            raise RuntimeError(f"aw-server stored {stored} of {len(bulk)} bulk events")
        results.append(
            Result("aw-server 0.12.0", "SQLite (peewee)", "bulk POST of 1,000 events", len(bulk), seconds, stored)
        )
        conn.close()
    return results


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=101, help="batches per database (the first is a warm-up)")
    parser.add_argument("--connections", type=int, default=4, help="agents (devices) uploading to Glasshouse at once")
    parser.add_argument("--aw-events", type=int, default=5000, help="heartbeats sent to aw-server")
    parser.add_argument("--aw-bulk-events", type=int, default=100_000, help="events bulk-inserted into aw-server")
    parser.add_argument("--server", choices=["gunicorn", "runserver"], default="gunicorn")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--aw-venv", type=Path, default=Path("/tmp/aw-venv"))  # noqa: S108 - a path a developer chose
    parser.add_argument("--skip", action="append", default=[], choices=["sqlite", "postgresql", "aw"])
    parser.add_argument("--show-logs", action="store_true")
    args = parser.parse_args()

    if args.server == "gunicorn":
        serve = [sys.executable, "-m", "gunicorn", "glasshouse.config.wsgi", "--bind", "127.0.0.1:PORT"]
        serve += ["--workers", str(args.workers), "--worker-class", "sync", "--log-level", "warning"]
    else:
        serve = [sys.executable, "manage.py", "runserver", "--noreload", *RUNSERVER_FLAGS, "127.0.0.1:PORT"]
    spans = make_spans(args.batches * SPANS_PER_BATCH)
    bodies = [
        gzip.compress(json.dumps({"batch_seq": i + 1, "spans": spans[o : o + SPANS_PER_BATCH]}).encode())
        for i, o in enumerate(range(0, len(spans), SPANS_PER_BATCH))
    ]
    raw_kib = len(json.dumps({"batch_seq": 1, "spans": spans[:SPANS_PER_BATCH]})) / 1024
    tmp = Path(tempfile.mkdtemp(prefix="gh-bench-ingest-"))
    results: list[Result] = []
    notes: list[str] = []
    pg_made = False
    try:
        targets: list[tuple[str, str]] = []
        if "sqlite" not in args.skip:
            targets.append(("SQLite", f"sqlite:///{tmp}/bench.sqlite3"))
        if "postgresql" not in args.skip:
            subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {PG_BENCH_DB}"], check=False)
            made = subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {PG_BENCH_DB}"], check=False)
            if made.returncode == 0:
                pg_made = True
                targets.append(("PostgreSQL", PG_URL.rsplit("/", 1)[0] + f"/{PG_BENCH_DB}"))
            else:
                notes.append("PostgreSQL: could not create the bench database; not measured.")
        for storage, url in targets:
            result, log = bench_glasshouse(storage, url, tmp, bodies, args.connections, serve)
            results.append(result)
            if args.show_logs:
                print(log, file=sys.stderr)
        if "aw" not in args.skip:
            aw_bin = args.aw_venv / "bin" / "aw-server"
            if aw_bin.exists():
                results.extend(bench_aw(aw_bin, tmp, spans[: args.aw_events], spans[: args.aw_bulk_events]))
            else:
                notes.append(
                    f"aw-server: {aw_bin} not found; make it with `python3 -m venv {args.aw_venv} && "
                    f"{args.aw_venv}/bin/pip install aw-server==0.12.0 'flask<2.3' 'peewee<4'`."
                )
    finally:
        if pg_made:
            subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {PG_BENCH_DB}"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    how = f"gunicorn, {args.workers} sync workers" if args.server == "gunicorn" else "runserver --nothreading"
    print(f"Window spans, {SPANS_PER_BATCH:,} per batch ({raw_kib:,.0f} KiB of JSON before gzip); Glasshouse")
    print(f"served by {how}; {args.connections} devices uploading at once.\n")
    print("| system | storage | how | events | wall time | events/s | stored rows |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.system} | {r.storage} | {r.how} | {r.events:,} | {r.seconds:.2f} s | {r.rate:,.0f} | {r.stored:,} |"
        )
    ours = [r for r in results if r.system == "Glasshouse"]
    peers = [r for r in results if r.system != "Glasshouse"]
    if ours and peers:
        print()
        print("| Glasshouse into | " + " | ".join(f"÷ aw-server {p.how.split()[0].rstrip(',')}" for p in peers) + " |")
        print("| --- | " + " | ".join("---:" for _ in peers) + " |")
        for r in ours:
            print(f"| {r.storage} | " + " | ".join(f"{r.rate / p.rate:,.1f}x" for p in peers) + " |")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
