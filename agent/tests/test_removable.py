"""Files written to removable media, and read-only removable storage, for real: an ext4 image
on a loop device stands in for a USB stick (the test kernel has no VFAT and no USB hardware),
mounted in a temporary directory, watched through the real /proc/self/mountinfo and fanotify,
remounted with the real mount(8). Loop devices say removable=0 in sysfs, so the tests inject
the "is this removable?" decision; the sysfs decision itself is tested on a fake sysfs tree.

The real tests need root; without it they skip with the reason, except under CI=true where
they fail. Every stick is unmounted and its loop device detached in teardown, always."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.policy import PolicyError
from glasshouse_agent.removable import (
    DeviceIdentity,
    Exemption,
    Mount,
    RemovableMedia,
    parse_mountinfo,
    parse_settings,
    sysfs_identity,
)
from glasshouse_agent.service import Service
from glasshouse_agent.spool import Spool
from tests.conftest import make_policy
from tests.controlloop import pump, settle

STICK_TOOLS = ("truncate", "mkfs.ext4", "losetup", "mount", "umount")


def require_root(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (loop devices, mount, fanotify)"
    elif missing:
        reason = f"missing {', '.join(missing)} (run scripts/setup-agent-test-deps.sh as root)"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# -- a stick -------------------------------------------------------------------------------


@dataclass
class Stick:
    image: str
    device: str
    mount_point: str
    mounted: bool = False

    def mount(self, *options: str) -> None:
        args = ["-o", ",".join(options)] if options else []
        subprocess.run(["mount", *args, self.device, self.mount_point], check=True, timeout=30)
        self.mounted = True

    def unmount(self) -> None:
        for _ in range(20):
            if subprocess.run(["umount", self.mount_point], capture_output=True, timeout=30).returncode == 0:
                self.mounted = False
                return
            time.sleep(0.25)  # busy for a moment (a queued event, a closing writer)
        subprocess.run(["umount", "-l", self.mount_point], check=True, timeout=30)
        self.mounted = False

    def is_read_only(self) -> bool:
        for mount in parse_mountinfo(Path("/proc/self/mountinfo").read_text()).values():
            if mount.mount_point == self.mount_point:
                return mount.read_only
        raise AssertionError(f"{self.mount_point} is not mounted")

    def identity(self, device: DeviceIdentity | None = None) -> Callable[[Mount], DeviceIdentity | None]:
        """A classify function that calls this stick (and nothing else on the machine) removable."""
        ident = device or DeviceIdentity()
        return lambda mount: ident if mount.source == self.device else None


@pytest.fixture
def stick(tmp_path: Path) -> Iterator[Stick]:
    require_root(*STICK_TOOLS)
    image = tmp_path / "stick.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "STICK", str(image)], check=True, timeout=60)
    device = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    point = tmp_path / "STICK"
    point.mkdir()
    os.chmod(point, 0o755)  # noqa: S103 - a mount point
    made = Stick(str(image), device, str(point))
    try:
        yield made
    finally:
        try:
            if made.mounted:
                made.unmount()
        finally:
            subprocess.run(["losetup", "-d", device], check=False, timeout=30)


def doc(*, track: bool = True, storage: str = "allow", **usb: Any) -> dict[str, Any]:
    return {
        "removable": {"track_files": track},
        "usb": {"classes": {"storage": storage}, **usb},
    }


@pytest.fixture
def media_factory() -> Iterator[Callable[..., RemovableMedia]]:
    made: list[RemovableMedia] = []

    def make(**kwargs: Any) -> RemovableMedia:
        media = RemovableMedia(**kwargs)
        made.append(media)
        return media

    yield make
    for media in made:
        media.close()  # before the stick's teardown: queued events pin the mount


# -- real: files ---------------------------------------------------------------------------


def test_cp_dd_and_shell_writes_are_recorded_with_pid_path_and_size(
    stick: Stick, media_factory: Callable[..., RemovableMedia], tmp_path: Path
) -> None:
    stick.mount()
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc()), time.time())
    assert media.removable_mounts == [stick.mount_point]
    assert media.tracking

    source = tmp_path / "report.xlsx"
    source.write_bytes(os.urandom(48213))
    cp = subprocess.Popen(["cp", str(source), f"{stick.mount_point}/report.xlsx"])
    assert cp.wait(10) == 0
    dd = subprocess.Popen(
        ["dd", "if=/dev/zero", f"of={stick.mount_point}/zeros.bin", "bs=4096", "count=25"], stderr=subprocess.DEVNULL
    )
    assert dd.wait(10) == 0
    # A writer that is still running when the event is read: its executable is known too.
    shell = subprocess.Popen(["sh", "-c", f"printf hello > '{stick.mount_point}/note.txt'; sleep 3"])
    try:
        events = pump(media, lambda evs: len(evs) >= 3)
    finally:
        shell.kill()
        shell.wait()
    by_path = {e["path"]: e for e in events}
    assert set(by_path) == {f"{stick.mount_point}/{n}" for n in ("report.xlsx", "zeros.bin", "note.txt")}
    assert by_path[f"{stick.mount_point}/report.xlsx"]["size"] == 48213
    assert by_path[f"{stick.mount_point}/report.xlsx"]["pid"] == cp.pid
    assert by_path[f"{stick.mount_point}/zeros.bin"]["size"] == 25 * 4096
    assert by_path[f"{stick.mount_point}/zeros.bin"]["pid"] == dd.pid
    note = by_path[f"{stick.mount_point}/note.txt"]
    assert note["size"] == 5
    assert note["pid"] == shell.pid
    assert note["exe"] == os.path.realpath(shutil.which("sh") or "/bin/sh")
    for event in events:
        assert event["kind"] == "file"
        assert event["mount"] == stick.mount_point
        assert event["device"] == stick.device
        assert event["label"] == "STICK"
        assert event["user"] == "root"
        assert abs(event["time"] - time.time()) < 30
        # cp and dd have usually exited by the time the event is read: then no exe, never a wrong one.
        assert event.get("exe") in (
            None,
            shutil.which("cp"),
            shutil.which("dd"),
            note["exe"],
            "/usr/bin/cp",
            "/usr/bin/dd",
        )


def test_a_stick_mounted_later_wakes_the_loop_and_is_tracked_until_unmounted(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc()), time.time())
    assert media.removable_mounts == []
    stick.mount()
    # The mount change itself makes the descriptor readable (POLLPRI on mountinfo): no polling.
    readable, _, _ = select.select([media.fileno()], [], [], 5)
    assert readable
    media.poll(time.time())
    assert media.removable_mounts == [stick.mount_point]
    Path(stick.mount_point, "late.txt").write_text("x")
    events = pump(media, lambda evs: len(evs) >= 1)
    assert [e["path"] for e in events] == [f"{stick.mount_point}/late.txt"]
    stick.unmount()
    readable, _, _ = select.select([media.fileno()], [], [], 5)
    assert readable
    media.poll(time.time())
    assert media.removable_mounts == []


def test_nothing_is_observed_when_tracking_is_off_or_outside_the_schedule(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    stick.mount()
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc(track=False)), time.time())
    assert not media.tracking
    Path(stick.mount_point, "off.txt").write_text("not recorded")
    assert settle(media) == []

    closed_all_week = {"mode": "working_hours", "time_zone": "UTC", "days": [], "start": "09:00", "end": "17:00"}
    media.apply_policy(make_policy(schedule=closed_all_week, **doc()), time.time())
    assert not media.tracking
    Path(stick.mount_point, "night.txt").write_text("not recorded")
    assert settle(media) == []

    media.apply_policy(make_policy(**doc()), time.time())
    assert media.tracking
    Path(stick.mount_point, "on.txt").write_text("recorded")
    events = pump(media, lambda evs: len(evs) >= 1)
    assert [e["path"] for e in events] == [f"{stick.mount_point}/on.txt"]


def test_files_of_non_removable_mounts_are_not_recorded(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    stick.mount()
    media = media_factory(classify=lambda mount: None)  # what sysfs says of a loop device
    media.apply_policy(make_policy(**doc()), time.time())
    assert media.removable_mounts == []
    Path(stick.mount_point, "internal.txt").write_text("x")
    assert settle(media) == []


# -- real: read-only -------------------------------------------------------------------------


def write_fails_read_only(path: str) -> bool:
    with pytest.raises(OSError, match="Read-only file system") as exc, open(path, "w") as f:
        f.write("x")
    return exc.value.errno == errno.EROFS


def test_read_only_policy_makes_writes_fail_and_allow_makes_the_stick_writable_again(
    stick: Stick, media_factory: Callable[..., RemovableMedia], tmp_path: Path
) -> None:
    stick.mount()
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc(storage="read_only")), time.time())
    pump(media, lambda _: stick.is_read_only())

    source = tmp_path / "secret.txt"
    source.write_text("payroll")
    cp = subprocess.run(["cp", str(source), stick.mount_point], capture_output=True, text=True, timeout=10)
    assert cp.returncode != 0
    assert "Read-only file system" in cp.stderr
    assert write_fails_read_only(f"{stick.mount_point}/direct.txt")
    assert settle(media) == []  # nothing was written, so nothing is reported
    assert os.listdir(stick.mount_point) == ["lost+found"]

    # Lifted: the mount this agent made read-only becomes writable again.
    media.apply_policy(make_policy(**doc(storage="allow")), time.time())
    pump(media, lambda _: not stick.is_read_only())
    Path(stick.mount_point, "after.txt").write_text("ok")
    events = pump(media, lambda evs: len(evs) >= 1)
    assert [e["path"] for e in events] == [f"{stick.mount_point}/after.txt"]


def test_a_stick_mounted_under_a_read_only_policy_is_remounted_read_only(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc(storage="read_only")), time.time())
    stick.mount()
    pump(media, lambda _: stick.is_read_only())
    assert write_fails_read_only(f"{stick.mount_point}/x.txt")


def test_a_stick_the_user_mounted_read_only_stays_read_only(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    stick.mount("ro")
    media = media_factory(classify=stick.identity())
    media.apply_policy(make_policy(**doc(storage="read_only")), time.time())
    settle(media, 0.3)
    media.apply_policy(make_policy(**doc(storage="allow")), time.time())
    settle(media, 0.5)
    assert stick.is_read_only()  # not ours to make writable


def test_allow_listed_and_temporarily_allowed_sticks_stay_writable_until_the_grant_ends(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    stick.mount()
    device = DeviceIdentity(vid="0781", pid="5567", serial="4C530001234")
    media = media_factory(classify=stick.identity(device))
    allow = [{"vid": "0781", "pid": "5567", "serial": "4C530001234", "label": "Finance stick"}]
    media.apply_policy(make_policy(**doc(storage="read_only", allow=allow)), time.time())
    settle(media, 0.5)
    assert not stick.is_read_only()

    other_serial = [{"vid": "0781", "pid": "5567", "serial": "OTHER", "label": "x"}]
    until = time.time() + 1.5
    temporary = [{"request": 12, "vid": "0781", "pid": "5567", "serial": "", "until": until}]
    media.apply_policy(make_policy(**doc(storage="read_only", allow=other_serial, temporary=temporary)), time.time())
    settle(media, 0.5)
    assert not stick.is_read_only()
    # The component wakes by itself when the grant ends (next_wakeup), and the verdict applies.
    pump(media, lambda _: stick.is_read_only(), timeout=10)
    assert time.time() >= until


# -- real: the service ---------------------------------------------------------------------


def test_the_service_spools_file_events_and_uploads_them_in_a_batch(stick: Stick, tmp_path: Path) -> None:
    stick.mount()
    spool_path = str(tmp_path / "spool.sqlite3")
    spool = Spool(spool_path)
    spool.set("policy", make_policy(**doc()).dumps())
    spool.close()
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    service = Service(
        spool_path=spool_path,
        socket_path=str(sockdir / "session.sock"),
        uplink=None,
        utmp_path=str(tmp_path / "no-utmp"),
        checkpoint_seconds=0.2,
        removable_classify=stick.identity(),
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    try:
        assert service.ready.wait(10)
        deadline = time.monotonic() + 10
        written = False
        rows: list[tuple[str, str]] = []
        while time.monotonic() < deadline:
            if not written:
                time.sleep(0.3)  # the policy is applied at the first turn of the loop
                cp = subprocess.run(["cp", "/etc/hostname", f"{stick.mount_point}/hostname"], check=True)
                assert cp.returncode == 0
                written = True
            db = Spool(spool_path)
            rows = db._db.execute("SELECT kind, attrs FROM spans WHERE kind = 'file'").fetchall()
            db.close()
            if rows:
                break
            time.sleep(0.1)
        assert len(rows) == 1
        assert json.loads(rows[0][1])["path"] == f"{stick.mount_point}/hostname"
    finally:
        service.stop()
        thread.join(15)
    assert not thread.is_alive()
    db = Spool(spool_path)
    try:
        batch = db.assign_batch(max_spans=1000, max_seconds=0, force=True)
        assert batch is not None
        events = batch.body()["events"]
        assert [(e["kind"], e["path"], e["label"]) for e in events] == [
            ("file", f"{stick.mount_point}/hostname", "STICK")
        ]
    finally:
        db.close()


# -- no root needed ------------------------------------------------------------------------


def test_mountinfo_lines_are_parsed_with_escapes() -> None:
    text = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
        "90 27 7:0 / /media/alice/MY\\040STICK rw,nosuid,nodev shared:50 - vfat /dev/sdb1 rw,uid=1000\n"
        "91 27 0:44 / /run/user/1000 rw,nosuid - tmpfs tmpfs rw\n"
        "garbage\n"
    )
    mounts = parse_mountinfo(text)
    assert sorted(mounts) == [27, 90, 91]
    stick = mounts[90]
    assert stick.mount_point == "/media/alice/MY STICK"
    assert (stick.major, stick.minor, stick.fstype, stick.source) == (7, 0, "vfat", "/dev/sdb1")
    assert not stick.read_only
    assert parse_mountinfo("92 27 7:1 / /mnt ro,relatime - ext4 /dev/loop1 rw\n")[92].read_only


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"removable": {"track_files": "yes"}}, "removable.track_files"),
        ({"usb": {"classes": {"storage": "readonly"}}}, "usb.classes.storage"),
        ({"usb": {"classes": []}}, "usb.classes"),
        ({"usb": {"allow": [{"vid": "07XY", "pid": "5567"}]}}, "usb.allow[0].vid"),
        ({"usb": {"allow": [{"vid": "0781", "pid": "5567", "serial": 5}]}}, "usb.allow[0].serial"),
        ({"usb": {"temporary": [{"vid": "0781", "pid": "5567"}]}}, "usb.temporary[0].until"),
    ],
)
def test_bad_sections_are_refused_naming_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_settings(make_policy(**section))
    assert exc.value.field == field


def test_a_refused_section_leaves_the_previous_settings_in_force() -> None:
    media = RemovableMedia(classify=lambda mount: None)
    try:
        media.apply_policy(make_policy(**doc(track=False, storage="read_only")), time.time())
        media.apply_policy(make_policy(usb={"classes": {"storage": "sometimes"}}), time.time())
        assert media._settings.storage == "read_only"
    finally:
        media.close()


def test_defaults_track_nothing_and_allow_writes() -> None:
    settings = parse_settings(make_policy())
    assert not settings.track_files
    assert not settings.read_only(DeviceIdentity(), time.time())


def fake_block(sysfs: Path, devpath: str, number: str, *, removable: str = "0", usb: str | None = None) -> None:
    """A sysfs block device at devices/<devpath> with /sys/dev/block/<number> pointing to it."""
    dev = sysfs / "devices" / devpath
    dev.mkdir(parents=True)
    if dev.parent.name == "block":
        (dev / "removable").write_text(removable + "\n")
    else:
        (dev / "partition").write_text("1\n")
        (dev.parent / "removable").write_text(removable + "\n")
    if usb is not None:
        usbdev = sysfs / "devices" / usb
        (usbdev / "idVendor").write_text("0781\n")
        (usbdev / "idProduct").write_text("5567\n")
        (usbdev / "serial").write_text("4C530001234\n")
    (sysfs / "dev" / "block").mkdir(parents=True, exist_ok=True)
    (sysfs / "dev" / "block" / number).symlink_to(dev)


def mount_of(number: str, source: str = "/dev/sdb1") -> Mount:
    major, minor = number.split(":")
    return Mount(1, int(major), int(minor), "/media/x", ("rw",), "vfat", source, ("rw",))


def test_sysfs_decides_removable_from_usb_ancestry_the_removable_flag_and_dm_slaves(tmp_path: Path) -> None:
    usb_disk = "pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
    fake_block(tmp_path, f"{usb_disk}/sdb1", "8:17", usb="pci0000:00/0000:00:14.0/usb1/1-2")
    fake_block(tmp_path, "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", "8:1")
    fake_block(tmp_path, "platform/mmc0/mmc0:0001/block/mmcblk0", "179:0", removable="1")
    fake_block(tmp_path, "virtual/block/dm-0", "254:0")
    (tmp_path / "devices/virtual/block/dm-0/slaves").mkdir()
    (tmp_path / "devices/virtual/block/dm-0/slaves/sdb1").symlink_to(tmp_path / "devices" / usb_disk / "sdb1")

    stick = DeviceIdentity(vid="0781", pid="5567", serial="4C530001234")
    assert sysfs_identity(mount_of("8:17"), str(tmp_path)) == stick
    assert sysfs_identity(mount_of("8:1", "/dev/sda1"), str(tmp_path)) is None
    assert sysfs_identity(mount_of("179:0", "/dev/mmcblk0"), str(tmp_path)) == DeviceIdentity()
    assert sysfs_identity(mount_of("254:0", "/dev/mapper/luks-stick"), str(tmp_path)) == stick
    assert sysfs_identity(mount_of("0:44", "tmpfs"), str(tmp_path)) is None
    assert sysfs_identity(mount_of("7:0", "/dev/loop0"), str(tmp_path)) is None  # not in this sysfs


def test_a_stick_unlocked_with_an_offline_code_stays_writable_until_the_code_expires(
    stick: Stick, media_factory: Callable[..., RemovableMedia]
) -> None:
    # Offline-code grants are held by USB control, not listed in the policy; the service hands
    # them to this component (see Service._start_controls).
    stick.mount()
    device = DeviceIdentity(vid="0781", pid="5567", serial="4C530001234")
    until = time.time() + 1.5
    grants = [Exemption("0781", "5567", "", until)]
    media = media_factory(classify=stick.identity(device), extra_exemptions=lambda: grants)
    media.apply_policy(make_policy(**doc(storage="read_only")), time.time())
    settle(media, 0.5)
    assert not stick.is_read_only()
    pump(media, lambda _: stick.is_read_only(), timeout=10)
    assert time.time() >= until
