"""Realistic, deterministic agent activity for the demo organisation, replayed through the real
agent API: each person gets an enrolment token (devices.actions), one device enrols with it over
`POST /api/agent/v1/enroll`, reads its policy and uploads gzip batches of closed window, idle and
session spans, exactly as a fleet of agents coming back online with N days in their spools would.

Nothing here writes spans itself: they go through the same URL, middleware, authentication,
validation and event sink as a real agent's. The one direct write is a silent device's
`last_seen_at`, put back to when its agent last called in (every API call sets it to now, so a
replay could not otherwise show an agent that has been silent for days).

Deterministic: every choice comes from `random.Random` seeded with the seed, the person's
employee number and the local date, so a day always replays the same way. Idempotent: the
credential each "agent" received is kept in a small JSON file (as a real agent keeps its own),
and a re-run sends only spans that start after the newest span already acknowledged for the
device; the ingest API is idempotent on (device, spool_id, batch_seq) as well (these replays send
no spool_id, as an agent from before spool ids did).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import re
import time
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from glasshouse.activity.models import Span
from glasshouse.devices.actions import do_create_token, do_update_policy, hash_secret, policy_snapshot
from glasshouse.devices.models import SILENT_AFTER_SECONDS, AgentPolicy, Device
from glasshouse.devices.policy import default_policy
from glasshouse.org.models import Person, PersonStatus, Team

DEFAULT_SEED = 20250101
AGENT_VERSION = "0.1.0"
OLD_AGENT_VERSION = "0.0.9"
MAX_BATCH_SPANS = 1000  # the protocol's cap; a policy may lower it
DAY = 86400.0

SpanDict = dict[str, Any]
# Point events (docs/agent-protocol.md, "Events in batches") travel beside the spans in the
# replay's plans, with start == end == their time, and go out in a batch's `events`.
EVENT_KINDS = ("usb", "file")
# USB sticks people plug in now and then: (vid, pid, vendor, product).
STICKS = (
    ("0781", "5567", "SanDisk", "Cruzer Blade"),
    ("0951", "1666", "Kingston", "DataTraveler 3.0"),
    ("058f", "6387", "Alcor Micro", "Flash Drive"),
)
COPIED_FILES = ("Q3 forecast.xlsx", "board-deck.pptx", "contract-signed.pdf", "photos.zip", "handover notes.docx")

# --- applications ------------------------------------------------------------------------------
# How each agent backend names an application: X11 WM_CLASS, the Windows exe name, the macOS
# localized name, with the executable path the agent reports.
AppNames = dict[str, tuple[str, str]]


def _apps(linux: tuple[str, str], windows: tuple[str, str], macos: tuple[str, str]) -> AppNames:
    return {"linux": linux, "windows": windows, "macos": macos}


_WIN_PF = "C:\\Program Files"
_WIN_OFFICE = _WIN_PF + "\\Microsoft Office\\root\\Office16"

APPS: dict[str, AppNames] = {
    "firefox": _apps(
        ("firefox", "/usr/lib/firefox/firefox"),
        ("firefox", _WIN_PF + "\\Mozilla Firefox\\firefox.exe"),
        ("Firefox", "/Applications/Firefox.app/Contents/MacOS/firefox"),
    ),
    "chrome": _apps(
        ("Google-chrome", "/opt/google/chrome/chrome"),
        ("chrome", _WIN_PF + "\\Google\\Chrome\\Application\\chrome.exe"),
        ("Google Chrome", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"),
    ),
    "editor": _apps(
        ("Code", "/usr/share/code/code"),
        ("Code", _WIN_PF + "\\Microsoft VS Code\\Code.exe"),
        ("Code", "/Applications/Visual Studio Code.app/Contents/MacOS/Electron"),
    ),
    "ide": _apps(
        ("jetbrains-pycharm", "/opt/pycharm/bin/pycharm"),
        ("pycharm64", _WIN_PF + "\\JetBrains\\PyCharm\\bin\\pycharm64.exe"),
        ("PyCharm", "/Applications/PyCharm.app/Contents/MacOS/pycharm"),
    ),
    "mobile_ide": _apps(
        ("jetbrains-studio", "/opt/android-studio/bin/studio"),
        ("studio64", _WIN_PF + "\\Android\\Android Studio\\bin\\studio64.exe"),
        ("Xcode", "/Applications/Xcode.app/Contents/MacOS/Xcode"),
    ),
    "terminal": _apps(
        ("gnome-terminal-server", "/usr/libexec/gnome-terminal-server"),
        ("WindowsTerminal", _WIN_PF + "\\WindowsApps\\Microsoft.WindowsTerminal\\WindowsTerminal.exe"),
        ("iTerm2", "/Applications/iTerm.app/Contents/MacOS/iTerm2"),
    ),
    "slack": _apps(
        ("Slack", "/usr/lib/slack/slack"),
        ("slack", "C:\\Users\\Public\\AppData\\Local\\slack\\slack.exe"),
        ("Slack", "/Applications/Slack.app/Contents/MacOS/Slack"),
    ),
    "zoom": _apps(
        ("zoom", "/opt/zoom/zoom"),
        ("Zoom", "C:\\Users\\Public\\AppData\\Roaming\\Zoom\\bin\\Zoom.exe"),
        ("zoom.us", "/Applications/zoom.us.app/Contents/MacOS/zoom.us"),
    ),
    "email": _apps(
        ("thunderbird", "/usr/lib/thunderbird/thunderbird"),
        ("OUTLOOK", _WIN_OFFICE + "\\OUTLOOK.EXE"),
        ("Microsoft Outlook", "/Applications/Microsoft Outlook.app/Contents/MacOS/Microsoft Outlook"),
    ),
    "sheets": _apps(
        ("libreoffice-calc", "/usr/lib/libreoffice/program/soffice.bin"),
        ("EXCEL", _WIN_OFFICE + "\\EXCEL.EXE"),
        ("Microsoft Excel", "/Applications/Microsoft Excel.app/Contents/MacOS/Microsoft Excel"),
    ),
    "docs": _apps(
        ("libreoffice-writer", "/usr/lib/libreoffice/program/soffice.bin"),
        ("WINWORD", _WIN_OFFICE + "\\WINWORD.EXE"),
        ("Microsoft Word", "/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word"),
    ),
    "pdf": _apps(
        ("evince", "/usr/bin/evince"),
        ("Acrobat", _WIN_PF + "\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe"),
        ("Adobe Acrobat", "/Applications/Adobe Acrobat DC/Adobe Acrobat.app/Contents/MacOS/AdobeAcrobat"),
    ),
    "figma": _apps(
        ("figma-linux", "/opt/figma-linux/figma-linux"),
        ("Figma", "C:\\Users\\Public\\AppData\\Local\\Figma\\Figma.exe"),
        ("Figma", "/Applications/Figma.app/Contents/MacOS/Figma"),
    ),
    "database": _apps(
        ("DBeaver", "/usr/share/dbeaver-ce/dbeaver"),
        ("dbeaver", _WIN_PF + "\\DBeaver\\dbeaver.exe"),
        ("DBeaver", "/Applications/DBeaver.app/Contents/MacOS/dbeaver"),
    ),
    "remote": _apps(
        ("org.remmina.Remmina", "/usr/bin/remmina"),
        ("mstsc", "C:\\Windows\\System32\\mstsc.exe"),
        (
            "Microsoft Remote Desktop",
            "/Applications/Microsoft Remote Desktop.app/Contents/MacOS/Microsoft Remote Desktop",
        ),
    ),
    "wireshark": _apps(
        ("Wireshark", "/usr/bin/wireshark"),
        ("Wireshark", _WIN_PF + "\\Wireshark\\Wireshark.exe"),
        ("Wireshark", "/Applications/Wireshark.app/Contents/MacOS/Wireshark"),
    ),
    "files": _apps(
        ("org.gnome.Nautilus", "/usr/bin/nautilus"),
        ("explorer", "C:\\Windows\\explorer.exe"),
        ("Finder", "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder"),
    ),
    "music": _apps(
        ("Spotify", "/usr/share/spotify/spotify"),
        ("Spotify", "C:\\Users\\Public\\AppData\\Roaming\\Spotify\\Spotify.exe"),
        ("Spotify", "/Applications/Spotify.app/Contents/MacOS/Spotify"),
    ),
}
BROWSER_SUFFIX = {"firefox": " — Mozilla Firefox", "chrome": " - Google Chrome"}

# Window titles. Placeholders: {n} a number, {repo}, {channel}, {customer}, {user}, {host}, {email}.
TITLES: dict[str, tuple[str, ...]] = {
    "editor": (
        "api.py - {repo} - Visual Studio Code",
        "rollups.py - {repo} - Visual Studio Code",
        "test_{n}.py - {repo} - Visual Studio Code",
        "README.md - {repo} - Visual Studio Code",
        "settings.json - {repo} - Visual Studio Code",
        "Dockerfile - {repo} - Visual Studio Code",
    ),
    "ide": ("{repo} - models.py", "{repo} - views.py", "{repo} - test_{n}.py", "{repo} - pipeline.py"),
    "mobile_ide": ("NorthwindApp - MainActivity.kt", "NorthwindApp - SyncWorker.kt", "NorthwindApp - build.gradle"),
    "terminal": ("{user}@{host}: ~/src/{repo}", "{user}@{host}: ~", "ssh deploy@build-{n}", "htop"),
    "slack": ("#{channel} - Northwind Analytics - Slack", "Direct messages - Northwind Analytics - Slack"),
    "zoom": ("Zoom Meeting", "Zoom Workplace", "Zoom Meeting - {customer}"),
    "email": ("Inbox - {email}", "RE: {customer} follow-up", "Calendar - {email}", "Drafts - {email}"),
    "sheets": ("Q3 forecast.xlsx", "Pipeline {customer}.xlsx", "Budget 2025.xlsx", "Headcount plan.xlsx"),
    "docs": ("Contract {customer} v{n}.docx", "Policy draft.docx", "Meeting notes.docx"),
    "pdf": ("MSA {customer}.pdf", "Invoice {n}.pdf", "DPA {customer} signed.pdf"),
    "figma": ("Checkout flow - Figma", "Design system - Figma", "Onboarding v{n} - Figma", "Dashboard - Figma"),
    "database": ("DBeaver - warehouse - events_{n}", "DBeaver - analytics - SQL Editor"),
    "remote": ("Remmina - srv-{n}", "Remote Desktop - helpdesk-{n}"),
    "wireshark": ("Capturing from eth0", "capture-{n}.pcapng"),
    "files": ("Downloads", "Documents", "Shared drive"),
    "music": ("Spotify Premium", "Spotify"),
}
BROWSER_TITLES: dict[str, tuple[str, ...]] = {
    "eng": (
        "Pull request #{n} · northwind/{repo} · GitHub",
        "PLAT-{n}: flaky test in CI - Jira",
        "python - How to {channel} - Stack Overflow",
        "Django documentation",
        "Grafana - Service overview",
        "Actions · northwind/{repo} · GitHub",
    ),
    "data": (
        "Airflow - DAGs",
        "JupyterLab - analysis_{n}.ipynb",
        "dbt Docs",
        "DATA-{n}: backfill events - Jira",
        "Pull request #{n} · northwind/{repo} · GitHub",
    ),
    "mobile": (
        "Pull request #{n} · northwind/mobile · GitHub",
        "Firebase console - Crashlytics",
        "App Store Connect - TestFlight",
        "Google Play Console - Releases",
        "MOB-{n}: sync fails offline - Jira",
    ),
    "design": ("Dribbble - Discover", "Design review - Notion", "Unsplash", "DES-{n} - Jira"),
    "product": (
        "PROD-{n}: roadmap item - Jira",
        "Product requirements - Confluence",
        "Roadmap 2025 - Google Sheets",
        "User interview notes - Google Docs",
        "Amplitude - Retention",
    ),
    "sales": (
        "Opportunity: {customer} | Salesforce",
        "Accounts | Salesforce",
        "Sales Navigator | LinkedIn",
        "{customer} - Google Search",
        "Quote {n} - DocuSign",
    ),
    "support": (
        "Ticket #{n} - {customer} - Zendesk",
        "Views - Zendesk",
        "Health score - {customer} - Gainsight",
        "Knowledge base - Confluence",
    ),
    "marketing": (
        "HubSpot - Campaigns",
        "Google Analytics - Acquisition",
        "Canva - Social post {n}",
        "WordPress - Edit post",
        "LinkedIn - Northwind Analytics",
    ),
    "finance": ("NetSuite - Journal entries", "Bank portal - Payments", "Expensify - Reports", "Invoice {n} - Stripe"),
    "legal": ("Contract {customer} - Ironclad", "EUR-Lex - GDPR", "Legal hold - Confluence"),
    "people": (
        "Greenhouse - Candidates",
        "Workday - Time off",
        "Onboarding checklist - Notion",
        "Payroll - Personio",
    ),
    "it": (
        "Google Admin console",
        "ITSD-{n}: laptop request - Jira Service Management",
        "Intune - Devices",
        "Okta - Directory",
    ),
    "security": (
        "Splunk - Search",
        "CVE-2025-{n} - NVD",
        "SEC-{n}: phishing report - Jira",
        "CrowdStrike - Detections",
    ),
    "general": (
        "Board deck - Google Slides",
        "Company OKRs - Google Sheets",
        "Weekly update - Google Docs",
        "Calendar - Week",
    ),
}
# A little personal browsing for everyone.
LEISURE_TITLES = ("YouTube", "BBC News - Home", "The Guardian", "Amazon.co.uk: Basket", "Wikipedia")
REPOS = ("glasshouse", "platform", "ingest", "webapp", "mobile", "pipelines", "infra")
CHANNELS = ("general", "engineering", "incidents", "random", "deploys", "sales", "design-crit", "support")
CUSTOMERS = ("Acme Corp", "Globex", "Initech", "Umbrella", "Stark Industries", "Wayne Enterprises", "Hooli")


@dataclass(frozen=True)
class Activity:
    app: str  # a key of APPS, or "browser" for the person's browser
    weight: float
    minutes: tuple[float, float]  # how long one stretch of focus lasts


def _acts(*items: tuple[str, float, float, float]) -> tuple[Activity, ...]:
    return tuple(Activity(app, weight, (lo, hi)) for app, weight, lo, hi in items)


PROFILES: dict[str, tuple[Activity, ...]] = {
    "eng": _acts(
        ("editor", 30, 6, 23),
        ("terminal", 14, 2, 10),
        ("browser", 18, 2, 10),
        ("slack", 14, 1, 3),
        ("zoom", 5, 25, 55),
        ("email", 3, 2, 5),
        ("music", 1, 1, 3),
    ),
    "data": _acts(
        ("ide", 18, 6, 20),
        ("database", 12, 4, 16),
        ("browser", 20, 3, 13),
        ("terminal", 10, 2, 8),
        ("slack", 12, 1, 3),
        ("zoom", 6, 25, 55),
        ("email", 3, 2, 5),
    ),
    "mobile": _acts(
        ("mobile_ide", 28, 8, 23),
        ("browser", 15, 2, 10),
        ("terminal", 8, 2, 6),
        ("slack", 12, 1, 3),
        ("zoom", 6, 25, 55),
        ("figma", 3, 2, 6),
    ),
    "design": _acts(
        ("figma", 38, 8, 26),
        ("browser", 12, 2, 10),
        ("slack", 14, 1, 3),
        ("zoom", 8, 25, 55),
        ("files", 3, 1, 3),
        ("email", 3, 2, 5),
        ("music", 1, 1, 3),
    ),
    "product": _acts(
        ("browser", 32, 4, 16),
        ("slack", 16, 1, 4),
        ("zoom", 18, 25, 55),
        ("figma", 6, 4, 10),
        ("email", 8, 2, 6),
        ("sheets", 4, 4, 13),
    ),
    "sales": _acts(
        ("browser", 30, 4, 16),
        ("zoom", 20, 20, 50),
        ("email", 18, 2, 8),
        ("slack", 10, 1, 3),
        ("sheets", 6, 4, 13),
        ("docs", 3, 4, 10),
    ),
    "support": _acts(("browser", 40, 4, 16), ("slack", 18, 1, 3), ("zoom", 10, 20, 45), ("email", 12, 2, 6)),
    "marketing": _acts(
        ("browser", 30, 4, 16),
        ("figma", 8, 4, 13),
        ("slack", 14, 1, 3),
        ("zoom", 10, 25, 50),
        ("email", 10, 2, 6),
        ("sheets", 5, 4, 10),
    ),
    "finance": _acts(
        ("sheets", 35, 8, 26),
        ("browser", 18, 3, 10),
        ("email", 15, 2, 6),
        ("slack", 8, 1, 3),
        ("zoom", 8, 25, 50),
        ("pdf", 6, 2, 6),
    ),
    "legal": _acts(
        ("docs", 32, 8, 26),
        ("pdf", 16, 4, 13),
        ("email", 20, 2, 8),
        ("browser", 12, 3, 10),
        ("zoom", 10, 25, 55),
        ("slack", 6, 1, 3),
    ),
    "people": _acts(
        ("browser", 30, 4, 13),
        ("email", 18, 2, 6),
        ("zoom", 16, 25, 50),
        ("slack", 12, 1, 3),
        ("docs", 6, 4, 10),
        ("sheets", 6, 4, 10),
    ),
    "it": _acts(
        ("browser", 24, 3, 10),
        ("terminal", 20, 2, 10),
        ("remote", 10, 4, 16),
        ("slack", 14, 1, 3),
        ("zoom", 6, 20, 45),
        ("email", 8, 2, 5),
        ("files", 3, 1, 3),
    ),
    "security": _acts(
        ("terminal", 22, 3, 13),
        ("browser", 26, 3, 13),
        ("wireshark", 6, 4, 13),
        ("editor", 8, 4, 13),
        ("slack", 12, 1, 3),
        ("zoom", 6, 25, 50),
        ("email", 6, 2, 5),
    ),
    "general": _acts(
        ("email", 24, 2, 8),
        ("browser", 22, 3, 12),
        ("zoom", 24, 25, 55),
        ("slack", 16, 1, 3),
        ("sheets", 5, 4, 13),
        ("docs", 5, 4, 13),
    ),
}
# The first keyword found in a team's name, or its ancestors' names, picks the profile.
TEAM_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("design", "design"),
    ("mobile", "mobile"),
    ("data", "data"),
    ("quality", "eng"),
    ("platform", "eng"),
    ("web", "eng"),
    ("engineering", "eng"),
    ("sales", "sales"),
    ("customer", "support"),
    ("support", "support"),
    ("marketing", "marketing"),
    ("product", "product"),
    ("finance", "finance"),
    ("legal", "legal"),
    ("people", "people"),
    ("hr", "people"),
    ("security", "security"),
    ("it", "it"),
)
# (linux, windows, macos) weights per profile.
OS_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "eng": (6, 1, 4),
    "data": (6, 1, 3),
    "mobile": (3, 1, 6),
    "design": (0, 1, 9),
    "product": (1, 4, 5),
    "sales": (0, 6, 4),
    "support": (1, 6, 3),
    "marketing": (0, 4, 6),
    "finance": (0, 9, 1),
    "legal": (0, 8, 2),
    "people": (0, 6, 4),
    "it": (8, 2, 0),
    "security": (8, 1, 1),
    "general": (0, 5, 5),
}
OS_NAMES = ("linux", "windows", "macos")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- who does what -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Habits:
    """One person's device and working habits, fixed by the seed and their employee number."""

    profile: str
    os: str
    browser: str
    laptop: bool
    hostname: str
    username: str
    agent_version: str
    has_device: bool  # False: nobody installed the agent (the inventory shows the gap)
    after_hours: bool  # works some evenings
    weekend: bool  # works some weekend days
    silent_days: int  # > 0: the agent stopped calling in this many days before the end
    meetings: float  # meeting weight multiplier (people with reports meet more)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _profile_for(team: Team | None) -> str:
    chain = [team, *team.ancestors()] if team is not None else []
    for t in chain:
        words = set(re.split(r"[^a-z0-9]+", t.name.lower()))
        for keyword, profile in TEAM_KEYWORDS:
            if keyword in words:
                return profile
    return "general"


