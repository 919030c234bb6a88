"""`glasshouse-agent browser-install`: what the browsers need to find the agent, written as root
once at install time (and again after an upgrade that changes it).

- Native messaging host manifests, so the browser may start `glasshouse-agent-browser-host` for
  the Glasshouse extension (and for no other extension: `allowed_origins`):
  `/etc/chromium/native-messaging-hosts/com.glasshouse.agent.json` (Debian's Chromium) and
  `/etc/opt/chrome/native-messaging-hosts/com.glasshouse.agent.json` (Google Chrome).
- With `--update-url`, the force-install policy: `ExtensionInstallForcelist` in
  `/etc/{chromium,opt/chrome}/policies/managed/glasshouse-extension.json`, so the extension is
  installed for every profile and the user cannot remove or disable it.
- The directories the service writes the web filter into (`policies/managed` of both, and
  `/etc/firefox/policies`): the hardened unit (ProtectSystem=strict, ReadWritePaths= on those
  trees) can write there but cannot create them.

`--remove` takes out the manifests and the force-install files again (the web filter files are
the service's: it removes them when no rule is in force).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from glasshouse_agent.web import HOST_NAME
from glasshouse_agent.web.writer import CHROMIUM_POLICY_DIRS, FIREFOX_POLICY_FILE, write_json

# The id Chromium derives from the public key in browser-extension/manifest.json ("key"): the
# development key, whose private half was not kept (see browser-extension/README.md). A release
# signed with another key has another id: pass it with --extension-id.
DEV_EXTENSION_ID = "gndbpfgmnclihbbpkkkddjgapaankoho"
DEFAULT_HOST_PATH = "/usr/bin/glasshouse-agent-browser-host"
HOST_MANIFEST_DIRS = ("etc/chromium/native-messaging-hosts", "etc/opt/chrome/native-messaging-hosts")
FORCELIST_FILE = "glasshouse-extension.json"


def extension_id(public_key_der: bytes) -> str:
    """Chromium's extension id for a public key: the first 128 bits of its SHA-256, as a-p."""
    import hashlib

    digest = hashlib.sha256(public_key_der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def host_manifest(host_path: str, ext_id: str) -> dict[str, Any]:
    return {
        "name": HOST_NAME,
        "description": "Glasshouse agent: receives the active tab's site from the Glasshouse extension",
        "path": host_path,
        "type": "stdio",
        "allowed_origins": [f"chrome-extension://{ext_id}/"],
    }


def forcelist_policy(ext_id: str, update_url: str) -> dict[str, Any]:
    return {"ExtensionInstallForcelist": [f"{ext_id};{update_url}"]}


@dataclass
class Installed:
    written: list[str]
    removed: list[str]


def install(
    root: str = "/",
    *,
    host_path: str = DEFAULT_HOST_PATH,
    ext_id: str = DEV_EXTENSION_ID,
    update_url: str | None = None,
) -> Installed:
    if len(ext_id) != 32 or any(not "a" <= c <= "p" for c in ext_id):
        raise ValueError(f"{ext_id!r} is not an extension id (32 letters a-p)")
    if not os.path.isabs(host_path):
        raise ValueError("the host path must be absolute (browsers start it without a shell)")
    if update_url is not None and not update_url.startswith(("https://", "http://", "file://")):
        raise ValueError("--update-url must be an https:// (or file://) URL of an update manifest")
    done = Installed([], [])
    for directory in HOST_MANIFEST_DIRS:
        path = os.path.join(root, directory, f"{HOST_NAME}.json")
        _mkdirs(os.path.dirname(path))
        write_json(path, host_manifest(host_path, ext_id))
        done.written.append(path)
    for directory in CHROMIUM_POLICY_DIRS:
        _mkdirs(os.path.join(root, directory))
        path = os.path.join(root, directory, FORCELIST_FILE)
        if update_url is not None:
            write_json(path, forcelist_policy(ext_id, update_url))
            done.written.append(path)
    _mkdirs(os.path.dirname(os.path.join(root, FIREFOX_POLICY_FILE)))
    return done


def remove(root: str = "/") -> Installed:
    done = Installed([], [])
    paths = [os.path.join(root, d, f"{HOST_NAME}.json") for d in HOST_MANIFEST_DIRS]
    paths += [os.path.join(root, d, FORCELIST_FILE) for d in CHROMIUM_POLICY_DIRS]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            done.removed.append(path)
    return done


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def describe(done: Installed) -> str:
    lines = [f"wrote {p}" for p in done.written] + [f"removed {p}" for p in done.removed]
    return "\n".join(lines) + ("\n" if lines else "")
