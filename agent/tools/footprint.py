"""Measure the agent's own CPU and memory from outside, under scripted desktop activity.

Starts Xvfb + openbox + two xterms, the in-test protocol server, `glasshouse-agent run` and
`glasshouse-agent session`, switches focus and retitles a window every few seconds for
--seconds, then prints CPU (share of one core, from /proc via psutil) and RSS of both agent
processes. Run from agent/:  .venv/bin/python -m tools.footprint --seconds 600
Not a test (no timing thresholds in tests); the numbers go into the README by hand."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from tests.agentproc import AgentEnv
from tests.conftest import policy_doc
from tests.desktop import Desktop, _start_xvfb, _wm_ready, wait_for
from tests.fakeserver import FakeServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--switch-every", type=float, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="gha-footprint-"))
    xvfb, display = _start_xvfb()
    desk = Desktop(display)
    server = FakeServer().start()
    agent = AgentEnv(root, str(root))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        desk.procs.append(subprocess.Popen(["openbox"], env=desk.env, stderr=subprocess.DEVNULL))
        wait_for(lambda: _wm_ready(display), timeout=15)
        desk.xterm("FootA", "Document A")
        desk.xterm("FootB", "Document B")
        server.set_policy(policy_doc(idle_threshold_seconds=60))
        server.add_token("tok")
        assert agent.run("enroll", "--server", server.url, "--token", "tok").returncode == 0
        procs.append(agent.start("run", "--utmp", str(root / "utmp")))
        procs.append(agent.start("session", DISPLAY=display))
        time.sleep(3)  # let imports and connections settle before measuring
        watched = [psutil.Process(p.pid) for p in procs]
        before = [p.cpu_times() for p in watched]
        start = time.monotonic()
        peak = [0, 0]
        n = 0
        while time.monotonic() - start < args.seconds:
            n += 1
            cls = "FootA" if n % 2 else "FootB"
            desk.activate(cls)
            if n % 3 == 0:
                desk.retitle(cls, f"Document {cls} rev {n}")
            if n % 4 == 0:
                desk.xdotool("mousemove", str(100 + n % 400), "200")
            for i, p in enumerate(watched):
                peak[i] = max(peak[i], p.memory_info().rss)
            time.sleep(args.switch_every)
        wall = time.monotonic() - start
        after = [p.cpu_times() for p in watched]
        result: dict[str, object] = {}
        for name, p, b, a, pk in zip(("service", "session"), watched, before, after, peak, strict=True):
            cpu = (a.user + a.system) - (b.user + b.system)
            result[name] = {
                "cpu_percent_of_one_core": round(100 * cpu / wall, 3),
                "rss_mb": round(p.memory_info().rss / 1e6, 1),
                "peak_rss_mb": round(pk / 1e6, 1),
                # Unique set size: what the process alone costs (RSS counts shared libraries).
                "uss_mb": round(p.memory_full_info().uss / 1e6, 1),
            }
        result["seconds"] = round(wall)
        result["focus_switches"] = n
        result["spans_received"] = len(server.state.spans())
        print(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        for proc in reversed(desk.procs):
            proc.terminate()
            proc.wait(timeout=10)
        xvfb.terminate()
        xvfb.wait(timeout=10)
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