def plan_habits(person: Person, *, seed: int, is_manager: bool = False) -> Habits:
    rng = random.Random(f"{seed}:habits:{person.employee_number}")  # noqa: S311 - demo data, not secrets
    profile = _profile_for(person.team)
    os_name = rng.choices(OS_NAMES, weights=OS_WEIGHTS[profile])[0]
    first, _, last = person.full_name.partition(" ")
    username = (_slug(first)[:1] + _slug(last or first))[:20] or "user"
    laptop = person.is_remote or profile in ("sales", "general") or rng.random() < 0.6
    digits = re.sub(r"\D", "", person.employee_number)[-3:] or f"{rng.randrange(1000):03d}"
    has_device = rng.random() >= 0.05
    silent_days = 0
    if person.status == PersonStatus.ON_LEAVE:
        silent_days = rng.randint(8, 20)  # the laptop has been shut since their leave began
    elif rng.random() < 0.03:
        silent_days = rng.randint(2, 6)
    return Habits(
        profile=profile,
        os=os_name,
        browser="firefox" if os_name == "linux" and rng.random() < 0.7 else "chrome",
        laptop=laptop,
        hostname=f"{username}-{'lt' if laptop else 'ws'}{digits}",
        username=username,
        agent_version=OLD_AGENT_VERSION if rng.random() < 0.08 else AGENT_VERSION,
        has_device=has_device,
        after_hours=rng.random() < 0.10,
        weekend=rng.random() < 0.06,
        silent_days=silent_days,
        meetings=2.0 if is_manager else 1.0,
    )


