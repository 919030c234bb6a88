"""`glasshouse-agent status`: what an administrator (or the person at the machine) needs to see
at a glance: is this device enrolled, what does the policy collect, is data flowing, and what
do the agent's own processes cost in CPU and memory."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any

import psutil

from glasshouse_agent import config as configmod
from glasshouse_agent.policy import PolicyError, parse_policy
from glasshouse_agent.spool import Spool


def _processes(procs: list[tuple[int, str]], sample_seconds: float) -> list[dict[str, Any]]:
    """CPU now (over one shared sampling interval), CPU averaged over the process's life, and
    resident memory, measured from outside the processes as an administrator would."""
    live: list[tuple[psutil.Process, str]] = []
    out: list[dict[str, Any]] = []
    for pid, role in procs:
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)
            live.append((proc, role))
        except (psutil.Error, OSError):
            out.append({"pid": pid, "role": role, "running": False})
    if live:
        time.sleep(sample_seconds)
    for proc, role in live:
        try:
            with proc.oneshot():
                now_pct = proc.cpu_percent(None)
                times = proc.cpu_times()
                age = max(1e-6, time.time() - proc.create_time())
                rss = proc.memory_info().rss
        except (psutil.Error, OSError):
            out.append({"pid": proc.pid, "role": role, "running": False})
            continue
        out.append(
            {
                "pid": proc.pid,
                "role": role,
                "running": True,
                "cpu_percent_now": round(now_pct, 2),
                "cpu_percent_average": round(100.0 * (times.user + times.system) / age, 3),
                "rss_bytes": rss,
            }
        )
    return out


def collect_status(config_path: str, spool_path: str, *, sample_seconds: float = 1.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        cfg = configmod.load(config_path)
        out["enrolled"] = True
        out["server"] = cfg.server
        out["device_id"] = cfg.device_id
    except configmod.ConfigError as exc:
        out["enrolled"] = False
        out["enrolment_problem"] = str(exc)
    if not os.path.exists(spool_path):
        out["spool"] = None
        return out
    try:
        spool = Spool(spool_path)
        stats = spool.stats()
    except (OSError, sqlite3.Error) as exc:
        out["spool"] = None
        out["spool_problem"] = f"cannot read {spool_path}: {exc} (the spool is readable by root only)"
        return out
    try:
        out["spool"] = {
            "path": spool_path,
            "queued": stats.queued,
            "in_flight": stats.in_flight,
            "pending_batches": stats.pending_batches,
            "gaps": stats.gaps,
            "quarantined": stats.quarantined,
            "open_spans": stats.open_spans,
        }
        last = spool.get("last_upload")
        out["last_upload"] = float(last) if last else None
        out["last_acked_seq"] = int(spool.get("last_acked_seq") or 0) or None
        out["revoked"] = spool.get("revoked")
        raw = spool.get("policy")
        try:
            out["policy"] = parse_policy(json.loads(raw)).to_json() if raw else None
        except (PolicyError, ValueError):
            out["policy"] = None
        out["policy_etag"] = spool.get("policy_etag")
        procs: list[tuple[int, str]] = []
        service_pid = spool.get("service_pid")
        if service_pid:
            procs.append((int(service_pid), "service"))
        for entry in json.loads(spool.get("sessions") or "[]"):
            procs.append((int(entry["pid"]), f"session helper (uid {entry['uid']})"))
    finally:
        spool.close()
    out["processes"] = _processes(procs, sample_seconds)
    return out


def render(status: dict[str, Any]) -> str:
    lines = []
    if status.get("enrolled"):
        lines.append(f"enrolled:     yes, device {status['device_id']} at {status['server']}")
    else:
        lines.append(f"enrolled:     no ({status.get('enrolment_problem')})")
    spool = status.get("spool")
    if spool is None:
        lines.append(f"spool:        {status.get('spool_problem') or 'none yet (the service has not run)'}")
        return "\n".join(lines) + "\n"
    if status.get("revoked"):
        lines.append(f"uploads:      STOPPED, the server refused this device ({status['revoked']})")
    last = status.get("last_upload")
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(last)) if last else "never"
    lines.append(f"last upload:  {when} (last acknowledged batch {status.get('last_acked_seq') or '-'})")
    lines.append(
        f"spool:        {spool['queued']} queued, {spool['in_flight']} in {spool['pending_batches']} unacknowledged "
        f"batch(es), {spool['open_spans']} open, {spool['gaps']} gap(s), {spool['quarantined']} quarantined"
    )
    policy = status.get("policy")
    if policy is None:
        lines.append("policy:       none received yet: collecting nothing")
    else:
        c = policy["collect"]
        on = [name for name in ("window", "titles", "idle", "sessions") if c.get(name)]
        sched = policy["schedule"]
        when_text = (
            "always"
            if sched["mode"] == "always"
            else (f"{','.join(sched['days'])} {sched['start']}-{sched['end']} {sched['time_zone']}")
        )
        lines.append(
            f"policy:       collects {', '.join(on) or 'nothing'}; idle after {policy['idle_threshold_seconds']:.0f}s; "
            f"{when_text}"
        )
    procs = status.get("processes") or []
    if not procs:
        lines.append("processes:    the service is not running")
    for p in procs:
        if not p["running"]:
            lines.append(f"  {p['role']}: pid {p['pid']} not running")
            continue
        lines.append(
            f"  {p['role']}: pid {p['pid']}, CPU {p['cpu_percent_now']:.1f}% now / "
            f"{p['cpu_percent_average']:.2f}% average, RSS {p['rss_bytes'] / 1e6:.1f} MB"
        )
    return "\n".join(lines) + "\n"
