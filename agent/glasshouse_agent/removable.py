"""Files copied to removable media, and read-only removable storage (Linux).

- Mounts: /proc/self/mountinfo is watched with poll(POLLPRI) (the kernel flags it on every
  mount change) and diffed. Whether a mount is "removable" is decided from sysfs (the disk's
  `removable` flag, or a USB device among its ancestors, following device-mapper slaves) by
  an injectable `classify` function: loop devices, which the tests use as sticks, say
  removable=0.
- Files: one fanotify group (`FAN_CLASS_NOTIF`, never a permission class, so a stalled agent can
  never block a write) marks each removable file system for `FAN_CLOSE_WRITE`. Every file
  closed after writing becomes a `file` event (docs/agent-protocol.md): path, size, writer pid,
  its executable and user, mount point, block device, label. Only while
  `removable.track_files` is on and the policy's schedule is active; otherwise no mark exists
  and nothing is observed at all.
- Read-only: while `usb.classes.storage` is `read_only`, every removable mount is remounted
  read-only (`mount -o remount,ro`), at once and whenever a new one appears, except devices
  that `usb.allow` or an unexpired `usb.temporary` grant names. When the policy stops asking
  for it, the mounts this agent made read-only (and only those) are remounted read-write.
  Enforcement does not depend on the schedule: the schedule bounds monitoring, not control.

The component is driven by the service's select() loop through one descriptor (an epoll set
holding mountinfo and the fanotify group), `next_wakeup()` and `poll(now)`, which returns the
events to spool. Needs root (CAP_SYS_ADMIN) for fanotify and remounting.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import pwd
import re
import select
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from glasshouse_agent.policy import Policy, PolicyError

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
SYSFS = "/sys"

# <linux/fanotify.h>
FAN_CLOSE_WRITE = 0x0000_0008
FAN_Q_OVERFLOW = 0x0000_4000
FAN_CLASS_NOTIF = 0x0000_0000
FAN_CLOEXEC = 0x0000_0001
FAN_NONBLOCK = 0x0000_0002
FAN_MARK_ADD = 0x0000_0001
FAN_MARK_REMOVE = 0x0000_0002
FAN_MARK_MOUNT = 0x0000_0010
FAN_MARK_FILESYSTEM = 0x0000_0100
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
_METADATA = struct.Struct("=IBBHQii")

# The protocol's string limits (a longer value would get the whole batch refused).
MAX_PATH = 1024
MAX_SHORT = 256
# A fanotify read returns whole events; bound the work done per wakeup.
_READ_BYTES = 64 * 1024
_MAX_READS_PER_POLL = 64
REMOUNT_RETRY_SECONDS = 5.0
FANOTIFY_RETRY_SECONDS = 60.0
# Even if a POLLPRI wakeup were lost, the mount table is re-read this often.
MOUNTINFO_RESCAN_SECONDS = 60.0


# -- policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exemption:
    """A USB device allowed whatever its class's verdict (`usb.allow`), or until `until`
    (`usb.temporary`). An empty serial means any serial."""

    vid: str
    pid: str
    serial: str = ""
    until: float | None = None

    def covers(self, device: DeviceIdentity, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return (
            device.vid == self.vid
            and device.pid == self.pid
            and (self.serial == "" or device.serial == self.serial)
            and device.vid != ""
        )


@dataclass(frozen=True)
class RemovableSettings:
    track_files: bool = False
    storage: str = "allow"  # allow | block | read_only
    exemptions: tuple[Exemption, ...] = ()

    def read_only(self, device: DeviceIdentity, now: float) -> bool:
        return self.storage == "read_only" and not any(e.covers(device, now) for e in self.exemptions)

    def next_change(self, now: float) -> float | None:
        """When a temporary grant runs out (the verdict for its device changes then)."""
        ends = [e.until for e in self.exemptions if e.until is not None and e.until > now]
        return min(ends) if ends else None


_HEX4 = re.compile(r"^[0-9a-f]{4}$")


def parse_settings(policy: Policy) -> RemovableSettings:
    """What this component needs from the policy, parsed strictly: a wrong type anywhere is a
    PolicyError naming the field, and the caller keeps its previous settings."""
    removable, usb = policy.removable, policy.usb
    track = removable.get("track_files", False)
    if not isinstance(track, bool):
        raise PolicyError("removable.track_files", "must be true or false")
    classes = usb.get("classes", {})
    if not isinstance(classes, dict):
        raise PolicyError("usb.classes", "must be an object")
    storage = classes.get("storage", "allow")
    if storage not in ("allow", "block", "read_only"):
        raise PolicyError("usb.classes.storage", "must be one of allow, block, read_only")
    exemptions = [_exemption(item, f"usb.allow[{i}]", temporary=False) for i, item in enumerate(_list(usb, "allow"))]
    exemptions += [
        _exemption(item, f"usb.temporary[{i}]", temporary=True) for i, item in enumerate(_list(usb, "temporary"))
    ]
    return RemovableSettings(track_files=track, storage=str(storage), exemptions=tuple(exemptions))


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise PolicyError(f"usb.{key}", "must be a list")
    return value


def _exemption(item: Any, name: str, *, temporary: bool) -> Exemption:
    if not isinstance(item, dict):
        raise PolicyError(name, "must be an object")
    vid, pid, serial = item.get("vid"), item.get("pid"), item.get("serial", "")
    if not isinstance(vid, str) or not _HEX4.match(vid):
        raise PolicyError(f"{name}.vid", "must be 4 lowercase hex digits")
    if not isinstance(pid, str) or not _HEX4.match(pid):
        raise PolicyError(f"{name}.pid", "must be 4 lowercase hex digits")
    if not isinstance(serial, str):
        raise PolicyError(f"{name}.serial", "must be a string")
    until = None
    if temporary:
        raw = item.get("until")
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise PolicyError(f"{name}.until", "must be a number (UTC epoch seconds)")
        until = float(raw)
    return Exemption(vid, pid, serial, until)


# -- mounts and devices ------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    major: int
    minor: int
    mount_point: str
    options: tuple[str, ...]  # per-mount options
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options or "ro" in self.super_options


@dataclass(frozen=True)
class DeviceIdentity:
    """What is known of the hardware behind a removable mount; vid/pid/serial are empty for a
    removable disk that is not on USB (an SD card slot, say)."""

    vid: str = ""
    pid: str = ""
    serial: str = ""


Classify = Callable[[Mount], DeviceIdentity | None]

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(value: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), value)


def parse_mountinfo(text: str) -> dict[int, Mount]:
    mounts: dict[int, Mount] = {}
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, minor = fields[2].split(":")
            mount = Mount(
                mount_id=int(fields[0]),
                major=int(major),
                minor=int(minor),
                mount_point=_unescape(fields[4]),
                options=tuple(fields[5].split(",")),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else (),
            )
        except (ValueError, IndexError):
            continue
        mounts[mount.mount_id] = mount
    return mounts


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def sysfs_identity(mount: Mount, sysfs: str = SYSFS) -> DeviceIdentity | None:
    """The default `classify`: a mount is removable when its block device (or, through
    device-mapper, a device under it) is a disk with `removable` = 1 or sits on USB."""
    if not mount.source.startswith("/dev/"):
        return None  # not backed by a block device (tmpfs, proc, network file systems, ...)
    major, minor = mount.major, mount.minor
    if major == 0:
        # btrfs reports an anonymous device number; the source names the real one.
        try:
            st = os.stat(mount.source)
        except OSError:
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return _block_identity(os.path.realpath(f"{sysfs}/dev/block/{major}:{minor}"), sysfs, depth=0)


def _block_identity(dev: str, sysfs: str, depth: int) -> DeviceIdentity | None:
    if depth > 4 or not os.path.isdir(dev):
        return None
    disk = os.path.dirname(dev) if os.path.exists(os.path.join(dev, "partition")) else dev
    usb = _usb_ancestor(disk, sysfs)
    if usb is not None:
        return DeviceIdentity(
            vid=_read(os.path.join(usb, "idVendor")).lower(),
            pid=_read(os.path.join(usb, "idProduct")).lower(),
            serial=_read(os.path.join(usb, "serial")),
        )
    if _read(os.path.join(disk, "removable")) == "1":
        return DeviceIdentity()
    # An encrypted or LVM volume on a stick: judge the devices it is built on.
    slaves = os.path.join(dev, "slaves")
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(slaves)):
            found = _block_identity(os.path.realpath(os.path.join(slaves, name)), sysfs, depth + 1)
            if found is not None:
                return found
    return None


def _usb_ancestor(path: str, sysfs: str) -> str | None:
    """The USB device (the directory with idVendor/idProduct) above a sysfs block device."""
    root = os.path.realpath(os.path.join(sysfs, "devices"))
    while path.startswith(root + os.sep):
        if os.path.exists(os.path.join(path, "idVendor")) and os.path.exists(os.path.join(path, "idProduct")):
            return path
        path = os.path.dirname(path)
    return None


def read_label(mount: Mount) -> str:
    """The file system label: udev's /dev/disk/by-label links, else blkid (which reads the
    superblock itself, so it also works without udev)."""
    by_label = "/dev/disk/by-label"
    with contextlib.suppress(OSError):
        target = os.path.realpath(mount.source)
        for name in os.listdir(by_label):
            if os.path.realpath(os.path.join(by_label, name)) == target:
                return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)
    blkid = shutil.which("blkid") or ("/usr/sbin/blkid" if os.path.exists("/usr/sbin/blkid") else None)
    if blkid is None:
        return ""
    try:
        out = subprocess.run(  # noqa: S603 - fixed tool, the device path from the mount table
            [blkid, "-c", "/dev/null", "-s", "LABEL", "-o", "value", mount.source],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.decode(errors="replace").strip()


# -- fanotify ----------------------------------------------------------------------------


class Fanotify:
    """A notification-class fanotify group through libc (no permission events: the kernel
    never waits for this process)."""

    def __init__(self, mark_filesystem: bool = True) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._init = libc.fanotify_init
        self._init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self._init.restype = ctypes.c_int
        self._mark = libc.fanotify_mark
        self._mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        self._mark.restype = ctypes.c_int
        fd: int = self._init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"fanotify_init: {os.strerror(err)}")
        self.fd: int = fd
        # A file-system mark sees writes through every mount of that file system, including
        # those in other mount namespaces (the service runs with PrivateMounts=yes, so its
        # mounts are copies of the desktop's). Kernels before 4.20 lack it: mount marks then.
        self.mark_filesystem = mark_filesystem

    def fileno(self) -> int:
        return self.fd

    def add(self, path: str) -> None:
        self._do(FAN_MARK_ADD, path)

    def remove(self, path: str) -> None:
        self._do(FAN_MARK_REMOVE, path)

    def _do(self, action: int, path: str) -> None:
        while True:
            scope = FAN_MARK_FILESYSTEM if self.mark_filesystem else FAN_MARK_MOUNT
            if self._mark(self.fd, action | scope, FAN_CLOSE_WRITE, AT_FDCWD, os.fsencode(path)) == 0:
                return
            err = ctypes.get_errno()
            if err == errno.EINVAL and self.mark_filesystem and action == FAN_MARK_ADD:
                log.info("fanotify: no file-system marks on this kernel; marking mounts instead")
                self.mark_filesystem = False
                continue
            raise OSError(err, f"fanotify_mark {path}: {os.strerror(err)}")

    def read(self) -> list[tuple[int, int, int]]:
        """(mask, fd, pid) for each queued event; [] when none. The caller closes the fds."""
        try:
            data = os.read(self.fd, _READ_BYTES)
        except BlockingIOError:
            return []
        out = []
        offset = 0
        while offset + _METADATA.size <= len(data):
            length, version, _, _, mask, fd, pid = _METADATA.unpack_from(data, offset)
            if version != FANOTIFY_METADATA_VERSION or length < _METADATA.size:
                log.error("fanotify: unexpected metadata version %d; dropping the rest of the read", version)
                break
            out.append((mask, fd, pid))
            offset += length
        return out

    def close(self) -> None:
        os.close(self.fd)


# -- the component -----------------------------------------------------------------------


@dataclass
class _Tracked:
    mount: Mount
    device: DeviceIdentity
    label: str
    made_ro: bool = False  # remounted read-only by us (so ours to make writable again)
    retry_at: float = 0.0  # a failed remount is tried again from then


@dataclass
class _Remount:
    proc: subprocess.Popen[bytes]
    mode: str
    mount_id: int


class RemovableMedia:
    def __init__(
        self,
        *,
        classify: Classify = sysfs_identity,
        label_of: Callable[[Mount], str] = read_label,
        clock: Callable[[], float] = time.time,
        mountinfo: str = MOUNTINFO,
        mount_command: str = "mount",
        mark_filesystem: bool = True,
        extra_exemptions: Callable[[], Sequence[Exemption]] = tuple,
    ) -> None:
        self.classify = classify
        # Grants the policy does not list: offline access codes, which USB control holds.
        self.extra_exemptions = extra_exemptions
        self.label_of = label_of
        self.clock = clock
        self.mount_command = mount_command
        self.mark_filesystem = mark_filesystem
        self._settings = RemovableSettings()
        self._tracking_allowed = False  # track_files on and inside the schedule
        self._policy: Policy | None = None
        self._tracked: dict[int, _Tracked] = {}
        self._mounts_raw = b""
        self._next_rescan = 0.0
        self._fan: Fanotify | None = None
        self._fan_retry_at = 0.0
        self._remounts: dict[str, _Remount] = {}  # by mount point
        self._epoll = select.epoll()
        # The kernel flags an open mountinfo with POLLPRI|POLLERR after every mount change.
        self._mountinfo_fd = os.open(mountinfo, os.O_RDONLY | os.O_CLOEXEC)
        self._epoll.register(self._mountinfo_fd, select.EPOLLPRI | select.EPOLLERR)
        self._rescan_mounts(self.clock())

    # The service's loop ------------------------------------------------------------------

    def fileno(self) -> int:
        """Readable when a mount changed or files were written (stable for the lifetime)."""
        return self._epoll.fileno()

    def next_wakeup(self) -> float:
        now = self.clock()
        wake = [self._next_rescan]
        if self._remounts:
            wake.append(now + 0.2)  # a remount is running: look for its result soon
        wake += [t.retry_at for t in self._tracked.values() if t.retry_at]
        if self._policy is not None and self._policy.schedule.mode != "always":
            wake.append(now + 60.0)  # tracking follows working hours
        change = self._settings.next_change(now)
        if change is not None:
            wake.append(change)  # a temporary grant ends
        wake += [e.until for e in self.extra_exemptions() if e.until is not None and e.until > now]
        if self._tracking_allowed and self._fan is None:
            wake.append(self._fan_retry_at)
        return min(wake)

    def apply_policy(self, policy: Policy, now: float) -> list[dict[str, Any]]:
        """Takes effect at once (remounts start, tracking starts or stops); returns no events
        (the same shape as the other controls' apply_policy)."""
        try:
            settings = parse_settings(policy)
        except PolicyError as exc:
            log.error("removable media: refusing the policy's section (%s); the previous settings stay", exc)
            return []
        self._policy = policy
        if settings != self._settings:
            log.info(
                "removable media: track_files=%s storage=%s (%d exemptions)",
                settings.track_files,
                settings.storage,
                len(settings.exemptions),
            )
        self._settings = settings
        self._reconcile(now)
        return []

    def poll(self, now: float) -> list[dict[str, Any]]:
        # No need to ask the epoll set which member woke it: mountinfo's flag is consumed by
        # the very poll that reports it, so the table is simply read again (a few KB, and
        # skipped when unchanged) and the fanotify group drained.
        events: list[dict[str, Any]] = []
        # Events first: a file written just before its stick is unmounted still finds its mount.
        events += self._read_files(now)
        self._rescan_mounts(now)
        self._reconcile(now)
        events += self._read_files(now)
        self._reap_remounts(now)
        return events

    def close(self) -> None:
        self._stop_tracking()
        for pending in self._remounts.values():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                pending.proc.wait(timeout=10)
        self._remounts = {}
        self._epoll.close()
        os.close(self._mountinfo_fd)

    # For status and tests ------------------------------------------------------------------

    @property
    def removable_mounts(self) -> list[str]:
        return sorted(t.mount.mount_point for t in self._tracked.values())

    @property
    def tracking(self) -> bool:
        return self._fan is not None

    # Mounts -------------------------------------------------------------------------------

    def _rescan_mounts(self, now: float) -> None:
        self._next_rescan = now + MOUNTINFO_RESCAN_SECONDS
        chunks = []
        os.lseek(self._mountinfo_fd, 0, os.SEEK_SET)
        while chunk := os.read(self._mountinfo_fd, 65536):
            chunks.append(chunk)
        raw = b"".join(chunks)
        if raw == self._mounts_raw:
            return
        self._mounts_raw = raw
        mounts = parse_mountinfo(raw.decode(errors="surrogateescape"))
        for mount_id in list(self._tracked):
            current = mounts.get(mount_id)
            if current is None:
                gone = self._tracked.pop(mount_id)
                log.info("removable media: %s unmounted", gone.mount.mount_point)
            else:
                self._tracked[mount_id].mount = current  # options (ro/rw) may have changed
        for mount_id, mount in mounts.items():
            if mount_id in self._tracked:
                continue
            try:
                device = self.classify(mount)
            except Exception:
                log.exception("removable media: cannot classify %s", mount.mount_point)
                continue
            if device is None:
                continue
            label = self.label_of(mount)
            self._tracked[mount_id] = _Tracked(mount, device, label)
            log.info("removable media: %s (%s, label %r) mounted", mount.mount_point, mount.source, label)
            if self._fan is not None:
                self._mark(mount)

    def _reconcile(self, now: float) -> None:
        policy = self._policy
        allowed = (
            policy is not None and self._settings.track_files and policy.schedule.active_at(now)
        )  # outside the schedule nothing is observed at all
        self._tracking_allowed = allowed
        if allowed and self._fan is None and now >= self._fan_retry_at:
            self._start_tracking(now)
        elif not allowed and self._fan is not None:
            self._stop_tracking()
        extras = self.extra_exemptions()
        for mount_id, tracked in list(self._tracked.items()):
            want_ro = self._settings.read_only(tracked.device, now) and not any(
                e.covers(tracked.device, now) for e in extras
            )
            point = tracked.mount.mount_point
            if point in self._remounts or now < tracked.retry_at:
                continue
            if want_ro and not tracked.mount.read_only:
                self._remount(mount_id, tracked, "ro")
            elif not want_ro and tracked.made_ro and tracked.mount.read_only:
                self._remount(mount_id, tracked, "rw")

    def _remount(self, mount_id: int, tracked: _Tracked, mode: str) -> None:
        point = tracked.mount.mount_point
        tracked.retry_at = 0.0
        log.info("removable media: remounting %s %s", point, "read-only" if mode == "ro" else "read-write")
        try:
            proc = subprocess.Popen(  # noqa: S603 - a fixed command; the mount point is one argv item
                [self.mount_command, "-o", f"remount,{mode}", "--", point],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            log.error("removable media: cannot run %s: %s", self.mount_command, exc)
            tracked.retry_at = self.clock() + REMOUNT_RETRY_SECONDS
            return
        self._remounts[point] = _Remount(proc, mode, mount_id)

    def _reap_remounts(self, now: float) -> None:
        for point, pending in list(self._remounts.items()):
            code = pending.proc.poll()
            if code is None:
                continue
            del self._remounts[point]
            err = pending.proc.stderr.read().decode(errors="replace").strip() if pending.proc.stderr else ""
            if pending.proc.stderr:
                pending.proc.stderr.close()
            tracked = self._tracked.get(pending.mount_id)
            if tracked is None:
                continue
            if code == 0:
                tracked.made_ro = pending.mode == "ro"
                tracked.retry_at = 0.0
                # Take the new options from the mount table now rather than at the next wakeup.
                self._rescan_mounts(now)
            else:
                # Typically "busy": a file is open for writing. Try again shortly.
                log.warning("removable media: remount %s %s failed (%d): %s", pending.mode, point, code, err)
                tracked.retry_at = now + REMOUNT_RETRY_SECONDS

    # Files --------------------------------------------------------------------------------

    def _start_tracking(self, now: float) -> None:
        try:
            self._fan = Fanotify(self.mark_filesystem)
        except OSError as exc:
            log.error("removable media: cannot track files (%s); retrying in %.0fs", exc, FANOTIFY_RETRY_SECONDS)
            self._fan_retry_at = now + FANOTIFY_RETRY_SECONDS
            return
        self._epoll.register(self._fan.fileno(), select.EPOLLIN)
        for tracked in self._tracked.values():
            self._mark(tracked.mount)
        log.info("removable media: tracking files written to removable mounts")

    def _stop_tracking(self) -> None:
        if self._fan is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(self._fan.fileno())
        # Closing the group removes its marks and frees queued events (which pin their mounts).
        self._fan.close()
        self._fan = None
        log.info("removable media: file tracking off")

    def _mark(self, mount: Mount) -> None:
        assert self._fan is not None
        try:
            self._fan.add(mount.mount_point)
        except OSError as exc:
            log.error("removable media: cannot watch %s: %s", mount.mount_point, exc)

    def _read_files(self, now: float) -> list[dict[str, Any]]:
        if self._fan is None:
            return []
        events: list[dict[str, Any]] = []
        for _ in range(_MAX_READS_PER_POLL):
            batch = self._fan.read()
            if not batch:
                break
            for mask, fd, pid in batch:
                if fd < 0:
                    if mask & FAN_Q_OVERFLOW:
                        log.warning("removable media: fanotify queue overflowed; some writes were not recorded")
                    continue
                try:
                    event = self._file_event(now, fd, pid) if mask & FAN_CLOSE_WRITE else None
                finally:
                    os.close(fd)
                if event is not None:
                    events.append(event)
        return events

    def _file_event(self, now: float, fd: int, pid: int) -> dict[str, Any] | None:
        try:
            st = os.fstat(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        if st.st_nlink == 0 and path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        tracked = self._mount_of(path, os.major(st.st_dev), os.minor(st.st_dev))
        if tracked is None:
            return None  # a mount no longer removable or tracked
        event: dict[str, Any] = {
            "kind": "file",
            "time": now,
            "path": _clip(path, MAX_PATH),
            "size": st.st_size,
            "pid": pid,
        }
        exe, uid = _process(pid)
        if exe:
            event["exe"] = _clip(exe, MAX_PATH)
        # A writer that has already exited (cp usually has, by the time we look) leaves no
        # /proc entry; the file's owner is then the best account of who wrote it.
        event["user"] = _clip(_user_name(st.st_uid if uid is None else uid), MAX_SHORT)
        event["mount"] = _clip(tracked.mount.mount_point, MAX_PATH)
        event["device"] = _clip(tracked.mount.source, MAX_SHORT)
        if tracked.label:
            event["label"] = _clip(tracked.label, MAX_SHORT)
        return event

    def _mount_of(self, path: str, major: int, minor: int) -> _Tracked | None:
        same_fs = [t for t in self._tracked.values() if (t.mount.major, t.mount.minor) == (major, minor)]
        for tracked in sorted(same_fs, key=lambda t: len(t.mount.mount_point), reverse=True):
            point = tracked.mount.mount_point.rstrip("/")
            if path == point or path.startswith(point + "/"):
                return tracked
        return same_fs[0] if same_fs else None


def _process(pid: int) -> tuple[str, int | None]:
    """The writer's executable and real uid, or ("", None) once it has gone."""
    exe = ""
    with contextlib.suppress(OSError):
        exe = os.readlink(f"/proc/{pid}/exe")
        exe = exe.removesuffix(" (deleted)")
    uid = None
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                break
    return exe, uid


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]
