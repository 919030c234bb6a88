"""Managed browser policy for the web rules in force, and removal of exactly what was written.

| browser | file (under `root`, "/" on a real system) | keys |
|---|---|---|
| Chromium (Debian) | `etc/chromium/policies/managed/glasshouse.json` | `URLBlocklist`, `URLAllowlist` |
| Google Chrome | `etc/opt/chrome/policies/managed/glasshouse.json` | `URLBlocklist`, `URLAllowlist` |
| Firefox | `etc/firefox/policies/policies.json` | `policies.WebsiteFilter.Block` / `.Exceptions` |

The two Chromium files are the agent's own: written whole, deleted when no rule is in force.
Firefox reads one `policies.json` that an administrator may share with other tools, so the agent
merges into it: it adds its entries, remembers which entries it added (the state, kept by the
caller in the spool), removes only those later, and never rewrites a file it cannot parse.
Directories it had to create are removed again once empty. Writes are atomic (a temporary file
renamed over the old one), mode 0644: browsers run as the user and must read them.

Chromium's filter format: `[scheme://][.]host[:port][/path][?query]`; a bare host matches the
domain and its subdomains (a domain rule), a leading dot only that host (used for URL rules,
which are prefixes of one site's URLs). Firefox uses WebExtension match patterns, which cannot
name a port: a URL rule with a port applies to every port of that host there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from glasshouse_agent.web.rules import WebRule

log = logging.getLogger(__name__)

POLICY_FILE_NAME = "glasshouse.json"
CHROMIUM_POLICY_DIRS = ("etc/chromium/policies/managed", "etc/opt/chrome/policies/managed")
FIREFOX_POLICY_FILE = "etc/firefox/policies/policies.json"

State = dict[str, Any]


class WriterError(Exception):
    """A policy file the agent must not touch (for example a policies.json that does not parse)."""


def chromium_filters(rules: Sequence[WebRule]) -> tuple[list[str], list[str]]:
    """(URLBlocklist, URLAllowlist) entries for the rules, in rule order, without duplicates."""
    block: list[str] = []
    allow: list[str] = []
    for rule in rules:
        entry = rule.value if rule.kind == "domain" else _chromium_url(rule.value)
        target = block if rule.action == "block" else allow
        if entry not in target:
            target.append(entry)
    return block, allow


def _chromium_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = f".{parts.hostname}" + (f":{parts.port}" if parts.port is not None else "")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def firefox_patterns(rules: Sequence[WebRule]) -> tuple[list[str], list[str]]:
    """(WebsiteFilter.Block, WebsiteFilter.Exceptions) match patterns for the rules."""
    block: list[str] = []
    allow: list[str] = []
    for rule in rules:
        if rule.kind == "domain":
            entry = f"*://*.{rule.value}/*"
        else:
            parts = urlsplit(rule.value)
            query = f"?{parts.query}" if parts.query else ""
            entry = f"{parts.scheme}://{parts.hostname}{parts.path or '/'}{query}*"
        target = block if rule.action == "block" else allow
        if entry not in target:
            target.append(entry)
    return block, allow


class ManagedPolicyWriter:
    """Writes the managed policy files for a set of rules. `load_state`/`save_state` keep what
    was written (which files, which Firefox entries, which directories) across restarts."""

    def __init__(self, root: str, load_state: Callable[[], State], save_state: Callable[[State], None]) -> None:
        self.root = root
        self._load_state = load_state
        self._save_state = save_state

    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative)

    @property
    def chromium_files(self) -> list[str]:
        return [self.path(os.path.join(d, POLICY_FILE_NAME)) for d in CHROMIUM_POLICY_DIRS]

    @property
    def firefox_file(self) -> str:
        return self.path(FIREFOX_POLICY_FILE)

    def write(self, rules: Sequence[WebRule]) -> None:
        """Make the files say exactly `rules` (those in force now); no rules: remove what the
        agent wrote. Raises OSError or WriterError; the state records what did succeed."""
        state = self._load_state()
        created: list[str] = list(state.get("created_dirs", []))
        try:
            block, allow = chromium_filters(rules)
            written: list[str] = list(state.get("chromium", []))
            for path in self.chromium_files:
                if block or allow:
                    doc: dict[str, Any] = {}
                    if block:
                        doc["URLBlocklist"] = block
                    if allow:
                        doc["URLAllowlist"] = allow
                    self._makedirs(os.path.dirname(path), created)
                    if path not in written:
                        written.append(path)
                        state["chromium"] = written  # recorded before the file exists
                    write_json(path, doc)
                elif path in written:
                    # Only a file this agent wrote is removed: a test run or another install
                    # with a fresh spool never deletes what it did not write.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    written.remove(path)
            state["chromium"] = written
            state["firefox"] = self._firefox(*firefox_patterns(rules), state.get("firefox", {}), created)
        finally:
            state["created_dirs"] = self._prune(created)
            self._save_state(state)

    def _firefox(self, block: list[str], exceptions: list[str], ours: State, created: list[str]) -> State:
        path = self.firefox_file
        previous = {"Block": list(ours.get("Block", [])), "Exceptions": list(ours.get("Exceptions", []))}
        if not block and not exceptions and not any(previous.values()) and not ours.get("created_file"):
            return {}  # nothing to add and nothing of ours to take out: leave the file alone
        created_file = bool(ours.get("created_file"))
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            doc, created_file = {}, True
        except (OSError, ValueError) as exc:
            raise WriterError(f"{path} cannot be read as JSON ({exc}); it is left as it is") from exc
        if not isinstance(doc, dict) or not isinstance(doc.setdefault("policies", {}), dict):
            raise WriterError(f"{path} is not a Firefox policies.json; it is left as it is")
        policies: dict[str, Any] = doc["policies"]
        site_filter = policies.get("WebsiteFilter", {})
        if not isinstance(site_filter, dict):
            raise WriterError(f"{path}: policies.WebsiteFilter is not an object; it is left as it is")
        added: State = {}
        for key, wanted in (("Block", block), ("Exceptions", exceptions)):
            current = site_filter.get(key, [])
            if not isinstance(current, list):
                raise WriterError(f"{path}: WebsiteFilter.{key} is not a list; it is left as it is")
            others = [entry for entry in current if entry not in previous[key]]
            mine = [entry for entry in wanted if entry not in others]
            if others or mine:
                site_filter[key] = others + mine
            else:
                site_filter.pop(key, None)
            added[key] = mine
        if site_filter:
            policies["WebsiteFilter"] = site_filter
        else:
            policies.pop("WebsiteFilter", None)
        if created_file and not policies and len(doc) == 1:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return {}
        self._makedirs(os.path.dirname(path), created)
        write_json(path, doc)
        return {**added, "created_file": created_file} if any(added.values()) or created_file else {}

    @staticmethod
    def _makedirs(path: str, created: list[str]) -> None:
        missing: list[str] = []
        head = path
        while head and not os.path.isdir(head):
            missing.append(head)
            head = os.path.dirname(head)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # noqa: S103 - whatever the umask: browsers run as the user and read it
            created.append(directory)

    @staticmethod
    def _prune(created: list[str]) -> list[str]:
        """Remove the directories the agent created once they are empty (deepest first)."""
        kept = []
        for directory in sorted(set(created), key=len, reverse=True):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError:
                kept.append(directory)  # not empty: something of ours or someone else's is in it
        return sorted(kept)


def write_json(path: str, doc: dict[str, Any]) -> None:
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        if fh.read() == data:
            return  # unchanged: do not make the browsers reload their policy
    fd, tmp = tempfile.mkstemp(prefix=".glasshouse-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
