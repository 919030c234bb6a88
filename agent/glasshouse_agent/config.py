"""Where the agent keeps its enrolment (server URL, device id and key) and where the service
keeps its state. The key is a secret: the file is written 0600, atomically, so a crash never
leaves a half-written credential."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

DEFAULT_CONFIG = "/etc/glasshouse-agent/config.json"
DEFAULT_STATE_DIR = "/var/lib/glasshouse-agent"
CONFIG_ENV = "GLASSHOUSE_AGENT_CONFIG"
STATE_DIR_ENV = "GLASSHOUSE_AGENT_STATE_DIR"
SOCKET_ENV = "GLASSHOUSE_AGENT_SOCKET"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    server: str
    device_id: str
    device_key: str
    ca_file: str | None = None


def config_path(explicit: str | None) -> str:
    return explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def state_dir(explicit: str | None) -> str:
    return explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def load(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} does not exist: enroll first (glasshouse-agent enroll --server URL --token T)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        return Config(
            server=str(data["server"]),
            device_id=str(data["device_id"]),
            device_key=str(data["device_key"]),
            ca_file=data.get("ca_file"),
        )
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is incomplete: {exc}") from exc


def save(path: str, config: Config) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(config), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
