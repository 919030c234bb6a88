"""Run the real `glasshouse-agent` command as a subprocess, with every path under a test
directory, the way the systemd unit and the XDG autostart entry run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

AGENT = [sys.executable, "-m", "glasshouse_agent"]


class AgentEnv:
    def __init__(self, root: Path, socket_dir: str) -> None:
        self.root = root
        self.config = root / "etc" / "config.json"
        self.state = root / "state"
        self.socket = os.path.join(socket_dir, "session.sock")
        self.logs: list[Path] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "GLASSHOUSE_AGENT_CONFIG": str(self.config),
            "GLASSHOUSE_AGENT_STATE_DIR": str(self.state),
            "GLASSHOUSE_AGENT_SOCKET": self.socket,
            **extra,
        }

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AGENT, *args], env=self.env(**extra), capture_output=True, text=True, timeout=60)

    def start(self, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        log = self.root / f"{args[0]}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            return subprocess.Popen([*AGENT, *args], env=self.env(**extra), stdout=out, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any]:
        out = self.run("status", "--json", "--sample", "0.5")
        return dict(json.loads(out.stdout))

    def log_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')}" for p in self.logs if p.exists())