# --- one person's days -------------------------------------------------------------------------


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _at(day: dt.date, clock: dt.time, zone: zoneinfo.ZoneInfo) -> float:
    return dt.datetime.combine(day, clock, tzinfo=zone).timestamp()


@dataclass
class DayWriter:
    """Builds the spans of one local day of one person, as the agent's collectors and merger
    would have closed them: contiguous window focus spans while the person is at the keyboard,
    idle/active spans from the idle collector, session events at login, lock, unlock, logout."""

    person: Person
    habits: Habits
    rng: random.Random
    idle_threshold: float
    spans: list[SpanDict] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def session(self, start: float, end: float, *, first: str, last: str, lunch: bool) -> None:
        rng = self.rng
        if end - start < 600:
            return
        self.event(start, first)
        breaks: list[tuple[float, float]] = []
        if lunch and end - start > 5 * 3600:
            mid = start + (end - start) / 2 + rng.uniform(-45, 30) * 60
            length = rng.uniform(30, 60) * 60 if rng.random() < 0.9 else rng.uniform(10, 15) * 60
            breaks.append((mid, mid + length))
        for _ in range(rng.randint(1, 3) if end - start > 3 * 3600 else rng.randint(0, 1)):
            for _attempt in range(5):
                b0 = rng.uniform(start + 1800, end - 1800)
                b1 = b0 + self.idle_threshold + rng.uniform(60, 900)
                if b1 < end - 600 and all(b1 + 600 < s or b0 > e + 600 for s, e in breaks):
                    breaks.append((b0, b1))
                    break
        breaks.sort()
        cursor = start
        for b0, b1 in breaks:
            idle_from = b0 + self.idle_threshold
            self.active(cursor, idle_from)
            self.idle(idle_from, b1)
            if b1 - b0 > 25 * 60:  # a long break: the screen locked itself
                self.event(idle_from, "lock")
                self.event(b1, "unlock")
            cursor = b1
        self.active(cursor, end)
        if lunch and rng.random() < 0.07:  # now and then a stick is plugged in at work
            self.usb_stick(rng.uniform(start + 1800, max(start + 1801, end - 1800)))
        self.event(end, last)

    def usb_stick(self, t: float) -> None:
        """A stick plugged in, a few files written to it, pulled out. The verdict (and whether
        files could be written) is the policy's; `apply_policy` decides it."""
        rng = self.rng
        vid, pid, vendor, product = rng.choice(STICKS)
        stick = {"vid": vid, "pid": pid, "serial": f"{rng.randrange(16**10):010X}", "vendor": vendor}
        stick |= {"product": product, "class": "storage", "user": self.habits.username, "port": "1-2"}
        self.spans.append({"kind": "usb", "start": round(t, 3), "end": round(t, 3), "action": "insert", **stick})
        label = f"/media/{self.habits.username}/{vendor.upper().replace(' ', '')}"
        for n, name in enumerate(rng.sample(COPIED_FILES, rng.randint(1, 3))):
            at = round(t + 20 + 15 * n + rng.uniform(0, 10), 3)
            self.spans.append(
                {
                    "kind": "file",
                    "start": at,
                    "end": at,
                    "path": f"{label}/{name}",
                    "size": rng.randrange(20_000, 40_000_000),
                    "exe": "/usr/bin/nautilus",
                    "user": self.habits.username,
                    "mount": label,
                }
            )
        out = round(t + 300 + rng.uniform(0, 600), 3)
        self.spans.append({"kind": "usb", "start": out, "end": out, "action": "remove", **stick})

    def event(self, t: float, event: str) -> None:
        self.spans.append(
            {"kind": "session", "start": round(t, 3), "end": round(t, 3), "event": event, "user": self.habits.username}
        )

    def idle(self, start: float, end: float) -> None:
        self.spans.append({"kind": "idle", "start": round(start, 3), "end": round(end, 3), "state": "idle"})

    def active(self, start: float, end: float) -> None:
        if end <= start:
            return
        self.spans.append({"kind": "idle", "start": round(start, 3), "end": round(end, 3), "state": "active"})
        activities = PROFILES[self.habits.profile]
        weights = [a.weight * (self.habits.meetings if a.app == "zoom" else 1.0) for a in activities]
        rng = self.rng
        t = start
        previous = ""
        while t < end:
            activity = rng.choices(activities, weights=weights)[0]
            if activity.app == previous and activity.app != "browser":
                activity = rng.choices(activities, weights=weights)[0]
            previous = activity.app
            stop = min(end, t + rng.uniform(*activity.minutes) * 60 + rng.uniform(0, 30))
            if end - stop < 90:
                stop = end  # no slivers: the last app keeps focus until the break
            self.spans.append(self.window(activity.app, t, stop))
            t = stop

    def window(self, key: str, start: float, end: float) -> SpanDict:
        h, rng = self.habits, self.rng
        app_key = h.browser if key == "browser" else key
        app, exe = APPS[app_key][h.os]
        pid = self.pids.setdefault(app_key, rng.randrange(1200, 64000))
        if key == "browser":
            pool = LEISURE_TITLES if rng.random() < 0.05 else BROWSER_TITLES[h.profile]
            title = rng.choice(pool) + BROWSER_SUFFIX[app_key]
        else:
            title = rng.choice(TITLES[key])
        title = title.format(
            n=rng.randrange(100, 400),
            repo=rng.choice(REPOS),
            channel=rng.choice(CHANNELS),
            customer=rng.choice(CUSTOMERS),
            user=h.username,
            host=h.hostname,
            email=self.person.email,
        )
        return {
            "kind": "window",
            "start": round(start, 3),
            "end": round(end, 3),
            "app": app,
            "exe": exe,
            "pid": pid,
            "title": title,
        }


