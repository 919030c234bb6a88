"""Where the USB verdicts are enforced.

USBGuard (preferred): the agent replaces the daemon's rule set through its IPC (the `usbguard`
command: `append-rule` writes the daemon's RuleFile, so the rules survive a daemon restart and
keep being enforced when the agent is stopped). While the rules are swapped the daemon's
InsertedDevicePolicy is `block`, so nothing plugged in during the swap is let through by a half
rule set; then every present device is set to the policy's verdict (USBGuard evaluates rules
only when a device appears, not when rules change). Device events come from `usbguard watch`.

sysfs (no USBGuard): `authorized_default` = 0 on every bus, so a new device stays unauthorised
until the agent allows it (also while the agent is not running), and `authorized` = 0/1 per
device. The device list is polled."""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from glasshouse_agent.usb.device import Device, list_sysfs, parse_device_rule, read_sysfs_device, sysfs_devices_dir

log = logging.getLogger(__name__)

Decider = Callable[[Device], bool]  # True: the device should be authorised


class BackendError(Exception):
    pass


class UsbGuard:
    name = "usbguard"

    def __init__(self, program: str = "usbguard", *, timeout: float = 15.0) -> None:
        self.program = program
        self.timeout = timeout

    def _run(self, *args: str) -> str:
        try:
            result = subprocess.run(  # noqa: S603 - a fixed program with arguments we built
                [self.program, *args], capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"{self.program} {args[0]}: {exc}") from exc
        if result.returncode != 0:
            raise BackendError(
                f"{self.program} {' '.join(args[:1])} failed: {(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    def available(self) -> bool:
        if shutil.which(self.program) is None:
            return False
        try:
            self._run("list-rules")
        except BackendError:
            return False
        return True

    def rules(self) -> list[tuple[int, str]]:
        out = []
        for line in self._run("list-rules").splitlines():
            number, sep, rule = line.partition(": ")
            if sep and number.strip().isdigit():
                out.append((int(number), rule.strip()))
        return out

    def devices(self) -> list[Device]:
        out = []
        for line in self._run("list-devices").splitlines():
            number, sep, rule = line.partition(": ")
            if sep and number.strip().isdigit():
                try:
                    out.append(parse_device_rule(rule, int(number)))
                except ValueError as exc:
                    log.warning("unreadable USBGuard device: %s", exc)
        return out

    def set_rules(self, rules: list[str]) -> bool:
        """Make the daemon's rule set exactly `rules`. False when it already was."""
        current = self.rules()
        if [rule for _, rule in current] == rules:
            return False
        self._run("set-parameter", "InsertedDevicePolicy", "block")
        try:
            for number, _ in current:
                self._run("remove-rule", str(number))
            for rule in rules:
                self._run("append-rule", rule)
        finally:
            # Left at "block" if we die here: fail closed until the daemon restarts.
            self._run("set-parameter", "InsertedDevicePolicy", "apply-policy")
        return True

    def authorize(self, device: Device, allow: bool) -> None:
        if device.id is None:
            raise BackendError("a USBGuard device needs its id")
        self._run("allow-device" if allow else "block-device", str(device.id))

    def reconcile(self, should_allow: Decider) -> list[Device]:
        """Set every present device to its verdict; returns the devices that were changed."""
        changed = []
        for device in self.devices():
            allow = should_allow(device)
            if (device.target == "allow") != allow:
                self.authorize(device, allow)
                changed.append(device)
        return changed


@dataclass
class WatchEvent:
    kind: str  # PresenceChanged, PolicyChanged, PolicyApplied, Connected
    device_id: int | None = None
    fields: dict[str, str] = field(default_factory=dict)


_HEADER = re.compile(r"\[device\] (\w+): id=(\d+)")
_NEEDED = {"PresenceChanged": "device_rule", "PolicyChanged": "rule_id", "PolicyApplied": "rule_id"}


class UsbGuardWatch:
    """`usbguard watch -w` on a pseudo-terminal (so its output is line-buffered), parsed into
    events. It reconnects by itself when the daemon restarts ("[IPC] Connected" again)."""

    def __init__(self, program: str = "usbguard") -> None:
        master, slave = pty.openpty()
        # No echo, no CR added to each line.
        with contextlib.suppress(Exception):
            import termios

            attrs = termios.tcgetattr(slave)
            attrs[1] &= ~termios.ONLCR
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(  # noqa: S603
            [program, "watch", "-w"], stdout=slave, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, close_fds=True
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.fd = master
        self._buf = b""
        self._current: WatchEvent | None = None

    def fileno(self) -> int:
        return self.fd

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self) -> list[WatchEvent]:
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self._buf += chunk
        except BlockingIOError:
            pass
        except OSError:  # EIO: the other end is gone
            pass
        *lines, self._buf = self._buf.split(b"\n")
        events: list[WatchEvent] = []
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith("[IPC] Connected"):
                events.append(WatchEvent("Connected"))
                continue
            header = _HEADER.match(line)
            if header:
                self._current = WatchEvent(header.group(1), int(header.group(2)))
                continue
            if self._current is not None and line.startswith(" ") and "=" in line:
                key, _, value = line.strip().partition("=")
                self._current.fields[key] = value
                if key == _NEEDED.get(self._current.kind):
                    events.append(self._current)
                    self._current = None
        return events

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Sysfs:
    """Kernel USB authorisation, for machines without USBGuard."""

    name = "sysfs"

    def __init__(self, root: str = "/sys") -> None:
        self.root = root

    def available(self) -> bool:
        return os.path.isdir(sysfs_devices_dir(self.root))

    def devices(self) -> list[Device]:
        out = []
        for name in list_sysfs(self.root):
            device = read_sysfs_device(self.root, name)
            if device is not None:
                out.append(device)
        return out

    def set_rules(self, rules: list[str]) -> bool:
        """No rules here: new devices start unauthorised (authorized_default = 0 on every bus)
        and the agent decides each one."""
        changed = False
        for name in list_sysfs(self.root):
            if name.startswith("usb"):
                path = os.path.join(sysfs_devices_dir(self.root), name, "authorized_default")
                changed |= _write_if_different(path, "0")
        return changed

    def authorize(self, device: Device, allow: bool) -> None:
        path = os.path.join(sysfs_devices_dir(self.root), device.port, "authorized")
        try:
            _write_if_different(path, "1" if allow else "0")
        except OSError as exc:
            raise BackendError(f"cannot write {path}: {exc}") from exc

    def reconcile(self, should_allow: Decider) -> list[Device]:
        changed = []
        for device in self.devices():
            if device.port.startswith("usb"):
                continue  # a root hub is the bus itself
            allow = should_allow(device)
            if (device.target == "allow") != allow:
                self.authorize(device, allow)
                changed.append(device)
        return changed


def _write_if_different(path: str, value: str) -> bool:
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() == value:
                return False
    except OSError:
        if not os.path.exists(path):
            return False
    with open(path, "w", encoding="ascii") as f:
        f.write(value)
    return True
