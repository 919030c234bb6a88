"""App blocking, for real: a copy of `sleep` named `forbidden-game` (with a suffix unique to
this run, as other runs of the suite may share the machine) in a temporary directory is
started and must be terminated, with an `app_block` event and a message to the user; an
allowed process must survive. Both ways of finding processes run: the kernel's process-events
connector and the /proc scan. Needs root (signals to any process); without it the real tests
skip with the reason, except under CI=true where they fail.

Nothing here can touch another process on the machine: the only names blocked are the test's
own dummy programs and `kthreadd` (a kernel thread, which must be left alone anyway)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glasshouse_agent.apps import AppBlocker, AppRule, ProcInfo, parse_rules, read_process
from glasshouse_agent.policy import PolicyError
from glasshouse_agent.service import Service
from glasshouse_agent.session import SessionHelper
from glasshouse_agent.spool import Spool
from tests.conftest import make_policy
from tests.controlloop import pump, settle
from tests.desktop import wait_for

# comm holds 15 characters: "forbidden-" + 5 hex digits fits, so both comm and exe match.
RUN = uuid.uuid4().hex[:5]
GAME = f"forbidden-{RUN}"
ALLOWED = f"allowed-{RUN}"
STUBBORN = f"stubborn-{RUN}"


def require_root() -> None:
    if os.geteuid() == 0:
        return
    reason = "needs root (process-events connector, signalling other users' processes)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def blocking(*names: str, path: str = "") -> dict[str, Any]:
    return {"apps": {"block": [{"name": n, "path": path} for n in names]}}


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a copy of a system binary under another name; everything started is killed after."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, ignore_sigterm: bool = False) -> subprocess.Popen[bytes]:
        exe = tmp_path / name
        if not exe.exists():
            shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
        # An ignored signal stays ignored across exec(), from the program's first instruction.
        ignore = (lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if ignore_sigterm else None
        proc = subprocess.Popen([str(exe), *args], preexec_fn=ignore)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, str, str]] = []

    def __call__(self, uid: int, title: str, body: str) -> None:
        self.messages.append((uid, title, body))


@pytest.fixture
def blocker_factory() -> Iterator[Callable[..., AppBlocker]]:
    made: list[AppBlocker] = []

    def make(**kwargs: Any) -> AppBlocker:
        blocker = AppBlocker(**kwargs)
        made.append(blocker)
        return blocker

    yield make
    for blocker in made:
        blocker.close()


# -- real ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_connector", [True, False], ids=["connector", "scan"])
def test_a_blocked_app_is_terminated_logged_and_the_user_told_while_others_survive(
    use_connector: bool,
    programs: Callable[..., subprocess.Popen[bytes]],
    blocker_factory: Callable[..., AppBlocker],
    tmp_path: Path,
) -> None:
    require_root()
    told = Recorder()
    blocker = blocker_factory(notify=told, use_connector=use_connector)
    allowed = programs(ALLOWED, "60")
    assert blocker.apply_policy(make_policy(**blocking(GAME, "kthreadd")), time.time()) == []
    assert blocker.mode == ("connector" if use_connector else "scan")

    game = programs(GAME, "60")
    events = pump(blocker, lambda evs: len(evs) >= 1 and game.poll() is not None)
    assert game.wait(5) == -signal.SIGTERM
    assert events == [
        {
            "kind": "app_block",
            "time": events[0]["time"],
            "name": GAME,
            "pid": game.pid,
            "exe": str(tmp_path / GAME),
            "user": "root",
        }
    ]
    assert told.messages == [
        (0, "Application blocked", told.messages[0][2]),
    ]
    assert f"{GAME} was closed" in told.messages[0][2]
    pump(blocker, lambda _: True)
    assert allowed.poll() is None  # not on the list
    assert read_process(2) is None or read_process(2).kernel_thread  # type: ignore[union-attr]


def test_a_blocked_app_already_running_is_terminated_when_the_policy_arrives(
    programs: Callable[..., subprocess.Popen[bytes]], blocker_factory: Callable[..., AppBlocker]
) -> None:
    require_root()
    game = programs(GAME, "60")
    wait_for(lambda: read_process(game.pid) is not None and read_process(game.pid).exe.endswith(GAME))  # type: ignore[union-attr]
    blocker = blocker_factory()
    events = blocker.apply_policy(make_policy(**blocking(GAME)), time.time())
    assert [(e["name"], e["pid"]) for e in events] == [(GAME, game.pid)]
    assert game.wait(5) == -signal.SIGTERM


def test_an_app_that_ignores_sigterm_is_killed_after_the_grace_period(
    programs: Callable[..., subprocess.Popen[bytes]], blocker_factory: Callable[..., AppBlocker]
) -> None:
    require_root()
    blocker = blocker_factory(grace=0.5)
    blocker.apply_policy(make_policy(**blocking(STUBBORN)), time.time())
    stubborn = programs(STUBBORN, "60", ignore_sigterm=True)
    start = time.monotonic()
    events = pump(blocker, lambda evs: len(evs) >= 1)
    assert events[0]["pid"] == stubborn.pid
    pump(blocker, lambda _: stubborn.poll() is not None, timeout=5)
    assert stubborn.wait(5) == -signal.SIGKILL
    assert time.monotonic() - start >= 0.5


def test_matching_by_path_and_protected_processes(
    programs: Callable[..., subprocess.Popen[bytes]], blocker_factory: Callable[..., AppBlocker], tmp_path: Path
) -> None:
    require_root()
    protected: list[int] = []
    blocker = blocker_factory(protected=lambda: protected)
    # The name matches but the path does not: left alone.
    blocker.apply_policy(make_policy(**blocking(GAME, path=f"/opt/games/{GAME}")), time.time())
    game = programs(GAME, "60")
    assert settle(blocker) == []
    assert game.poll() is None
    # A protected process (the service passes its session helpers) is never touched.
    protected.append(game.pid)
    blocker.apply_policy(make_policy(**blocking(GAME, path=str(tmp_path / GAME))), time.time())
    assert game.poll() is None
    protected.clear()
    events = blocker.apply_policy(make_policy(**blocking(GAME)), time.time())
    assert [e["pid"] for e in events] == [game.pid]
    assert game.wait(5) == -signal.SIGTERM


def test_lifting_the_block_lets_the_app_run(
    programs: Callable[..., subprocess.Popen[bytes]], blocker_factory: Callable[..., AppBlocker]
) -> None:
    require_root()
    blocker = blocker_factory()
    blocker.apply_policy(make_policy(**blocking(GAME)), time.time())
    blocker.apply_policy(make_policy(), time.time())
    assert blocker.mode == "off"
    game = programs(GAME, "60")
    assert settle(blocker) == []
    assert game.poll() is None


def test_the_service_terminates_logs_and_tells_the_users_session_helper(
    programs: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    require_root()
    spool_path = str(tmp_path / "spool.sqlite3")
    spool = Spool(spool_path)
    spool.set("policy", make_policy(collect={"window": False, "idle": False}, **blocking(GAME)).dumps())
    spool.close()
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    service = Service(
        spool_path=spool_path,
        socket_path=str(sockdir / "session.sock"),
        uplink=None,
        utmp_path=str(tmp_path / "no-utmp"),
        checkpoint_seconds=0.2,
    )
    thread = threading.Thread(target=service.serve, daemon=True)
    thread.start()
    helper = SessionHelper(service.socket_path, lambda kind, policy: pytest.fail("no collector is allowed"))
    shown: list[dict[str, object]] = []
    helper.notifier.show = shown.append  # type: ignore[method-assign,assignment]
    helper_thread = threading.Thread(target=helper.run, daemon=True)
    try:
        assert service.ready.wait(10)
        helper_thread.start()
        wait_for(lambda: helper.policy.apps != {})  # connected, policy received
        game = programs(GAME, "60")
        assert game.wait(10) == -signal.SIGTERM
        wait_for(lambda: len(shown) == 1)
        assert shown[0]["type"] == "notify"
        assert GAME in str(shown[0]["body"])

        def rows() -> list[dict[str, Any]]:
            db = Spool(spool_path)
            try:
                return [json.loads(a) for (a,) in db._db.execute("SELECT attrs FROM spans WHERE kind = 'app_block'")]
            finally:
                db.close()

        wait_for(lambda: len(rows()) == 1)
        assert rows()[0]["pid"] == game.pid
        assert rows()[0]["name"] == GAME
    finally:
        helper.stop()
        helper_thread.join(10)
        service.stop()
        thread.join(15)
    assert not thread.is_alive()


# -- no root needed ----------------------------------------------------------------------


def test_never_pid_1_the_agent_itself_kernel_threads_or_zombies() -> None:
    blocker = AppBlocker()
    try:

        def info(pid: int, *, kernel: bool = False, zombie: bool = False) -> ProcInfo:
            return ProcInfo(pid, "x", "/usr/bin/x", 0, 1, kernel, zombie)

        assert not blocker._may_kill(info(1))
        assert not blocker._may_kill(info(0))
        assert not blocker._may_kill(info(os.getpid()))
        assert not blocker._may_kill(info(2, kernel=True))
        assert not blocker._may_kill(info(12345, zombie=True))
        assert blocker._may_kill(info(12345))
    finally:
        blocker.close()


def test_names_match_the_process_name_or_the_executables_file_name() -> None:
    steam = AppRule("steam")
    assert steam.matches("steam", "/usr/games/steam")
    assert steam.matches("steam", "")  # executable unreadable: the process name decides
    assert steam.matches("renamed", "/usr/games/steam")
    assert not steam.matches("steamwebhelper", "/usr/lib/steam/steamwebhelper")
    long_name = AppRule("a-very-long-game-name")  # comm holds only 15 characters
    assert long_name.matches("a-very-long-gam", "/opt/a-very-long-game-name")
    assert not long_name.matches("a-very-long-gam", "/opt/a-very-long-game-other")
    pinned = AppRule("steam", "/usr/games/steam")
    assert pinned.matches("steam", "/usr/games/steam")
    assert not pinned.matches("steam", "/home/eve/steam")


@pytest.mark.parametrize(
    ("apps", "field"),
    [
        ({"block": {"name": "steam"}}, "apps.block"),
        ({"block": ["steam"]}, "apps.block[0]"),
        ({"block": [{"name": ""}]}, "apps.block[0].name"),
        ({"block": [{"name": "bin/steam"}]}, "apps.block[0].name"),
        ({"block": [{"name": "steam", "path": "games/steam"}]}, "apps.block[0].path"),
        ({"block": [{"name": "steam", "path": 3}]}, "apps.block[0].path"),
    ],
)
def test_bad_block_lists_are_refused_naming_the_field(apps: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_rules(make_policy(apps=apps))
    assert exc.value.field == field


def test_a_refused_block_list_leaves_the_previous_one_in_force() -> None:
    blocker = AppBlocker(use_connector=False)
    try:
        blocker.apply_policy(make_policy(**blocking("no-such-program-xyz")), time.time())
        blocker.apply_policy(make_policy(apps={"block": "everything"}), time.time())
        assert blocker.rules == (AppRule("no-such-program-xyz"),)
    finally:
        blocker.close()