def person_day(person: Person, habits: Habits, day: dt.date, *, seed: int, idle_threshold: float) -> list[SpanDict]:
    """Every span of the sessions that start on `day` (local) for this person, unsorted."""
    rng = random.Random(f"{seed}:day:{person.employee_number}:{day.isoformat()}")  # noqa: S311 - demo data
    zone = _zone(person.time_zone)
    writer = DayWriter(person, habits, rng, idle_threshold)
    weekday = WEEKDAYS[day.weekday()]
    works_today = weekday in person.work_days_list and rng.random() >= 0.04  # a few days off
    if works_today:
        start = _at(day, person.work_start, zone) + rng.uniform(-20, 25) * 60
        end_day = day + dt.timedelta(days=1) if person.work_end <= person.work_start else day
        end = _at(end_day, person.work_end, zone) + rng.uniform(-30, 45) * 60
        writer.session(start, end, first="login", last="logout", lunch=True)
        if habits.after_hours and rng.random() < 0.35:
            evening = _at(day, dt.time(20, 0), zone) + rng.uniform(0, 120) * 60
            if evening > end + 3600:
                writer.session(evening, evening + rng.uniform(30, 100) * 60, first="unlock", last="lock", lunch=False)
    elif habits.weekend and weekday in ("sat", "sun") and rng.random() < 0.5:
        begin = _at(day, dt.time(10, 0), zone) + rng.uniform(0, 300) * 60
        writer.session(begin, begin + rng.uniform(45, 180) * 60, first="unlock", last="lock", lunch=False)
    return writer.spans


