"""USB device control in the service: a thread of its own that applies the policy's `usb`
section through USBGuard (or sysfs), watches devices come and go, ends temporary access on
time, and answers `glasshouse-agent usb-unlock` / `usb-request` on a Unix socket of its own.

Events go to the spool (`usb` events, docs/agent-protocol.md). The thread owns its own Spool
connection, as every thread does."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from glasshouse_agent.ipc import encode, peer_credentials
from glasshouse_agent.policy import Policy, PolicyError
from glasshouse_agent.spool import Spool
from glasshouse_agent.usb import offline
from glasshouse_agent.usb.backends import BackendError, Sysfs, UsbGuard, UsbGuardWatch, WatchEvent
from glasshouse_agent.usb.device import Device, parse_device_rule, sysfs_vendor
from glasshouse_agent.usb.policy import TemporaryEntry, UsbPolicy, Verdict, decide, parse_usb
from glasshouse_agent.usb.rules import RULE_PARSER, RuleError, generate_rules, validate_rules

log = logging.getLogger(__name__)

MAX_STRING = 256
MAX_REQUEST_LINE = 4096
UNLOCK_FAILURES_PER_MINUTE = 5
RETRY_SECONDS = 30.0
_KV_APPLIED = "usb_applied_version"
_KV_ACTIVE = "usb_temporary_active"
_KV_GRANTS = "usb_offline_grants"


@dataclass(frozen=True)
class UsbOptions:
    socket_path: str
    backend: str = "auto"  # auto | usbguard | sysfs | off
    usbguard: str = "usbguard"
    rule_parser: str = RULE_PARSER
    sysfs_root: str = "/sys"
    poll_seconds: float = 1.0  # sysfs device polling
    socket_mode: int = 0o666  # any local user may ask; SO_PEERCRED says who


@dataclass
class _Client:
    sock: socket.socket
    uid: int
    buf: bytes = b""


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _console_user() -> str:
    """Who is at the machine: the first logged-in person (not root). Empty when unknown."""
    try:
        import psutil

        for user in psutil.users():
            if user.name and user.name != "root":
                return str(user.name)
    except Exception:  # noqa: S110 - best effort; the event goes without a user
        pass
    return ""


def offline_grants(spool: Spool, now: float) -> list[TemporaryEntry]:
    """Access granted by offline codes (kept in the spool, so it survives a restart; a day past
    its end it is forgotten). Removable-media control reads it too: a stick unlocked with a
    code must not be remounted read-only."""
    raw = json.loads(spool.get(_KV_GRANTS) or "[]")
    return [TemporaryEntry(**g) for g in raw if g["until"] > now - 86400]


class UsbControl:
    def __init__(
        self,
        options: UsbOptions,
        *,
        spool_path: str,
        uplink: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.spool_path = spool_path
        self.uplink = uplink
        self.clock = clock
        self._lock = threading.Lock()
        self._pending_policy: Policy | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        # state of the thread
        self.policy: UsbPolicy | None = None
        self.backend: UsbGuard | Sysfs | None = None
        self.applied_rules: list[str] | None = None
        self.last_error: str | None = None
        self._watch: UsbGuardWatch | None = None
        self._known: dict[str, Device] = {}  # present devices by port (sysfs) or id (USBGuard)
        self._pending_insert: dict[int, Device] = {}
        self._failures: dict[int, list[float]] = {}
        self._retry_at: float | None = None
        self._next_probe = 0.0
        self._expiry_at: float | None = None  # when the earliest temporary access in force ends

    # -- the service's side --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="usb", daemon=True)
        self._thread.start()

    def set_policy(self, policy: Policy) -> None:
        with self._lock:
            self._pending_policy = policy
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the thread ----------------------------------------------------------------------

    def _main(self) -> None:
        spool = Spool(self.spool_path)
        self.spool = spool
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        listener = self._listen()
        sel.register(listener, selectors.EVENT_READ, "listen")
        clients: dict[int, _Client] = {}
        self.ready.set()
        try:
            while not self._stop.is_set():
                with self._lock:
                    pending, self._pending_policy = self._pending_policy, None
                if pending is not None:
                    self._on_policy(pending)
                now = self.clock()
                if self.policy is not None:
                    self._ensure_backend(now)
                    self._sync_watch(sel)
                    if self._retry_at is not None and now >= self._retry_at:
                        self._refresh()
                    if self._expiry_at is not None and now >= self._expiry_at:
                        self._refresh()
                    if isinstance(self.backend, Sysfs):
                        self._poll_sysfs()
                timeout = self._timeout(self.clock())
                for key, _ in sel.select(timeout):
                    if key.data == "wake":
                        with contextlib.suppress(BlockingIOError, OSError):
                            while os.read(self._wake_r, 512):
                                pass
                    elif key.data == "listen":
                        self._accept(listener, sel, clients)
                    elif key.data == "watch":
                        self._on_watch()
                    elif key.data == "client":
                        client = clients.get(key.fd)
                        if client is not None:
                            self._on_client(client, sel, clients)
        except Exception:
            log.exception("USB control stopped by an error; USBGuard keeps enforcing the last rules")
        finally:
            if self._watch is not None:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(self._watch.fd)
                self._watch.close()
                self._watch = None
            for client in clients.values():
                client.sock.close()
            sel.close()
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.options.socket_path)
            spool.close()

    def _timeout(self, now: float) -> float:
        deadlines = [now + 60.0]
        if self._expiry_at is not None:
            deadlines.append(self._expiry_at)
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if self.policy is not None and isinstance(self.backend, Sysfs):
            deadlines.append(now + self.options.poll_seconds)
        if self.policy is not None and (self.backend is None or isinstance(self.backend, Sysfs)):
            deadlines.append(self._next_probe)
        if self.policy is not None and isinstance(self.backend, UsbGuard) and self._watch is None:
            deadlines.append(now + 5.0)
        return max(0.0, min(deadlines) - now)

    # -- policy --------------------------------------------------------------------------

    def _on_policy(self, policy: Policy) -> None:
        try:
            parsed = parse_usb(policy.usb)
        except PolicyError as exc:
            self.last_error = str(exc)
            log.error("USB policy refused (%s); the previous USB rules stay in force", exc)
            return
        if parsed is None:
            if self.policy is None:
                log.info("the server does not manage USB devices; USBGuard and sysfs are left as they are")
            else:
                log.warning("the USB section disappeared from the policy; the last USB rules stay in force")
            return
        self.last_error = None
        self.policy = parsed
        self._refresh()

    def _grants(self) -> list[TemporaryEntry]:
        return offline_grants(self.spool, self.clock())

    def _save_grants(self, grants: list[TemporaryEntry]) -> None:
        self.spool.set(_KV_GRANTS, json.dumps([asdict(g) for g in grants]))

    def _ensure_backend(self, now: float) -> None:
        """Pick USBGuard when its daemon answers, else sysfs (backend "auto"); in sysfs mode look
        for USBGuard again every minute, and without any backend every 10 s."""
        if now < self._next_probe:
            return
        usbguard = UsbGuard(self.options.usbguard)
        if self.backend is not None:
            self._next_probe = now + 60.0
            if self.options.backend != "auto" or isinstance(self.backend, UsbGuard) or not usbguard.available():
                return
            log.info("USBGuard is answering now: enforcing through it instead of sysfs")
        choice = self.options.backend
        sysfs = Sysfs(self.options.sysfs_root)
        if choice in ("auto", "usbguard") and usbguard.available():
            self.backend = usbguard
            self._next_probe = float("inf")
        elif choice in ("auto", "sysfs") and sysfs.available():
            self.backend = sysfs
            self._next_probe = now + 60.0
        else:
            log.warning("no way to enforce the USB policy yet (backend %s); trying again in 10 s", choice)
            self._next_probe = now + 10.0
            return
        log.info("USB policy enforced through %s", self.backend.name)
        self.applied_rules = None
        self._known = {self._key(d): d for d in self._devices()}
        self._refresh()

    def _devices(self) -> list[Device]:
        if self.backend is None:
            return []
        try:
            return self.backend.devices()
        except BackendError as exc:
            log.warning("cannot list USB devices: %s", exc)
            return []

    def _verdict(self, device: Device, now: float | None = None) -> tuple[Verdict, str]:
        assert self.policy is not None
        return decide(
            self.policy,
            device.vid,
            device.pid,
            device.serial,
            device.interfaces,
            now=self.clock() if now is None else now,
            grants=self._grants(),
        )

    def _refresh(self) -> None:
        """Bring enforcement in line with the policy, the offline grants and the clock: rules,
        present devices, temporary_start/temporary_end events, the policy event."""
        if self.policy is None:
            return
        now = self.clock()
        grants = self._grants()
        events = self._temporary_events(now, grants)
        untils = [t.until for t in self.policy.active_temporary(now, grants)]
        self._expiry_at = min(untils) if untils else None
        if self.backend is None:
            self.spool.add_events(events)
            self._ensure_backend(now)
            return
        rules = generate_rules(self.policy, now=now, grants=grants)
        try:
            if isinstance(self.backend, UsbGuard):
                validate_rules(rules, self.options.rule_parser)
            if rules != self.applied_rules or isinstance(self.backend, Sysfs):
                self.backend.set_rules(rules)
                self.applied_rules = rules
            self.backend.reconcile(lambda d: self._verdict(d, now)[0] != "blocked")
        except RuleError as exc:
            log.error("generated USB rules refused by USBGuard's parser (%s); previous rules stay", exc)
            self.last_error = str(exc)
            self.spool.add_events(events)
            return
        except BackendError as exc:
            log.warning("applying USB policy failed (%s); retrying in %.0fs", exc, RETRY_SECONDS)
            self.last_error = str(exc)
            self._retry_at = now + RETRY_SECONDS
            self.spool.add_events(events)
            return
        self._retry_at = None
        if self.spool.get(_KV_APPLIED) != str(self.policy.version):
            events.append({"kind": "usb", "time": now, "action": "policy", "version": self.policy.version})
            self.spool.set(_KV_APPLIED, str(self.policy.version))
            log.info("USB policy version %d applied through %s", self.policy.version, self.backend.name)
        self.spool.add_events(events)

    def _temporary_events(self, now: float, grants: list[TemporaryEntry]) -> list[dict[str, Any]]:
        assert self.policy is not None
        active = {t.key: t for t in self.policy.active_temporary(now, grants)}
        before = {e["key"]: e for e in json.loads(self.spool.get(_KV_ACTIVE) or "[]")}
        events: list[dict[str, Any]] = []
        for key, entry in active.items():
            if key not in before:
                events.append(self._temporary_event("temporary_start", entry, now))
        for key, raw in before.items():
            if key not in active:
                entry = TemporaryEntry(**{k: v for k, v in raw.items() if k != "key"})
                # Ended on time, or lifted early (the server dropped it from the policy).
                events.append(self._temporary_event("temporary_end", entry, min(now, max(entry.until, 0.0))))
        if events or set(active) != set(before):
            self.spool.set(_KV_ACTIVE, json.dumps([{"key": k, **asdict(t)} for k, t in active.items()]))
        for event in events:
            log.info("USB %s: %s:%s %s", event["action"], event["vid"], event["pid"], event.get("serial", ""))
        return events

    @staticmethod
    def _temporary_event(action: str, entry: TemporaryEntry, when: float) -> dict[str, Any]:
        event: dict[str, Any] = {
            "kind": "usb",
            "time": when,
            "action": action,
            "vid": entry.vid,
            "pid": entry.pid,
            "serial": entry.serial,
            "until": entry.until,
        }
        if entry.offline:
            event["offline"] = True
        if entry.request is not None:
            event["request"] = entry.request
        return event

    # -- devices -------------------------------------------------------------------------

    @staticmethod
    def _key(device: Device) -> str:
        return f"id:{device.id}" if device.id is not None else f"port:{device.port}"

    def _device_event(self, action: str, device: Device, verdict: Verdict, cls: str) -> dict[str, Any]:
        vendor = device.vendor or sysfs_vendor(self.options.sysfs_root, device.port)
        event: dict[str, Any] = {
            "kind": "usb",
            "time": self.clock(),
            "action": action,
            "verdict": verdict,
            "vid": device.vid,
            "pid": device.pid,
            "serial": device.serial[:MAX_STRING],
            "vendor": vendor[:MAX_STRING],
            "product": device.product[:MAX_STRING],
            "class": cls,
            "port": device.port[:MAX_STRING],
        }
        user = _console_user()
        if user:
            event["user"] = user
        log.info(
            "USB %s %s:%s %r (%s) on %s: %s", action, device.vid, device.pid, device.product, cls, device.port, verdict
        )
        return event

    def _reported_verdict(self, device: Device, target: str) -> tuple[Verdict, str]:
        verdict, cls = self._verdict(device)
        if target != "allow":
            return "blocked", cls
        if verdict == "blocked":  # the daemon let it in against our policy: say what happened
            log.warning("USBGuard allowed %s:%s although the policy blocks it", device.vid, device.pid)
            return "allowed", cls
        return verdict, cls

    def _sync_watch(self, sel: selectors.BaseSelector) -> None:
        if not isinstance(self.backend, UsbGuard):
            return
        if self._watch is not None and not self._watch.alive():
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(self._watch.fd)
            self._watch.close()
            self._watch = None
        if self._watch is None:
            try:
                self._watch = UsbGuardWatch(self.options.usbguard)
            except OSError as exc:
                log.warning("cannot run usbguard watch: %s", exc)
                return
            sel.register(self._watch.fd, selectors.EVENT_READ, "watch")

    def _on_watch(self) -> None:
        if self._watch is None or self.policy is None:
            return
        events: list[dict[str, Any]] = []
        for ev in self._watch.read():
            events += self._watch_event(ev)
        if events:
            self.spool.add_events(events)

    def _watch_event(self, ev: WatchEvent) -> list[dict[str, Any]]:
        if ev.kind == "Connected":
            # (Re)connected, perhaps to a restarted daemon: make sure it has our rules.
            self.applied_rules = None
            self._refresh()
            return []
        if ev.device_id is None or "device_rule" not in ev.fields:
            return []
        try:
            device = parse_device_rule(ev.fields["device_rule"], ev.device_id)
        except ValueError as exc:
            log.warning("unreadable USBGuard event: %s", exc)
            return []
        key = self._key(device)
        if ev.kind == "PresenceChanged":
            what = ev.fields.get("event")
            if what == "Insert":
                self._pending_insert[ev.device_id] = device
                self._known[key] = device
            elif what == "Remove":
                self._pending_insert.pop(ev.device_id, None)
                known = self._known.pop(key, device)
                verdict, cls = self._reported_verdict(known, known.target or device.target)
                return [self._device_event("remove", device, verdict, cls)]
            return []
        if ev.kind == "PolicyApplied":
            target = ev.fields.get("target_new", device.target)
            self._known[key] = replace(device, target=target)
            inserted = self._pending_insert.pop(ev.device_id, None)
            if inserted is not None:
                verdict, cls = self._reported_verdict(device, target)
                return [self._device_event("insert", device, verdict, cls)]
        return []

    def _poll_sysfs(self) -> None:
        assert isinstance(self.backend, Sysfs)
        now = self.clock()
        current = {self._key(d): d for d in self.backend.devices() if not d.port.startswith("usb")}
        events = []
        for key, device in current.items():
            if key in self._known:
                continue
            verdict, cls = self._verdict(device, now)
            try:
                self.backend.authorize(device, verdict != "blocked")
            except BackendError as exc:
                log.warning("%s", exc)
            events.append(self._device_event("insert", device, verdict, cls))
        for key, device in list(self._known.items()):
            if key not in current and not device.port.startswith("usb"):
                verdict, cls = self._verdict(device, now)
                events.append(self._device_event("remove", device, verdict, cls))
        self._known = current
        if events:
            self.spool.add_events(events)

    # -- the local socket: usb-unlock and usb-request ------------------------------------

    def _listen(self) -> socket.socket:
        path = self.options.socket_path
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, self.options.socket_mode)
        listener.listen(8)
        listener.setblocking(False)
        return listener

    def _accept(self, listener: socket.socket, sel: selectors.BaseSelector, clients: dict[int, _Client]) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        cred = peer_credentials(sock)
        sock.setblocking(False)
        clients[sock.fileno()] = _Client(sock, cred.uid)
        sel.register(sock, selectors.EVENT_READ, "client")

    def _drop(self, client: _Client, sel: selectors.BaseSelector, clients: dict[int, _Client]) -> None:
        fd = client.sock.fileno()
        if clients.pop(fd, None) is not None:
            sel.unregister(client.sock)

    def _on_client(self, client: _Client, sel: selectors.BaseSelector, clients: dict[int, _Client]) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST_LINE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        client.buf += data
        if b"\n" not in client.buf:
            if not data or len(client.buf) > MAX_REQUEST_LINE:
                self._drop(client, sel, clients)
                client.sock.close()
            return
        self._drop(client, sel, clients)
        line = client.buf.split(b"\n", 1)[0]
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self._reply(client.sock, {"ok": False, "error": "malformed request"})
            return
        kind = request.get("type")
        if kind == "usb-unlock":
            self._reply(client.sock, self._unlock(request, client.uid))
        elif kind in ("usb-request", "usb-request-status"):
            reply = self._check_request(request) if kind == "usb-request" else None
            if reply is not None:
                self._reply(client.sock, reply)
            else:
                # The server may be slow: answer from a thread of its own so the USB events
                # keep flowing meanwhile.
                threading.Thread(target=self._server_call, args=(client.sock, request, client.uid), daemon=True).start()
        else:
            self._reply(client.sock, {"ok": False, "error": f"unknown request {kind!r}"})

    @staticmethod
    def _reply(sock: socket.socket, message: dict[str, Any]) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(5.0)
            sock.sendall(encode(message))
        except OSError:
            pass
        finally:
            sock.close()

    def _unlock(self, request: dict[str, Any], uid: int) -> dict[str, Any]:
        now = self.clock()
        recent = [t for t in self._failures.get(uid, []) if t > now - 60]
        self._failures[uid] = recent
        if len(recent) >= UNLOCK_FAILURES_PER_MINUTE:
            return {"ok": False, "error": "too many wrong codes; wait a minute"}
        policy = self.policy
        if policy is None or not policy.offline_key:
            return {"ok": False, "error": "offline access codes are not enabled on this device"}
        code = request.get("code")
        try:
            parsed = offline.parse_code(code if isinstance(code, str) else "")
        except offline.CodeError as exc:
            recent.append(now)
            return {"ok": False, "error": str(exc)}
        plugged = [d for d in self._devices() if d.vid == parsed.vid and d.pid == parsed.pid]
        if not plugged:
            return {"ok": False, "error": f"USB device {parsed.vid}:{parsed.pid} is not plugged in"}
        serial: str | None = None
        for device in plugged:
            if offline.check(policy.offline_key, parsed, device.serial):
                serial = device.serial
                break
        if serial is None and offline.check(policy.offline_key, parsed, ""):
            serial = ""
        if serial is None:
            recent.append(now)
            log.warning("USB offline code refused for uid %d (%s:%s)", uid, parsed.vid, parsed.pid)
            return {"ok": False, "error": "this code is not valid for this device"}
        if parsed.until <= now:
            return {"ok": False, "error": "this code has expired"}
        grant = TemporaryEntry(parsed.vid, parsed.pid, serial, parsed.until, None, offline=True)
        grants = [g for g in self._grants() if g.key != grant.key]
        self._save_grants([*grants, grant])
        log.info("USB offline access for %s:%s until %s (uid %d)", grant.vid, grant.pid, grant.until, uid)
        self._refresh()
        return {"ok": True, "vid": grant.vid, "pid": grant.pid, "serial": serial, "until": grant.until}

    @staticmethod
    def _check_request(request: dict[str, Any]) -> dict[str, Any] | None:
        for key in ("vid", "pid"):
            value = request.get(key)
            if not isinstance(value, str) or len(value) != 4 or any(c not in "0123456789abcdef" for c in value):
                return {"ok": False, "error": f"{key} must be 4 lowercase hex digits"}
        reason = request.get("reason")
        if not isinstance(reason, str) or not 10 <= len(reason.strip()) <= 500:
            return {"ok": False, "error": "the reason must be 10 to 500 characters"}
        minutes = request.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 5 <= minutes <= 1440:
            return {"ok": False, "error": "minutes must be between 5 and 1440"}
        serial = request.get("serial", "")
        if not isinstance(serial, str) or len(serial) > 126:
            return {"ok": False, "error": "bad serial"}
        return None

    def _server_call(self, sock: socket.socket, request: dict[str, Any], uid: int) -> None:
        from glasshouse_agent.uplink import UplinkError

        if self.uplink is None:
            self._reply(sock, {"ok": False, "error": "this device is not enrolled with a server"})
            return
        try:
            if request["type"] == "usb-request":
                vendor = product = ""
                for device in self._known.values():
                    if device.vid == request["vid"] and device.pid == request["pid"]:
                        vendor = device.vendor or sysfs_vendor(self.options.sysfs_root, device.port)
                        product = device.product
                        break
                body = {
                    "vid": request["vid"],
                    "pid": request["pid"],
                    "serial": request.get("serial", ""),
                    "vendor": vendor,
                    "product": product,
                    "reason": request["reason"].strip(),
                    "minutes": request["minutes"],
                }
                # The protocol's endpoint; Uplink's generic request keeps auth, TLS and errors.
                status, _, data = self.uplink._request("POST", "/usb-requests", json.dumps(body).encode())
                log.info("USB access requested by %s: %s", _user_name(uid), data)
            else:
                number = request.get("request")
                if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                    self._reply(sock, {"ok": False, "error": "request must be a positive integer"})
                    return
                status, _, data = self.uplink._request("GET", f"/usb-requests/{number}", None)
        except UplinkError as exc:
            self._reply(sock, {"ok": False, "error": f"the server said: {exc}"})
            return
        except Exception as exc:
            log.exception("USB request failed")
            self._reply(sock, {"ok": False, "error": str(exc)})
            return
        self._reply(sock, {"ok": True, "answer": data if isinstance(data, dict) else {}, "status_code": status})
