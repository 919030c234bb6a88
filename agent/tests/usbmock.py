"""Simulated USB devices for the USB control tests, and a real USBGuard daemon to plug them into.

Devices are umockdev definitions (the format `umockdev-record` writes) with real USB
descriptors built here. `UsbGuardDaemon` runs Debian's `usbguard-daemon` with its umockdev
backend, entirely in a temporary directory (its own daemon.conf and RuleFile; the machine's
/etc/usbguard is never read or written), under `umockdev-wrapper`: a device is plugged by
hard-linking its definition into the watched directory and unplugged by removing it.

`make_sysfs_tree` lays out the same devices as a plain sysfs-like directory for the sysfs
fallback (the layout the umockdev testbed and the kernel use)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USBGUARD_TOOLS = ("usbguard", "usbguard-daemon", "usbguard-rule-parser", "umockdev-wrapper")
_PCI = "/devices/pci0000:00/0000:00:14.0"


def require_usbguard() -> None:
    missing = [t for t in USBGUARD_TOOLS if shutil.which(t) is None]
    reason = ""
    if missing:
        reason = f"missing {', '.join(missing)} (run scripts/setup-agent-test-deps.sh as root)"
    elif os.geteuid() != 0:
        reason = "the USBGuard daemon needs root"
    if not reason:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class UsbDev:
    vid: int
    pid: int
    interfaces: tuple[tuple[int, int, int], ...]
    serial: str = ""
    manufacturer: str = "Acme"
    product: str = "Gadget"
    device_class: int = 0

    @property
    def ids(self) -> tuple[str, str]:
        return f"{self.vid:04x}", f"{self.pid:04x}"


STICK = UsbDev(0x0781, 0x5567, ((0x08, 0x06, 0x50),), "4C530001234", "SanDisk", "Cruzer Blade")
OTHER_STICK = UsbDev(0x0781, 0x5567, ((0x08, 0x06, 0x50),), "4C530009999", "SanDisk", "Cruzer Blade")
KEYBOARD = UsbDev(0x046D, 0xC31C, ((0x03, 0x01, 0x01),), "", "Logitech", "USB Keyboard")
MOUSE = UsbDev(0x046D, 0xC077, ((0x03, 0x01, 0x02),), "", "Logitech", "USB Optical Mouse")
DUCKY = UsbDev(0x1337, 0x0001, ((0x03, 0x00, 0x01), (0x08, 0x06, 0x50)), "DUCK1", "Hak5", "Composite Injector")
PHONE = UsbDev(0x18D1, 0x4EE1, ((0x06, 0x01, 0x01),), "PHONE1", "Google", "Pixel")
PRINTER = UsbDev(0x03F0, 0x0C17, ((0x07, 0x01, 0x02),), "PRN1", "HP", "LaserJet")
NIC = UsbDev(0x0BDA, 0x8153, ((0xFF, 0xFF, 0x00), (0x02, 0x06, 0x00), (0x0A, 0x00, 0x00)), "NIC1", "Realtek", "LAN")
WEBCAM = UsbDev(0x046D, 0x0825, ((0x0E, 0x01, 0x00), (0x0E, 0x02, 0x00)), "CAM1", "Logitech", "Webcam")
HUB = UsbDev(0x05E3, 0x0610, ((0x09, 0x00, 0x00),), "", "Genesys", "USB2.0 Hub", device_class=0x09)
ROOT_HUB = UsbDev(0x1D6B, 0x0002, ((0x09, 0x00, 0x00),), "0000:00:14.0", "Linux xhci-hcd", "xHCI", device_class=0x09)


def descriptors(dev: UsbDev) -> bytes:
    device = struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, 0x0200, dev.device_class, 0, 0, 64, dev.vid, dev.pid, 0x0100, 1, 2, 3, 1
    )
    body = b""
    for number, (cls, sub, proto) in enumerate(dev.interfaces):
        body += struct.pack("<BBBBBBBBB", 9, 4, number, 0, 1, cls, sub, proto, 0)
        body += struct.pack("<BBBBHB", 7, 5, 0x81, 3, 8, 10)
    config = struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), len(dev.interfaces), 1, 0, 0x80, 50)
    return device + config + body


def umockdev_text(dev: UsbDev, sysfs_path: str, devnum: int) -> str:
    blob = descriptors(dev).hex().upper()
    lines = [
        f"P: {sysfs_path}",
        f"N: bus/usb/001/{devnum:03d}={blob}",
        "E: BUSNUM=001",
        f"E: DEVNAME=/dev/bus/usb/001/{devnum:03d}",
        f"E: DEVNUM={devnum:03d}",
        "E: DEVTYPE=usb_device",
        "E: DRIVER=usb",
        f"E: PRODUCT={dev.vid:x}/{dev.pid:x}/100",
        "E: SUBSYSTEM=usb",
        "A: authorized=1",
        "A: bConfigurationValue=1",
        f"A: bDeviceClass={dev.device_class:02x}",
        f"A: bNumInterfaces= {len(dev.interfaces)}",
        "A: busnum=1",
        f"H: descriptors={blob}",
        f"A: devnum={devnum}",
        f"A: idProduct={dev.pid:04x}",
        f"A: idVendor={dev.vid:04x}",
        f"A: manufacturer={dev.manufacturer}",
        f"A: product={dev.product}",
        "A: speed=480",
    ]
    if dev.serial:
        lines.append(f"A: serial={dev.serial}")
    if dev.device_class == 0x09:
        lines += ["A: authorized_default=1", "A: interface_authorized_default=1", "A: maxchild=4"]
    return "\n".join(lines) + "\n\n"


def base_text() -> str:
    pci = "\n".join(
        [f"P: {_PCI}", "E: DRIVER=xhci_hcd", "E: PCI_CLASS=C0330", "E: SUBSYSTEM=pci", "A: class=0x0c0330", ""]
    )
    return pci + "\n" + umockdev_text(ROOT_HUB, f"{_PCI}/usb1", 1)


@dataclass
class Plugged:
    dev: UsbDev
    port: str
    link: Path


@dataclass
class UsbGuardDaemon:
    """usbguard-daemon (umockdev backend) in `root`; talk to it with the `usbguard` command."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    plugged: list[Plugged] = field(default_factory=list)
    _ports: Iterator[int] = field(default_factory=lambda: itertools.count(2))

    @property
    def devdir(self) -> Path:
        return self.root / "devices"

    @property
    def rule_file(self) -> Path:
        return self.root / "rules.conf"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def testbed_sysfs(self) -> str:
        """The testbed's sysfs (the daemon makes it under our TMPDIR): vendor names, authorized."""
        for entry in (self.root / "tmp").iterdir():
            if entry.name.startswith("umockdev.") and (entry / "sys").is_dir():
                return str(entry / "sys")
        raise AssertionError("no umockdev testbed")

    def start(self, rules: str = "") -> UsbGuardDaemon:
        self.devdir.mkdir(parents=True, exist_ok=True)
        (self.root / "defs").mkdir(exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        base = self.root / "defs" / "base.umockdev"
        base.write_text(base_text())
        if not (self.devdir / "base.umockdev").exists():
            os.link(base, self.devdir / "base.umockdev")
        if not self.rule_file.exists():
            self.rule_file.write_text(rules)
        os.chmod(self.rule_file, 0o600)
        conf = self.root / "daemon.conf"
        conf.write_text(
            "\n".join(
                [
                    f"RuleFile={self.rule_file}",
                    "ImplicitPolicyTarget=block",
                    "PresentDevicePolicy=apply-policy",
                    "PresentControllerPolicy=allow",
                    "InsertedDevicePolicy=apply-policy",
                    "RestoreControllerDeviceState=false",
                    "DeviceManagerBackend=umockdev",
                    "IPCAllowedUsers=root",
                    "IPCAllowedGroups=root",
                    "DeviceRulesWithPort=false",
                    "AuditBackend=FileAudit",
                    f"AuditFilePath={self.root / 'audit.log'}",
                    "",
                ]
            )
        )
        os.chmod(conf, 0o600)
        env = {**os.environ, "USBGUARD_UMOCKDEV_DEVICEDIR": str(self.devdir), "TMPDIR": str(self.root / "tmp")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["umockdev-wrapper", "usbguard-daemon", "-d", "-k", "-P", "-c", str(conf)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until(lambda: any('via-port "usb1"' in d for d in self.list_devices()), 20, "the root hub")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; daemon log:\n{self.log.read_text(errors='replace')[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def usbguard(self, *args: str) -> str:
        out = subprocess.run(["usbguard", *args], capture_output=True, text=True, timeout=15, check=False)
        return out.stdout

    def list_devices(self) -> list[str]:
        return [line for line in self.usbguard("list-devices").splitlines() if line.strip()]

    def rules(self) -> list[str]:
        return [line.split(": ", 1)[1] for line in self.usbguard("list-rules").splitlines() if ": " in line]

    def plug(self, dev: UsbDev) -> Plugged:
        number = next(self._ports)
        port = f"1-{number}"
        definition = self.root / "defs" / f"{port}.umockdev"
        definition.write_text(umockdev_text(dev, f"{_PCI}/usb1/{port}", number))
        link = self.devdir / f"{port}.umockdev"
        os.link(definition, link)  # a hard link: the daemon sees the file complete (cp races)
        plugged = Plugged(dev, port, link)
        self.plugged.append(plugged)
        wait_until(lambda: self.target(port) is not None, 15, f"the daemon to see {port}")
        return plugged

    def unplug(self, plugged: Plugged) -> None:
        plugged.link.unlink()
        wait_until(lambda: self.target(plugged.port) is None, 15, f"the daemon to drop {plugged.port}")

    def target(self, port: str) -> str | None:
        """allow/block for the device on `port` as the daemon has it now (None: not there)."""
        for line in self.list_devices():
            if f'via-port "{port}"' in line:
                return line.split(": ", 1)[1].split(" ", 1)[0]
        return None

    def settled_target(self, port: str, timeout: float = 10.0) -> str | None:
        """The target once it stops changing (an insertion is evaluated a moment after it shows)."""
        last, since = self.target(port), time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.target(port)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= 0.6:
                break
        return last


@contextlib.contextmanager
def usbguard_daemon(rules: str = "") -> Iterator[UsbGuardDaemon]:
    require_usbguard()
    busy = subprocess.run(["pgrep", "-x", "usbguard-daemon"], capture_output=True, text=True, check=False).stdout
    if busy.strip():
        # USBGuard's IPC name is machine-wide: a second daemon would answer our commands.
        reason = f"another usbguard-daemon is running (pid {busy.split()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="gh-usbguard-"))
    daemon = UsbGuardDaemon(root)
    try:
        daemon.start(rules)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_sysfs_tree(root: Path, devices: dict[str, UsbDev]) -> Path:
    """A sysfs-like tree: devices/.../usb1/<port> with attributes, bus/usb/devices/ symlinks."""
    devices_dir = root / "bus" / "usb" / "devices"
    devices_dir.mkdir(parents=True, exist_ok=True)
    add_sysfs_device(root, "usb1", ROOT_HUB)
    (root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1" / "authorized_default").write_text("1\n")
    for port, dev in devices.items():
        add_sysfs_device(root, port, dev)
    return root


def add_sysfs_device(root: Path, port: str, dev: UsbDev) -> Path:
    base = root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1"
    path = base if port == "usb1" else base / port
    path.mkdir(parents=True, exist_ok=True)
    # Like the kernel: a new device starts as its bus's authorized_default says.
    default = base / "authorized_default"
    authorized = "0" if port != "usb1" and default.exists() and default.read_text().strip() == "0" else "1"
    attrs = {
        "idVendor": f"{dev.vid:04x}",
        "idProduct": f"{dev.pid:04x}",
        "manufacturer": dev.manufacturer,
        "product": dev.product,
        "authorized": authorized,
        "bDeviceClass": f"{dev.device_class:02x}",
    }
    if dev.serial:
        attrs["serial"] = dev.serial
    for name, value in attrs.items():
        (path / name).write_text(value + "\n")
    (path / "descriptors").write_bytes(descriptors(dev))
    link = root / "bus" / "usb" / "devices" / port
    if not link.exists():
        link.symlink_to(os.path.relpath(path, link.parent))
    return path


def remove_sysfs_device(root: Path, port: str) -> None:
    (root / "bus" / "usb" / "devices" / port).unlink()
    shutil.rmtree(root / "devices" / "pci0000:00" / "0000:00:14.0" / "usb1" / port)