# --- what the agent's policy lets through ------------------------------------------------------


def schedule_windows(schedule: dict[str, Any], start: float, end: float) -> list[tuple[float, float]]:
    """The UTC intervals between `start` and `end` that a working-hours policy covers."""
    zone = _zone(str(schedule.get("time_zone", "UTC")))
    days = set(schedule.get("days", ()))
    open_at = dt.time.fromisoformat(str(schedule.get("start", "09:00")))
    close_at = dt.time.fromisoformat(str(schedule.get("end", "17:00")))
    out: list[tuple[float, float]] = []
    day = dt.datetime.fromtimestamp(start, zone).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(end, zone).date()
    while day <= last:
        if WEEKDAYS[day.weekday()] in days:
            close_day = day + dt.timedelta(days=1) if close_at <= open_at else day
            out.append((_at(day, open_at, zone), _at(close_day, close_at, zone)))
        day += dt.timedelta(days=1)
    return out


def apply_policy(spans: list[SpanDict], document: dict[str, Any], os_name: str) -> list[SpanDict]:
    """What an agent under `document` would have collected of `spans`: no kinds it may not
    collect, no titles unless allowed (and never on macOS, whose backend cannot read them),
    nothing outside working hours under a working-hours schedule."""
    collect = document["collect"]
    kinds = {
        "window": bool(collect.get("window")),
        "idle": bool(collect.get("idle")),
        "session": bool(collect.get("sessions")),
    }
    titles = bool(collect.get("titles")) and os_name != "macos"
    events = _usb_verdicts([s for s in spans if s["kind"] in EVENT_KINDS], document)
    kept = [s for s in spans if kinds.get(s["kind"], False)]
    if not titles:
        kept = [{k: v for k, v in s.items() if k != "title"} for s in kept]
    schedule = document.get("schedule", {})
    if schedule.get("mode") != "working_hours" or not kept:
        return kept + events
    windows = schedule_windows(schedule, min(s["start"] for s in kept), max(s["end"] for s in kept))
    clipped: list[SpanDict] = []
    for s in kept:
        for w0, w1 in windows:
            if s["kind"] == "session":
                if w0 <= s["start"] <= w1:
                    clipped.append(s)
                    break
                continue
            a, b = max(s["start"], w0), min(s["end"], w1)
            if b > a:
                clipped.append({**s, "start": round(a, 3), "end": round(b, 3)})
    # Device control is enforced at all hours, so its events are not clipped to the schedule.
    return clipped + events


