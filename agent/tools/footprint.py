"""Measure the agent's own CPU and memory from outside, under scripted desktop activity, side by
side with ActivityWatch's aw-server in the same run. Not a test (no timing thresholds in tests);
the tables go into bench/README.md and the README's "Resource budget" by hand.

Run from agent/:  .venv/bin/python -m tools.footprint            (600 s; --seconds 60 for a quick check)

One Xvfb + openbox desktop with two xterms, and on it, at the same time:

* Glasshouse: the in-test protocol server (tests/fakeserver.py, in this process), an enrolled
  `glasshouse-agent run` (the service: spool + upload) and `glasshouse-agent session` (the
  helper: X11 window and idle collectors), policy idle threshold --idle-threshold.
* ActivityWatch: aw-server 0.12.0 from PyPI in its own virtualenv (--aw-venv, made with
  `pip install aw-server==0.12.0 'flask<2.3' 'peewee<4' aw-client==0.5.15 python-xlib` if
  missing; the same venv as bench/ingest.py), in `--testing` mode on a free port with its data in
  a temporary XDG directory, fed by two stand-in watchers (tools/aw_standin.py: NOT
  ActivityWatch's code; aw-watcher-window/-afk are not installable here) that poll the same
  display at the real watchers' default intervals and send heartbeats through aw-client.

The script: in "active" phases a focus switch every --switch-every seconds, a retitle every
third switch, a mouse move every fourth (and at the start of each active phase); in "idle"
phases nothing at all, long enough for the idle threshold to be crossed. Each watched process
(with any child processes it starts) is sampled from this process with psutil: RSS once a
second, PSS and USS (from smaps; the kernel does that work in the reader's time, not the
target's) every --full-every seconds and at the end. CPU is the difference of its CPU times
(user + system, all threads, children included) between the end of a settling period and the
end of the run; start-up (imports, first connections) is reported separately, not in the mean.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.agentproc import AgentEnv
from tests.conftest import policy_doc
from tests.desktop import Desktop, _start_xvfb, _wm_ready, wait_for
from tests.fakeserver import FakeServer

TOOLS = Path(__file__).resolve().parent
AW_PINS = ["aw-server==0.12.0", "flask<2.3", "peewee<4", "aw-client==0.5.15", "python-xlib"]
TARGET_CPU_PERCENT = 0.5
TARGET_RSS_MB = 40.0
MB = 1e6


@dataclass
class Watched:
    label: str
    side: str  # "glasshouse" or "aw"
    popen: subprocess.Popen[bytes]
    proc: psutil.Process = field(init=False)
    startup_cpu: float = 0.0
    cpu_before: float = 0.0
    cpu_after: float = 0.0
    rss: list[int] = field(default_factory=list)  # every second
    pss: list[int] = field(default_factory=list)  # every --full-every seconds (reads smaps)
    uss: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.proc = psutil.Process(self.popen.pid)

    def tree(self) -> list[psutil.Process]:
        """The process and whatever it has started (a helper program it keeps running counts)."""
        out = [self.proc]
        with contextlib.suppress(psutil.Error):
            out += self.proc.children(recursive=True)
        return out

    def cpu(self) -> float:
        """CPU seconds of the process, of its children it has waited for, and of live descendants."""
        t = self.proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in self.tree()[1:]:
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
        return float(total)

    def sample(self, full: bool) -> None:
        rss = pss = uss = 0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                if full:
                    m = p.memory_full_info()
                    rss, pss, uss = rss + m.rss, pss + m.pss, uss + m.uss
                else:
                    rss += p.memory_info().rss
        self.rss.append(rss)
        if full:
            self.pss.append(pss)
            self.uss.append(uss)


# --- ActivityWatch side ---------------------------------------------------------------------


def ensure_aw_venv(venv: Path) -> Path:
    """The aw virtualenv's python, made or completed if needed (bench/ingest.py uses the same)."""
    py = venv / "bin" / "python"
    ok = (
        py.exists()
        and (venv / "bin" / "aw-server").exists()
        and subprocess.run(
            [str(py), "-c", "import aw_client, aw_core, Xlib"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not ok:
        print(f"making the aw-server virtualenv {venv} ...", file=sys.stderr)
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *AW_PINS], check=True)
    return py


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aw_get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/0/{path}", timeout=10) as r:
        return json.loads(r.read())


def aw_ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"aw-server exited with {proc.returncode}")
    try:
        aw_get(port, "info")
    except OSError:
        return False
    return True


