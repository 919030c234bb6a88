"""The `glasshouse-agent` command: enroll, run (the system service), session (the per-user
helper), status and flush. Paths come from flags, then environment variables, then the
defaults an installed system uses, so tests and packagers can relocate everything."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import TYPE_CHECKING

from glasshouse_agent import __version__
from glasshouse_agent import config as configmod
from glasshouse_agent.collectors.utmp import DEFAULT_UTMP
from glasshouse_agent.ipc import DEFAULT_SOCKET

if TYPE_CHECKING:
    from glasshouse_agent.uplink import Uplink
    from glasshouse_agent.usb import UsbOptions

# Modules are imported inside each command: the session helper runs for the whole desktop
# session and should not carry the service's HTTP/TLS and SQLite code in its memory.

log = logging.getLogger("glasshouse_agent")


def _os_name() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


def _primary_user() -> str:
    """The person this device belongs to: whoever ran sudo, else the first logged-in user."""
    import psutil

    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    users = [u.name for u in psutil.users() if u.name and u.name != "root"]
    return users[0] if users else getpass.getuser()


def _spool_path(args: argparse.Namespace) -> str:
    return os.path.join(configmod.state_dir(args.state_dir), "spool.sqlite3")


def _socket_path(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get(configmod.SOCKET_ENV) or DEFAULT_SOCKET)


def _uplink(cfg: configmod.Config) -> Uplink:
    from glasshouse_agent.uplink import Uplink

    return Uplink(cfg.server, cfg.device_id, cfg.device_key, ca_file=cfg.ca_file)


def cmd_enroll(args: argparse.Namespace) -> int:
    from glasshouse_agent.spool import Spool
    from glasshouse_agent.sync import REVOKED_KEY
    from glasshouse_agent.uplink import RejectedError, Uplink, UplinkError

    path = configmod.config_path(args.config)
    if os.path.exists(path) and not args.force:
        print(f"{path} exists: this device is already enrolled (use --force to enroll again)", file=sys.stderr)
        return 2
    uplink = Uplink(args.server, ca_file=args.ca_file)
    try:
        device_id, device_key = uplink.enroll(
            args.token, hostname=socket.gethostname(), os_name=_os_name(), username=args.username or _primary_user()
        )
    except RejectedError as exc:
        hint = " (the token is unknown, expired or used up)" if exc.status == 403 else ""
        print(f"enrolment refused: {exc}{hint}", file=sys.stderr)
        return 1
    except UplinkError as exc:
        print(f"enrolment failed: {exc}", file=sys.stderr)
        return 1
    configmod.save(path, configmod.Config(args.server, device_id, device_key, args.ca_file))
    spool_path = _spool_path(args)
    if os.path.exists(spool_path):
        # A fresh credential lifts a revocation; spooled spans go out under the new device.
        spool = Spool(spool_path)
        spool.set(REVOKED_KEY, None)
        spool.close()
    print(f"enrolled as device {device_id}; credential stored in {path}")
    return 0


def _install_signals(stop: object) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop()  # type: ignore[operator]

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from glasshouse_agent.service import Service

    try:
        cfg = configmod.load(configmod.config_path(args.config))
    except configmod.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    service = Service(
        spool_path=_spool_path(args),
        socket_path=_socket_path(args),
        uplink=_uplink(cfg),
        utmp_path=args.utmp,
        web_root=args.web_root,
        policy_interval=args.policy_interval,
        backoff_base=args.backoff_base,
        usb=_usb_options(args),
    )
    _install_signals(service.stop)
    log.info("glasshouse-agent %s service starting (pid %d)", __version__, os.getpid())
    service.serve()
    log.info("service stopped")
    return 0


def _usb_options(args: argparse.Namespace) -> UsbOptions | None:
    from glasshouse_agent.usb import UsbOptions
    from glasshouse_agent.usb.client import usb_socket_path

    if args.usb == "off":
        return None
    return UsbOptions(
        socket_path=usb_socket_path(_socket_path(args), args.usb_socket), backend=args.usb, sysfs_root=args.sysfs_root
    )


def _ask_usb(args: argparse.Namespace, request: dict[str, object]) -> dict[str, object] | None:
    from glasshouse_agent.usb.client import ask, usb_socket_path

    path = usb_socket_path(_socket_path(args), args.usb_socket)
    try:
        return ask(path, request)
    except (OSError, ValueError) as exc:
        print(f"cannot reach the glasshouse-agent service at {path}: {exc}", file=sys.stderr)
        return None


def cmd_usb_request(args: argparse.Namespace) -> int:
    if args.status is not None:
        answer = _ask_usb(args, {"type": "usb-request-status", "request": args.status})
        if answer is None:
            return 2
        if not answer.get("ok"):
            print(f"cannot check request {args.status}: {answer.get('error')}", file=sys.stderr)
            return 1
        info = answer.get("answer") or {}
        assert isinstance(info, dict)
        line = f"request {args.status}: {info.get('status', 'unknown')}"
        if info.get("until"):
            line += f" until {info['until']} (UTC epoch seconds)"
        if info.get("note"):
            line += f"; note: {info['note']}"
        print(line)
        return 0
    missing = [name for name in ("vid", "pid", "reason", "minutes") if getattr(args, name) is None]
    if missing:
        print(f"usb-request needs --{' --'.join(missing)} (or --status ID)", file=sys.stderr)
        return 2
    request = {
        "type": "usb-request",
        "vid": args.vid.lower(),
        "pid": args.pid.lower(),
        "serial": args.serial,
        "reason": args.reason,
        "minutes": args.minutes,
    }
    answer = _ask_usb(args, request)
    if answer is None:
        return 2
    if not answer.get("ok"):
        print(f"request not sent: {answer.get('error')}", file=sys.stderr)
        return 1
    info = answer.get("answer") or {}
    assert isinstance(info, dict)
    number = info.get("request")
    print(f"request {number} sent to IT: {info.get('status', 'pending')}")
    print(f"check it with: glasshouse-agent usb-request --status {number}")
    print("once approved, the device is allowed within a minute (when the agent next fetches its policy)")
    return 0


def cmd_usb_unlock(args: argparse.Namespace) -> int:
    answer = _ask_usb(args, {"type": "usb-unlock", "code": args.code})
    if answer is None:
        return 2
    if not answer.get("ok"):
        print(f"code refused: {answer.get('error')}", file=sys.stderr)
        return 1
    import datetime as dt

    until = dt.datetime.fromtimestamp(float(str(answer["until"])), dt.UTC)
    serial = f" serial {answer['serial']}" if answer.get("serial") else " (any serial)"
    print(f"USB device {answer['vid']}:{answer['pid']}{serial} allowed until {until:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    from glasshouse_agent.session import SessionHelper, platform_factory

    helper = SessionHelper(_socket_path(args), platform_factory(args.display))
    _install_signals(helper.stop)
    log.info("glasshouse-agent %s session helper starting (pid %d, uid %d)", __version__, os.getpid(), os.getuid())
    return helper.run()


def cmd_status(args: argparse.Namespace) -> int:
    from glasshouse_agent.status import collect_status, render

    status = collect_status(configmod.config_path(args.config), _spool_path(args), sample_seconds=args.sample)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render(status))
    return 0 if status.get("enrolled") else 1


def cmd_browser_install(args: argparse.Namespace) -> int:
    from glasshouse_agent.web import install

    try:
        if args.remove:
            done = install.remove(args.root)
        else:
            done = install.install(
                args.root, host_path=args.host_path, ext_id=args.extension_id, update_url=args.update_url
            )
    except (OSError, ValueError) as exc:
        print(f"browser-install failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(install.describe(done))
    if not args.remove and args.update_url is None:
        print("no --update-url: the extension is not force-installed (see browser-extension/README.md)")
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    from glasshouse_agent.spool import Spool
    from glasshouse_agent.sync import PolicyHolder, Syncer, load_stored_policy

    try:
        cfg = configmod.load(configmod.config_path(args.config))
    except configmod.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    spool = Spool(_spool_path(args))
    try:
        syncer = Syncer(spool, _uplink(cfg), PolicyHolder(load_stored_policy(spool)))
        syncer.refresh_policy()
        emptied = syncer.flush()
        stats = spool.stats()
        print(f"{'spool empty' if emptied else 'not everything was uploaded'}: {stats}")
        return 0 if emptied else 1
    finally:
        spool.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glasshouse-agent", description="Glasshouse endpoint agent")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help=f"enrolment file (env {configmod.CONFIG_ENV}, default {configmod.DEFAULT_CONFIG})"
    )
    common.add_argument(
        "--state-dir", help=f"spool directory (env {configmod.STATE_DIR_ENV}, default {configmod.DEFAULT_STATE_DIR})"
    )
    common.add_argument("--socket", help=f"session socket (env {configmod.SOCKET_ENV}, default {DEFAULT_SOCKET})")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", parents=[common], help="exchange a one-time token for a device credential")
    p.add_argument("--server", required=True, help="e.g. https://glasshouse.example.com")
    p.add_argument("--token", required=True)
    p.add_argument("--username", help="the device's primary user (default: detected)")
    p.add_argument("--ca-file", help="CA bundle for a server with a private certificate authority")
    p.add_argument("--force", action="store_true", help="replace an existing enrolment")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("run", parents=[common], help="the system service: spool, upload, policy, logins")
    p.add_argument("--utmp", default=DEFAULT_UTMP, help="utmp file to read logins from")
    p.add_argument("--policy-interval", type=float, default=60.0, help="seconds between policy checks")
    p.add_argument(
        "--web-root",
        default=os.environ.get("GLASSHOUSE_AGENT_WEB_ROOT", "/"),
        help="root under which managed browser policy is written (env GLASSHOUSE_AGENT_WEB_ROOT, default /)",
    )
    p.add_argument("--backoff-base", type=float, default=1.0, help="first retry delay in seconds")
    p.add_argument(
        "--usb",
        choices=("auto", "usbguard", "sysfs", "off"),
        default=os.environ.get("GLASSHOUSE_AGENT_USB", "auto"),
        help="USB control: through USBGuard, kernel sysfs authorisation, the first that works, or off",
    )
    p.add_argument(
        "--sysfs-root", default=os.environ.get("GLASSHOUSE_AGENT_SYSFS", "/sys"), help="sysfs for the fallback"
    )
    p.add_argument("--usb-socket", help="socket for usb-unlock/usb-request (default: usb.sock beside --socket)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("session", parents=[common], help="the per-user helper: active window and idle time")
    p.add_argument("--display", help="X display (default $DISPLAY)")
    p.set_defaults(func=cmd_session)

    p = sub.add_parser("status", parents=[common], help="enrolment, spool, uploads, and the agent's CPU and memory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sample", type=float, default=1.0, help="seconds over which CPU%% is measured")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("flush", parents=[common], help="upload everything spooled now, then exit")
    p.set_defaults(func=cmd_flush)

    p = sub.add_parser("usb-request", parents=[common], help="ask IT for temporary access to a USB device")
    p.add_argument("--vid", help="vendor id, 4 hex digits (lsusb shows VID:PID)")
    p.add_argument("--pid", help="product id, 4 hex digits")
    p.add_argument("--serial", default="", help="the device's serial (default: any device of that model)")
    p.add_argument("--reason", help="why you need it (10-500 characters)")
    p.add_argument("--minutes", type=int, help="for how long (5-1440)")
    p.add_argument("--status", type=int, metavar="ID", help="show the state of an earlier request instead")
    p.add_argument("--usb-socket", help="the service's USB socket (default: usb.sock beside --socket)")
    p.set_defaults(func=cmd_usb_request)

    p = sub.add_parser("usb-unlock", parents=[common], help="enter an offline USB access code from IT")
    p.add_argument("code", help="the code, e.g. 1b2c3d-07815567-ABCDEFGHIJ")
    p.add_argument("--usb-socket", help="the service's USB socket (default: usb.sock beside --socket)")
    p.set_defaults(func=cmd_usb_unlock)

    from glasshouse_agent.web.install import DEFAULT_HOST_PATH, DEV_EXTENSION_ID

    p = sub.add_parser("browser-install", help="native messaging host manifests and the extension force-install policy")
    p.add_argument("--root", default="/", help="install under this directory instead of / (packaging, tests)")
    p.add_argument("--host-path", default=DEFAULT_HOST_PATH, help="the installed glasshouse-agent-browser-host")
    p.add_argument("--extension-id", default=DEV_EXTENSION_ID, help="the extension's id (a release key's id)")
    p.add_argument("--update-url", help="update manifest URL for ExtensionInstallForcelist (omit: no force-install)")
    p.add_argument("--remove", action="store_true", help="remove the manifests and the force-install policy")
    p.set_defaults(func=cmd_browser_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args))