def _usb_verdicts(events: list[SpanDict], document: dict[str, Any]) -> list[SpanDict]:
    """The verdict the agent would have given each stick under the document's `usb` section,
    and only the file writes that section let happen (storage allowed, files recorded)."""
    usb = document.get("usb", {})
    storage = usb.get("classes", {}).get("storage", "allow")
    allowed = {(a["vid"], a["pid"], a["serial"]) for a in usb.get("allow", [])}
    verdict = {"allow": "allowed", "block": "blocked", "read_only": "read_only"}[storage]
    track = bool(document.get("removable", {}).get("track_files"))
    out: list[SpanDict] = []
    for e in events:
        if e["kind"] == "usb":
            listed = (e["vid"], e["pid"], e["serial"]) in allowed or (e["vid"], e["pid"], "") in allowed
            out.append({**e, "verdict": "allowed" if listed else verdict})
        elif track and verdict == "allowed":
            out.append(e)
    return out


def sort_key(span: SpanDict) -> tuple[float, int]:
    return span["start"], ("session", "usb", "file", "idle", "window").index(span["kind"])


def pending_spans(spans: list[SpanDict], *, after: float | None, not_before: float, until: float) -> list[SpanDict]:
    """The spans still to send, in order: starting after the newest one acknowledged (`after`),
    not before the replay window, and only the leading run of spans already closed by `until`
    (an open span, and everything starting after it, waits for the next run)."""
    ordered = sorted(spans, key=sort_key)
    out: list[SpanDict] = []
    for s in ordered:
        if s["end"] > until:
            # Spans sharing the open span's start wait with it, or a resume would skip them.
            while out and out[-1]["start"] == s["start"]:
                out.pop()
            break
        if s["start"] < not_before or (after is not None and s["start"] <= after):
            continue
        out.append(s)
    return out


def batches_of(spans: Sequence[SpanDict], size: int) -> Iterator[list[SpanDict]]:
    """Chunks of at most `size` spans that never split spans sharing a start time, so "resume
    after the newest start acknowledged" can never skip the rest of a tie."""
    i = 0
    while i < len(spans):
        cut = min(len(spans), i + size)
        if cut < len(spans):
            while cut > i + 1 and spans[cut]["start"] == spans[cut - 1]["start"]:
                cut -= 1
        yield list(spans[i:cut])
        i = cut


# --- the replay --------------------------------------------------------------------------------


class ReplayError(Exception):
    pass


def ensure_demo_policies() -> list[str]:
    """In the Northwind demo, turn window titles on for Engineering and collect only in working
    hours for Sales EMEA, so the demo shows both policy effects. Done through devices.actions
    (audited), only for teams that exist and have no policy of their own; returns what changed."""
    changes: list[str] = []
    base = policy_snapshot(default_policy())
    wanted: dict[str, dict[str, Any]] = {
        "Engineering": {"collect_titles": True, "collect_window": True},
        "Sales EMEA": {"schedule_mode": "working_hours"},
    }
    for name, override in wanted.items():
        team = Team.objects.filter(name=name).first()
        if team is None or AgentPolicy.objects.filter(team=team).exists():
            continue
        do_update_policy(None, team, {**base, **override})
        changes.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in override.items()))
    return changes


