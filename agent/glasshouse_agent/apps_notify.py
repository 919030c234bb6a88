"""The session helper's side of "tell the user why": the service sends
{"type": "notify", "title": ..., "body": ...} to the helpers of the user concerned (an app of
theirs was closed by policy), and the helper shows it with `notify-send` (libnotify) when that
is installed, or writes it to its log otherwise. Kept apart from glasshouse_agent.apps so the
helper does not import the blocker."""

from __future__ import annotations

import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

MAX_TEXT = 500


class Notifier:
    def __init__(self, command: str = "notify-send") -> None:
        self.command = command
        self._running: list[subprocess.Popen[bytes]] = []

    def show(self, message: dict[str, object]) -> None:
        title, body = message.get("title"), message.get("body")
        if not isinstance(title, str) or not isinstance(body, str):
            return
        title, body = title[:MAX_TEXT], body[:MAX_TEXT]
        log.warning("%s: %s", title, body)
        # Reap earlier notify-send processes; never wait for one (no notification daemon can
        # make it hang until the D-Bus timeout).
        self._running = [p for p in self._running if p.poll() is None]
        tool = shutil.which(self.command)
        if tool is None:
            return
        try:
            self._running.append(
                subprocess.Popen(  # noqa: S603 - a fixed tool; the texts are single argv items
                    [tool, "--app-name=Glasshouse", "--urgency=normal", "--", title, body],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError as exc:
            log.warning("cannot run %s: %s", tool, exc)

    def close(self) -> None:
        for proc in self._running:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._running = []