def aw_summary(port: int) -> dict[str, dict[str, int]]:
    """Per bucket: events stored, and for the afk bucket the events per status."""
    out: dict[str, dict[str, int]] = {}
    for bucket in aw_get(port, "buckets/"):
        events = aw_get(port, f"buckets/{bucket}/events?limit=-1")
        counts: Counter[str] = Counter({"events": len(events)})
        for e in events:
            if "status" in e["data"]:
                counts[e["data"]["status"]] += 1
        out[bucket] = dict(counts)
    return out


# --- the desktop ----------------------------------------------------------------------------


def xterm(desk: Desktop, cls: str, title: str, lifetime: float) -> None:
    # tests.desktop's xterms live 600 s; this run can be longer than that.
    proc = subprocess.Popen(
        ["xterm", "-class", cls, "-title", title, "-e", "sleep", str(int(lifetime))],
        env=desk.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    desk.procs.append(proc)
    wait_for(lambda: desk.window_of(cls) is not None, timeout=15)


@dataclass
class Script:
    switch_every: float
    active: float
    idle: float
    n: int = 0
    retitles: int = 0
    mouse_moves: int = 0
    idle_phases: int = 0
    was_active: bool = False

    def active_at(self, elapsed: float) -> bool:
        return self.idle <= 0 or elapsed % (self.active + self.idle) < self.active

    def step(self, desk: Desktop, elapsed: float) -> None:
        if not self.active_at(elapsed):
            if self.was_active:
                self.idle_phases += 1
            self.was_active = False
            return
        cls = "FootA" if self.n % 2 else "FootB"
        desk.activate(cls)
        if self.n % 3 == 0:
            desk.retitle(cls, f"Document {cls} rev {self.n}")
            self.retitles += 1
        if self.n % 4 == 0 or not self.was_active:
            desk.xdotool("mousemove", str(100 + (self.n * 37) % 400), str(150 + self.n % 200))
            self.mouse_moves += 1
        self.n += 1
        self.was_active = True


# --- the report -----------------------------------------------------------------------------


def pct(cpu_seconds: float, wall: float) -> float:
    return 100.0 * cpu_seconds / wall


def mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def group_row(name: str, members: list[Watched], wall: float) -> dict[str, float]:
    """A group's totals: CPU adds up; memory is summed per sample, then the peak or mean taken.
    Summed RSS counts the pages the processes share (the Python runtime, libraries) once per
    process; summed PSS counts each shared page once, split between its sharers."""

    def total(attr: str) -> list[int]:
        return [sum(col) for col in zip(*(getattr(w, attr) for w in members), strict=False)]

    rss, pss, uss = total("rss"), total("pss"), total("uss")
    return {
        "cpu": pct(sum(w.cpu_after - w.cpu_before for w in members), wall),
        "startup": sum(w.startup_cpu for w in members),
        "rss_peak": max(rss) / MB,
        "rss_mean": mean(rss) / MB,
        "pss_peak": max(pss) / MB,
        "uss_peak": max(uss) / MB,
    }


def markdown(watched: list[Watched], wall: float) -> str:
    lines = [
        "| process | CPU, % of one core (mean) | start-up CPU | RSS peak | RSS mean | PSS peak | USS peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def row(label: str, r: dict[str, float]) -> str:
        return (
            f"| {label} | {r['cpu']:.3f} % | {r['startup']:.2f} s | {r['rss_peak']:.1f} MB "
            f"| {r['rss_mean']:.1f} MB | {r['pss_peak']:.1f} MB | {r['uss_peak']:.1f} MB |"
        )

    gh = [w for w in watched if w.side == "glasshouse"]
    server = [w for w in watched if w.label.startswith("aw-server")]
    aw = [w for w in watched if w.side == "aw"]
    for w in watched:
        lines.append(row(w.label, group_row(w.label, [w], wall)))
    totals = {
        "Glasshouse (service + helper)": group_row("gh", gh, wall),
        "aw-server alone": group_row("aws", server, wall),
        "aw-server + stand-in watchers": group_row("aw", aw, wall),
    }
    for label, r in totals.items():
        lines.append(row(f"**{label}**", r))

    g = totals["Glasshouse (service + helper)"]
    lines += [
        "",
        "| Glasshouse (service + helper) ÷ | CPU | RSS peak | RSS mean | PSS peak | USS peak |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in ("aw-server alone", "aw-server + stand-in watchers"):
        a = totals[label]
        ratios = [
            g[k] / a[k] if a[k] else float("nan") for k in ("cpu", "rss_peak", "rss_mean", "pss_peak", "uss_peak")
        ]
        lines.append(f"| {label} | " + " | ".join(f"{x:.2f}x" for x in ratios) + " |")

    lines += [
        "",
        f"Targets (issue 3): under {TARGET_CPU_PERCENT} % of one core and under {TARGET_RSS_MB:.0f} MB resident.",
    ]
    for w in gh:
        r = group_row(w.label, [w], wall)
        lines.append(
            f"- {w.label}: CPU {r['cpu']:.3f} % ({'met' if r['cpu'] < TARGET_CPU_PERCENT else 'NOT met'}), "
            f"RSS peak {r['rss_peak']:.1f} MB ({'met' if r['rss_peak'] < TARGET_RSS_MB else 'NOT met'})"
        )
    lines.append(
        f"- both together: CPU {g['cpu']:.3f} % ({'met' if g['cpu'] < TARGET_CPU_PERCENT else 'NOT met'}), "
        f"RSS peak {g['rss_peak']:.1f} MB ({'met' if g['rss_peak'] < TARGET_RSS_MB else 'NOT met'}; "
        f"shared pages counted twice), PSS peak {g['pss_peak']:.1f} MB "
        f"({'met' if g['pss_peak'] < TARGET_RSS_MB else 'NOT met'}; shared pages counted once)"
    )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Glasshouse agent vs aw-server footprint under Xvfb")
    parser.add_argument("--seconds", type=float, default=600, help="measured duration (default 600)")
    parser.add_argument("--switch-every", type=float, default=5, help="seconds between focus switches")
    parser.add_argument("--active-seconds", type=float, default=150, help="length of an active phase")
    parser.add_argument("--idle-seconds", type=float, default=100, help="length of an idle phase (0: none)")
    parser.add_argument("--idle-threshold", type=float, default=60, help="seconds without input = idle, both sides")
    parser.add_argument("--settle", type=float, default=10, help="seconds after start-up before the clock starts")
    parser.add_argument("--aw-venv", type=Path, default=Path("/tmp/aw-venv"))  # noqa: S108 - a path a developer chose
    parser.add_argument("--full-every", type=int, default=10, help="read PSS/USS (smaps) every N RSS samples")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    missing = [t for t in ("Xvfb", "openbox", "xdotool", "xterm", "xprop") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} (run scripts/setup-agent-test-deps.sh as root)")
    aw_python = ensure_aw_venv(args.aw_venv)

    root = Path(tempfile.mkdtemp(prefix="gha-footprint-"))
    xvfb, display = _start_xvfb()
    desk = Desktop(display)
    server = FakeServer().start()
    agent = AgentEnv(root, str(root))
    aw_port = free_port()
    aw_home = root / "aw"
    aw_env = {
        **os.environ,
        "HOME": str(aw_home),
        "XDG_DATA_HOME": str(aw_home / "data"),
        "XDG_CONFIG_HOME": str(aw_home / "config"),
        "XDG_CACHE_HOME": str(aw_home / "cache"),
        "XDG_STATE_HOME": str(aw_home / "state"),
        "DISPLAY": display,
    }
    children: list[subprocess.Popen[bytes]] = []
    watched: list[Watched] = []
    load_before = os.getloadavg()
    keep = False
    try:
        desk.procs.append(subprocess.Popen(["openbox"], env=desk.env, stderr=subprocess.DEVNULL))
        wait_for(lambda: _wm_ready(display), timeout=15)
        lifetime = args.seconds + args.settle + 300
        xterm(desk, "FootA", "Document A", lifetime)
        xterm(desk, "FootB", "Document B", lifetime)

        # Glasshouse.
        server.set_policy(policy_doc(idle_threshold_seconds=int(args.idle_threshold)))
        server.add_token("tok")
        enrolled = agent.run("enroll", "--server", server.url, "--token", "tok")
        if enrolled.returncode != 0:
            raise RuntimeError(f"enroll failed: {enrolled.stderr}")
        # The policy here has no usb or web section; these keep any agent version off this
        # machine's /sys and browser policy directories all the same.
        host_guard = {"GLASSHOUSE_AGENT_USB": "off", "GLASSHOUSE_AGENT_WEB_ROOT": str(root / "web-root")}
        service = agent.start("run", "--utmp", str(root / "utmp"), **host_guard)
        helper = agent.start("session", DISPLAY=display)
        children += [service, helper]
        watched += [
            Watched("`glasshouse-agent run` (service)", "glasshouse", service),
            Watched("`glasshouse-agent session` (helper)", "glasshouse", helper),
        ]

        # ActivityWatch: aw-server, then the stand-in watchers once it answers.
        aw_home.mkdir()
        aw_log = (root / "aw-server.log").open("wb")
        aw_cmd = [str(args.aw_venv / "bin" / "aw-server"), "--testing", "--host", "127.0.0.1", "--port", str(aw_port)]
        aw_server = subprocess.Popen(aw_cmd, env=aw_env, stdout=aw_log, stderr=subprocess.STDOUT)
        children.append(aw_server)
        watched.append(Watched("aw-server 0.12.0", "aw", aw_server))
        wait_for(lambda: aw_ready(aw_port, aw_server), timeout=90, interval=0.2)
        standin = [str(aw_python), str(TOOLS / "aw_standin.py")]
        for kind, extra in (("window", []), ("afk", ["--timeout", str(args.idle_threshold)])):
            log = (root / f"aw-standin-{kind}.log").open("wb")
            p = subprocess.Popen(
                [*standin, kind, "--port", str(aw_port), *extra], env=aw_env, stdout=log, stderr=subprocess.STDOUT
            )
            children.append(p)
            watched.append(Watched(f"stand-in aw-watcher-{kind} (not ActivityWatch's code)", "aw", p))

        time.sleep(args.settle)  # imports, enrolment, first policy fetch, bucket creation
        for w in watched:
            if w.popen.poll() is not None:
                raise RuntimeError(f"{w.label} exited early with {w.popen.returncode}; logs in {root}")
            w.startup_cpu = w.cpu_before = w.cpu()

        script = Script(args.switch_every, args.active_seconds, args.idle_seconds)
        start = time.monotonic()
        next_step = next_sample = start
        n_samples = 0
        while (now := time.monotonic()) - start < args.seconds:
            if now >= next_step:
                script.step(desk, now - start)
                next_step += args.switch_every
            if now >= next_sample:
                for w in watched:
                    w.sample(full=n_samples % args.full_every == 0)
                n_samples += 1
                next_sample += 1.0
            time.sleep(max(0.0, min(next_step, next_sample) - time.monotonic()))
        wall = time.monotonic() - start
        for w in watched:
            if w.popen.poll() is not None:
                raise RuntimeError(f"{w.label} exited during the run with {w.popen.returncode}; logs in {root}")
            w.cpu_after = w.cpu()
            w.sample(full=True)
            if len(w.tree()) > 1:
                print(f"note: {w.label} has child processes; they are counted in its row", file=sys.stderr)
        load_after = os.getloadavg()

        # Stop the watchers first so their queues flush, then read what each side stored.
        for p in children[3:]:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        aw_stored = aw_summary(aw_port)
        for p in children[:2]:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        spans = Counter(str(s.get("kind")) for s in server.state.spans())

        print(
            f"{wall:.0f} s measured on {platform.node() or 'this machine'} ({psutil.cpu_count()} cores, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}), "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
            f"Script: {script.n} focus switches, {script.retitles} retitles, {script.mouse_moves} mouse moves, "
            f"{script.idle_phases} idle phases of {args.idle_seconds:.0f} s; "
            f"idle threshold {args.idle_threshold:.0f} s.\n"
        )
        print(markdown(watched, wall))
        print(f"\nStored: Glasshouse spans by kind {dict(spans)}; aw-server buckets {aw_stored}.")
        if args.json:
            raw = {
                "seconds": wall,
                "load_before": load_before,
                "load_after": load_after,
                "script": vars(script),
                "spans": dict(spans),
                "aw_buckets": aw_stored,
                "processes": {
                    w.label: {
                        "cpu_seconds": w.cpu_after - w.cpu_before,
                        "startup_cpu_seconds": w.startup_cpu,
                        "rss_samples": w.rss,
                        "pss_samples": w.pss,
                        "uss_samples": w.uss,
                    }
                    for w in watched
                },
            }
            args.json.write_text(json.dumps(raw, indent=1))
    except BaseException:
        keep = True  # the logs, for the traceback's message
        raise
    finally:
        for p in children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for proc in reversed(desk.procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        xvfb.terminate()
        xvfb.wait(timeout=10)
        server.stop()
        if keep:
            print(f"logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