def ensure_demo_controls() -> list[str]:
    """Device control in the Northwind demo, so its pages show policies in force: the default
    records files written to removable media and blocks unknown keyboards and Steam; Finance
    gets read-only storage with one allow-listed encrypted stick; Sales blocks social media in
    working hours. Through controls.actions (versioned, audited); only where the scope still has
    nothing of its own, so a re-run or IT's later edits are left alone. Returns what changed."""
    from glasshouse.controls import actions as controls
    from glasshouse.controls import validation as v
    from glasshouse.controls.models import AppPolicy, UsbPolicy, WebPolicy

    changes: list[str] = []
    default_usb = UsbPolicy.objects.filter(team__isnull=True).first()
    if default_usb is None or not (default_usb.track_files or default_usb.block_unknown_keyboards):
        controls.do_set_usb_options(None, None, classes={}, block_unknown_keyboards=True, track_files=True)
        changes.append("organisation USB: unknown keyboards blocked, files to removable media recorded")
    if not AppPolicy.objects.filter(team__isnull=True, entries__isnull=False).exists():
        controls.do_save_app_policy(None, None, (v.AppEntry("steam"),))
        changes.append("organisation apps: steam blocked")
    finance = Team.objects.filter(name="Finance").first()
    if finance is not None and not UsbPolicy.objects.filter(team=finance).exists():
        controls.do_save_usb_policy(
            None,
            finance,
            v.UsbSettings(
                classes={**v.UsbSettings().classes, "storage": "read_only"},
                block_unknown_keyboards=True,
                track_files=True,
                allow=(v.AllowEntry("0781", "5581", "FIN-0001", "Finance encrypted stick"),),
            ),
        )
        changes.append("Finance USB: storage read-only, one encrypted stick allowed")
    sales = Team.objects.filter(name="Sales").first()
    if sales is not None and not WebPolicy.objects.filter(team=sales).exists():
        rule = v.WebRuleInput(
            "block", "category", "social", ("mon", "tue", "wed", "thu", "fri"), dt.time(9), dt.time(17)
        )
        controls.do_save_web_policy(None, sales, full_urls=False, rules=(rule,))
        changes.append("Sales web: social media blocked 09:00-17:00 on weekdays")
    return changes


# The demo's classification: its applications by what a typical IT team would call them. Sites
# keep to the shipped categories (none here), so the uncategorised queue has something to show.
DEMO_CLASSES: dict[str, tuple[str, ...]] = {
    "productive": (
        "code",
        "jetbrains-pycharm",
        "pycharm64",
        "pycharm",
        "jetbrains-studio",
        "studio64",
        "xcode",
        "gnome-terminal-server",
        "windowsterminal",
        "iterm2",
        "libreoffice-calc",
        "libreoffice-writer",
        "excel",
        "winword",
        "microsoft excel",
        "microsoft word",
        "evince",
        "acrobat",
        "adobe acrobat",
        "figma",
        "figma-linux",
        "dbeaver",
        "wireshark",
        "org.remmina.remmina",
        "mstsc",
    ),
    "neutral": (
        "slack",
        "zoom",
        "zoom.us",
        "thunderbird",
        "outlook",
        "microsoft outlook",
        "org.gnome.nautilus",
        "explorer",
        "finder",
    ),
    "unproductive": ("spotify",),
}


def ensure_demo_classification() -> list[str]:
    """Organisation-wide classification rules for the demo's applications (through
    reports.actions: audited, rollups rewritten), only while there are no rules at all."""
    from glasshouse.activity.models import Category
    from glasshouse.reports import actions as reports
    from glasshouse.reports.models import ClassificationRule, MatchKind

    if ClassificationRule.objects.exists():
        return []
    category = {"productive": Category.PRODUCTIVE, "neutral": Category.NEUTRAL, "unproductive": Category.UNPRODUCTIVE}
    for name, apps in DEMO_CLASSES.items():
        for app in apps:
            reports.do_add_rule(None, None, MatchKind.APP, app, int(category[name]))
    return [f"{len(apps)} applications {name}" for name, apps in DEMO_CLASSES.items()]


@dataclass
class Credential:
    device_id: str
    key: str
    acked_until: float | None = None  # start of the newest span acknowledged


class CredentialStore:
    """The device credentials the replayed agents received, in one JSON file (mode 0600), as
    each real agent keeps its own; keyed by employee number."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[str, Credential] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self.items = {k: Credential(**v) for k, v in raw.items()}
            except (ValueError, TypeError, AttributeError):
                # Unreadable: devices enrolled before are left alone (their keys are lost).
                self.items = {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = {k: vars(v) for k, v in sorted(self.items.items())}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)


def default_credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-agents.json"


def _api_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*":
            return host.lstrip(".")
    return "localhost"


@dataclass
class Totals:
    people: int = 0
    without_device: int = 0
    enrolled: int = 0
    skipped_no_key: int = 0
    up_to_date: int = 0
    batches: int = 0
    spans: int = 0


class Replayer:
    def __init__(
        self,
        *,
        days: int,
        seed: int = DEFAULT_SEED,
        end: dt.datetime | None = None,
        credentials: Path | None = None,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.days = days
        self.seed = seed
        self.end = (end or timezone.now()).timestamp()
        self.begin = self.end - days * DAY
        self.store = CredentialStore(credentials or default_credentials_path())
        self.progress = progress
        # CSRF checks on, as for a real agent (which has no cookies): the agent API must not need them off.
        self.client = Client(enforce_csrf_checks=True, HTTP_HOST=_api_host())
        self.totals = Totals()

    # The agent's three calls, through the real URL, middleware, auth and views.
    def _enroll(self, secret: str, habits: Habits) -> Credential:
        response = self.client.post(
            reverse("agent_api:enroll"),
            {
                "token": secret,
                "hostname": habits.hostname,
                "os": habits.os,
                "agent_version": habits.agent_version,
                "username": habits.username,
            },
            content_type="application/json",
        )
        if response.status_code != 201:
            raise ReplayError(f"enrolment of {habits.hostname} refused: {response.status_code} {response.content!r}")
        body = response.json()
        return Credential(device_id=body["device_id"], key=body["device_key"])

    def _policy(self, cred: Credential) -> dict[str, Any]:
        response = self.client.get(reverse("agent_api:policy"), headers=self._auth(cred))
        if response.status_code != 200:
            raise ReplayError(f"policy for {cred.device_id} refused: {response.status_code} {response.content!r}")
        document: dict[str, Any] = response.json()
        return document

    def _send(self, cred: Credential, seq: int, spans: list[SpanDict]) -> None:
        events = [
            {"time": s["start"], **{k: v for k, v in s.items() if k not in ("start", "end")}}
            for s in spans
            if s["kind"] in EVENT_KINDS
        ]
        batch = {"batch_seq": seq, "spans": [s for s in spans if s["kind"] not in EVENT_KINDS], "events": events}
        body = gzip.compress(json.dumps(batch).encode(), compresslevel=1)
        response = self.client.post(
            reverse("agent_api:batches"),
            body,
            content_type="application/json",
            headers={**self._auth(cred), "Content-Encoding": "gzip"},
        )
        if response.status_code != 200 or response.json().get("accepted_seq") != seq:
            raise ReplayError(f"batch {seq} of {cred.device_id} refused: {response.status_code} {response.content!r}")

    @staticmethod
    def _auth(cred: Credential) -> dict[str, str]:
        return {"Authorization": f"Device {cred.device_id}:{cred.key}"}

    def people(self) -> list[Person]:
        return list(
            Person.objects.exclude(status=PersonStatus.LEFT)
            .select_related("team", "office")
            .order_by("employee_number")
        )

    def run(self) -> Totals:
        people = self.people()
        managers = set(Person.objects.filter(manager__isnull=False).values_list("manager_id", flat=True))
        started = time.monotonic()
        step = max(1, len(people) // 10)
        for i, person in enumerate(people, 1):
            self.totals.people += 1
            self.replay_person(person, plan_habits(person, seed=self.seed, is_manager=person.pk in managers))
            if i % step == 0 or i == len(people):
                elapsed = max(time.monotonic() - started, 1e-6)
                self.progress(
                    f"  people {i}/{len(people)}: {self.totals.spans:,} spans in {self.totals.batches:,} batches, "
                    f"{self.totals.spans / elapsed:,.0f} spans/s"
                )
        return self.totals

    def _device_for(self, person: Person, habits: Habits) -> tuple[Device | None, Credential | None]:
        cred = self.store.items.get(person.employee_number)
        if cred is not None:
            device = Device.objects.filter(pk=cred.device_id, revoked_at__isnull=True).first()
            if device is not None and device.key_hash == hash_secret(cred.key):
                return device, cred
        # A device without a credential we hold (enrolled elsewhere, or the file was lost).
        return Device.objects.filter(person=person, hostname=habits.hostname).first(), None

    def replay_person(self, person: Person, habits: Habits) -> None:
        if not habits.has_device:
            self.totals.without_device += 1
            return
        device, cred = self._device_for(person, habits)
        if device is not None and cred is None:
            self.totals.skipped_no_key += 1
            return
        if cred is None:
            token = do_create_token(
                None,
                label=f"Demo: {person.full_name}'s {'laptop' if habits.laptop else 'workstation'}"[:100],
                expires_at=timezone.now() + dt.timedelta(days=7),
                max_uses=1,
                person=person,
            )
            cred = self._enroll(token.secret, habits)
            self.store.items[person.employee_number] = cred
            self.store.save()
            self.totals.enrolled += 1
            device = Device.objects.get(pk=cred.device_id)
        assert device is not None
        document = self._policy(cred)
        spans = self.plan_spans(person, habits, document, cred)
        if not spans:
            self.totals.up_to_date += 1
        seq = device.last_batch_seq
        size = min(MAX_BATCH_SPANS, int(document.get("upload", {}).get("max_batch_spans", MAX_BATCH_SPANS)))
        for batch in batches_of(spans, size):
            seq += 1
            self._send(cred, seq, batch)
            cred.acked_until = batch[-1]["start"]
            self.totals.batches += 1
            self.totals.spans += len(batch)
        if spans:
            self.store.save()
        if habits.silent_days:
            # Every call above set last_seen_at to now; put back when this agent last called in.
            last = Span.objects.filter(person_id=person.pk, device_id=device.pk).aggregate(m=Max("end"))["m"]
            seen = (last or device.enrolled_at) + dt.timedelta(seconds=20)
            if (timezone.now() - seen).total_seconds() > SILENT_AFTER_SECONDS:
                Device.objects.filter(pk=device.pk).update(last_seen_at=seen)

    def _acked_until(self, person: Person, device_id: str, cred: Credential) -> float | None:
        newest = (
            Span.objects.filter(person_id=person.pk, device_id=device_id)
            .order_by("-start")
            .values_list("start", flat=True)
            .first()
        )
        marks = [m for m in (cred.acked_until, newest.timestamp() if newest else None) if m is not None]
        return max(marks) if marks else None

    def plan_spans(self, person: Person, habits: Habits, document: dict[str, Any], cred: Credential) -> list[SpanDict]:
        until = self.end - habits.silent_days * DAY
        after = self._acked_until(person, cred.device_id, cred)
        start_from = max(self.begin, after) if after is not None else self.begin
        if start_from >= until:
            return []
        zone = _zone(person.time_zone)
        # From the local day before: a night shift that began then may still be running.
        day = dt.datetime.fromtimestamp(start_from, zone).date() - dt.timedelta(days=1)
        last_day = dt.datetime.fromtimestamp(until, zone).date()
        threshold = float(document.get("idle_threshold_seconds", 300))
        raw: list[SpanDict] = []
        while day <= last_day:
            raw += person_day(person, habits, day, seed=self.seed, idle_threshold=threshold)
            day += dt.timedelta(days=1)
        allowed = apply_policy(raw, document, habits.os)
        return pending_spans(allowed, after=after, not_before=self.begin, until=until)
