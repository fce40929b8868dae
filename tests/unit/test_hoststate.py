"""hoststate: deploy ids, the mkdir lock, state.json, the audit log and the local history.

Two kinds of runner: RecordingRunner with canned answers (exact argv and refusal details), and
a small subclass that keeps directories so lock sequences (take, refuse, release, take again)
run as on a host. A third group runs the same functions through LocalRunner on a temporary
directory, proving the argv work with the real mkdir/tee/tail/rm.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jitsi_ops import hoststate
from jitsi_ops.errors import LockHeld, OpsError, RemoteCommandError
from jitsi_ops.hoststate import (
    DeployState,
    LockInfo,
    acquire_lock,
    append_audit,
    append_history,
    break_lock,
    holding_lock,
    new_deploy_id,
    read_audit,
    read_history,
    read_lock,
    read_state,
    release_lock,
    sanitize_record,
    write_state,
)
from jitsi_ops.runner import LocalRunner, RecordingRunner, Result

STACK = "/opt/jitsi-meet"
LOCK = f"{STACK}/.jitsi-ops/lock"
OWNER = f"{LOCK}/owner.json"
SECRET = "0123456789abcdef0123456789abcdef"


def info(deploy_id: str = "prod-20261126T063357Z-a1b2c3", **changes: object) -> LockInfo:
    base = {
        "owner": "alice",
        "host": "laptop",
        "pid": 4242,
        "time": "2026-11-26T06:33:57Z",
        "message": "upgrade to stable-11146-2",
        "deploy_id": deploy_id,
    }
    base.update(changes)
    return LockInfo.from_dict(base)


@dataclass
class HostRunner(RecordingRunner):
    """RecordingRunner that also keeps directories, for the handful of commands hoststate runs."""

    dirs: set[str] = field(default_factory=set)

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,  # noqa: ARG002 - the Runner protocol's signature
        stdin: str | None = None,
    ) -> Result:
        key = tuple(argv)
        self.calls.append(key)
        code, out, err = 0, "", ""
        if key[:3] == ("sh", "-c", hoststate._LOCK_SCRIPT):
            code = self._take(lock=key[4], owner=key[6])
        elif key[0] == "mkdir":
            self.dirs.add(key[-1])
        elif key[0] == "test":
            code = 0 if key[-1] in self.dirs or key[-1] in self.files else 1
        elif key[:2] == ("rm", "-rf"):
            self.dirs.discard(key[-1])
            for path in [p for p in self.files if p.startswith(key[-1] + "/")]:
                del self.files[path]
        elif key[0] == "tee":
            self.files[key[-1]] = self.files.get(key[-1], b"") + (stdin or "").encode()
        elif key[0] == "tail":
            if key[-1] not in self.files:
                code, err = (
                    1,
                    f"tail: cannot open '{key[-1]}' for reading: No such file or directory",
                )
            else:
                out = "".join(self.files[key[-1]].decode().splitlines(True)[-int(key[2]) :])
        result = Result(key, code, out, err)
        if check and code:
            raise RemoteCommandError(key, code, err)
        return result

    def _take(self, lock: str, owner: str) -> int:
        """The lock script: the lock appears with its owner, or the script says it is held."""
        if lock in self.dirs:
            return hoststate.LOCK_HELD_EXIT
        self.dirs.add(lock)
        self.files[f"{lock}/owner.json"] = owner.encode()
        return 0


# --- deploy ids -------------------------------------------------------------------------------


def test_new_deploy_id_format_and_order() -> None:
    early = new_deploy_id("prod", now=datetime(2026, 11, 26, 6, 33, 57, tzinfo=UTC), token="a1b2c3")
    later = new_deploy_id("prod", now=datetime(2026, 11, 26, 6, 34, 0, tzinfo=UTC))
    assert early == "prod-20261126T063357Z-a1b2c3", early
    assert later > early, f"ids must sort by time: {early} vs {later}"
    assert hoststate.env_of_deploy_id(later) == "prod", later
    assert hoststate.env_of_deploy_id("not-an-id") is None


def test_new_deploy_ids_differ_within_one_second() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    ids = {new_deploy_id("sandbox", now=moment) for _ in range(20)}
    assert len(ids) > 1, ids


def test_deploy_id_token_is_validated() -> None:
    with pytest.raises(ValueError, match="6 lowercase hex"):
        new_deploy_id("prod", token="zz")


def test_relative_stack_dir_is_refused_before_any_rm() -> None:
    runner = RecordingRunner()
    with pytest.raises(ValueError, match="absolute"):
        break_lock(runner, "opt/jitsi")
    assert runner.calls == [], runner.calls


# --- the lock with canned answers -------------------------------------------------------------


TAKE = ("sh", "-c", hoststate._LOCK_SCRIPT)
HELD = (hoststate.LOCK_HELD_EXIT, "", "")


def test_acquire_takes_the_lock_with_its_owner_in_one_command() -> None:
    runner = RecordingRunner()
    mine = info()
    assert acquire_lock(runner, STACK, mine) == mine
    assert runner.calls[0] == ("mkdir", "-p", "-m", "0750", "--", STACK, f"{STACK}/.jitsi-ops"), (
        runner.calls
    )
    assert len(runner.calls) == 2, f"more than one step to take the lock: {runner.calls}"
    take = runner.calls[1]
    assert take[:5] == (*TAKE, "sh", LOCK), take
    staging = take[5]
    assert staging.startswith(f"{STACK}/.jitsi-ops/.lock.") and len(staging) > len(LOCK) + 8, take
    owner = json.loads(take[6])
    assert owner == {
        "owner": "alice",
        "host": "laptop",
        "pid": 4242,
        "time": "2026-11-26T06:33:57Z",
        "message": "upgrade to stable-11146-2",
        "deploy_id": "prod-20261126T063357Z-a1b2c3",
    }, owner


def test_held_lock_is_refused_with_the_holders_details() -> None:
    holder = info(
        "prod-20261126T060000Z-ffffff", owner="bob", host="ci-runner-7", pid=77, message="nightly"
    )
    runner = RecordingRunner(
        responses={TAKE: HELD}, files={OWNER: json.dumps(holder.as_dict()).encode()}
    )
    with pytest.raises(LockHeld) as caught:
        acquire_lock(runner, STACK, info())
    message, hint = str(caught.value), caught.value.hint
    for detail in (
        "bob@ci-runner-7",
        "pid 77",
        "2026-11-26T06:33:57Z",
        "prod-20261126T060000Z-ffffff",
        "nightly",
        STACK,
    ):
        assert detail in message, f"{detail!r} missing from {message!r}"
    assert "invoke unlock --env prod" in hint, hint
    assert not any(c[0] == "put" for c in runner.calls), f"owner.json overwritten: {runner.calls}"


def test_lock_dir_without_owner_json_is_held_and_says_how_to_break_it() -> None:
    # What an older jitsi-ops left when Ctrl-C came between its mkdir and its owner write.
    runner = RecordingRunner(responses={TAKE: HELD})
    with pytest.raises(LockHeld) as caught:
        acquire_lock(runner, STACK, info())
    message, hint = str(caught.value), caught.value.hint
    assert "has no owner.json" in message and "older jitsi-ops" in message, message
    assert "no run is recorded as holding it" in hint, hint
    assert "`invoke unlock --env prod`" in hint, hint


def test_lock_failure_that_is_not_a_lock_is_a_command_error() -> None:
    runner = RecordingRunner(responses={TAKE: (1, "", "mkdir: Permission denied")})
    with pytest.raises(RemoteCommandError, match="Permission denied") as caught:
        acquire_lock(runner, STACK, info())
    assert hoststate._LOCK_SCRIPT not in str(caught.value), str(caught.value)


def test_stale_lock_of_a_dead_local_process_says_so() -> None:
    dead = info(host=socket.gethostname(), pid=2**22 + 12345)
    runner = RecordingRunner(
        responses={TAKE: HELD}, files={OWNER: json.dumps(dead.as_dict()).encode()}
    )
    with pytest.raises(LockHeld) as caught:
        acquire_lock(runner, STACK, info("prod-20261126T070000Z-000001"))
    assert "stale" in caught.value.hint and "invoke unlock --env prod" in caught.value.hint, (
        caught.value.hint
    )


def test_release_only_removes_our_own_lock() -> None:
    runner = RecordingRunner(files={OWNER: json.dumps(info("other-id").as_dict()).encode()})
    assert release_lock(runner, STACK, "prod-20261126T063357Z-a1b2c3") is False
    assert not any(c[0] == "rm" for c in runner.calls), runner.calls

    runner.files[OWNER] = json.dumps(info().as_dict()).encode()
    assert release_lock(runner, STACK, "prod-20261126T063357Z-a1b2c3") is True
    assert runner.calls[-1] == ("rm", "-rf", "--", LOCK), runner.calls


def test_read_lock_tolerates_missing_and_odd_fields() -> None:
    runner = RecordingRunner(files={OWNER: b'{"owner": "carol", "pid": "not-a-number"}'})
    found = read_lock(runner, STACK)
    assert found is not None and found.owner == "carol" and found.pid == 0, found
    for text in (b"{not json", b"[1, 2]"):
        corrupt = read_lock(RecordingRunner(files={OWNER: text}), STACK)
        assert corrupt is not None and "not readable JSON" in corrupt.problem, corrupt


def test_read_lock_unlocked_is_none() -> None:
    runner = RecordingRunner(responses={("test", "-e"): (1, "", "")})
    assert read_lock(runner, STACK) is None


# --- lock sequences on a host that keeps directories -------------------------------------------


def test_lock_sequence_take_refuse_release_take_again() -> None:
    host = HostRunner()
    first = info("prod-20261126T063357Z-000001")
    second = info("prod-20261126T063358Z-000002", owner="bob")
    acquire_lock(host, STACK, first)
    assert read_lock(host, STACK) == first
    with pytest.raises(LockHeld, match="alice@laptop"):
        acquire_lock(host, STACK, second)
    assert release_lock(host, STACK, second.deploy_id) is False, "bob released alice's lock"
    assert release_lock(host, STACK, first.deploy_id) is True
    assert read_lock(host, STACK) is None
    acquire_lock(host, STACK, second)
    assert read_lock(host, STACK) == second


def test_break_lock_returns_the_broken_holder() -> None:
    host = HostRunner()
    acquire_lock(host, STACK, info())
    broken = break_lock(host, STACK)
    assert broken is not None and broken.owner == "alice", broken
    assert read_lock(host, STACK) is None
    assert break_lock(host, STACK) is None


@pytest.mark.parametrize("error", [RuntimeError("apply failed"), KeyboardInterrupt()])
def test_holding_lock_releases_on_failure_and_ctrl_c(error: BaseException) -> None:
    host = HostRunner()
    seen: list[LockInfo | None] = []

    def deploy() -> None:
        with holding_lock(host, STACK, info()):
            seen.append(read_lock(host, STACK))
            raise error

    with pytest.raises(type(error)):
        deploy()
    assert seen == [info()], seen
    assert read_lock(host, STACK) is None, "lock left behind"


def test_holding_lock_releases_on_success() -> None:
    host = HostRunner()
    with holding_lock(host, STACK, info()) as held:
        assert held.deploy_id == info().deploy_id
    assert read_lock(host, STACK) is None


def test_lock_info_for_this_process() -> None:
    mine = LockInfo.for_this_process("sandbox-20261126T063357Z-abcdef", "testing")
    assert mine.pid == os.getpid() and mine.host == socket.gethostname(), mine
    assert mine.time.endswith("Z") and "T" in mine.time, mine.time


# --- records never carry secrets --------------------------------------------------------------


def test_sanitize_refuses_secret_keys_at_any_depth() -> None:
    with pytest.raises(ValueError, match=r"phases\.0\.jvb_auth_password"):
        sanitize_record({"phases": [{"jvb_auth_password": "x"}]})
    with pytest.raises(ValueError, match="JICOFO_AUTH_PASSWORD"):
        sanitize_record({"JICOFO_AUTH_PASSWORD": "x"})


def test_sanitize_scrubs_secret_values_from_strings() -> None:
    record = {
        "error": f"pull failed: https://u:{SECRET}@registry",
        "n": 3,
        "ok": False,
        "p": Path("/x"),
    }
    clean = sanitize_record(record, {"JVB_AUTH_PASSWORD": SECRET, "PUBLIC_URL": "https://meet"})
    assert SECRET not in json.dumps(clean), clean
    assert clean["error"] == "pull failed: https://u:********@registry", clean
    assert clean["n"] == 3 and clean["ok"] is False and clean["p"] == "/x", clean


# --- state.json -------------------------------------------------------------------------------


def make_state() -> DeployState:
    return DeployState(
        env="prod",
        release="stable-11146-2",
        deploy_id="prod-20261126T063357Z-a1b2c3",
        time="2026-11-26T06:35:00Z",
        project="jitsi",
        compose_files=("docker-compose.yml", "etherpad.yml"),
        env_sha256="3e3835fa7f266cbd296040a3e6dd1729db2852ff6eabd7ef3e2f0e8855feed65",
        images={"web": "ghcr.io/jitsi/web:stable-11146-2"},
        digests={"web": "ghcr.io/jitsi/web@sha256:" + "7" * 64},
    )


def test_write_state_contents_and_mode() -> None:
    runner = RecordingRunner()
    write_state(runner, STACK, make_state())
    path = f"{STACK}/.jitsi-ops/state.json"
    assert runner.modes[path] == 0o640, runner.modes
    data = json.loads(runner.files[path])
    assert (
        data["release"] == "stable-11146-2" and data["deploy_id"] == "prod-20261126T063357Z-a1b2c3"
    ), data
    assert data["compose_files"] == ["docker-compose.yml", "etherpad.yml"], data
    assert data["digests"]["web"].startswith("ghcr.io/jitsi/web@sha256:"), data
    assert set(data) == {
        "env", "release", "deploy_id", "time", "project", "compose_files", "env_sha256",
        "images", "digests", "jitsi_ops_version",
    }, sorted(data)  # fmt: skip
    assert read_state(runner, STACK) == make_state()


def test_read_state_missing_and_corrupt() -> None:
    assert read_state(RecordingRunner(), STACK) is None
    corrupt = RecordingRunner(files={f"{STACK}/.jitsi-ops/state.json": b"[1, 2"})
    with pytest.raises(OpsError, match="not valid JSON"):
        read_state(corrupt, STACK)


def test_read_state_of_an_older_writer_fills_defaults() -> None:
    runner = RecordingRunner(
        files={f"{STACK}/.jitsi-ops/state.json": b'{"env": "prod", "release": null}'}
    )
    state = read_state(runner, STACK)
    assert state is not None and state.release is None and state.digests == {}, state


# --- audit log --------------------------------------------------------------------------------


def test_append_audit_sends_one_line_on_stdin() -> None:
    seen: list[str | None] = []

    class StdinRunner(RecordingRunner):
        def run(
            self,
            argv: Sequence[str],
            *,
            check: bool = True,
            timeout: float | None = None,
            stdin: str | None = None,
        ) -> Result:
            if argv[0] == "tee":
                seen.append(stdin)
            return super().run(argv, check=check, timeout=timeout, stdin=stdin)

    runner = StdinRunner()
    record = {"deploy_id": "prod-x", "result": "ok", "error": f"had {SECRET}"}
    written = append_audit(runner, STACK, record, secret_values={"JVB_AUTH_PASSWORD": SECRET})
    assert ("tee", "-a", "--", f"{STACK}/.jitsi-ops/audit.log") in runner.calls, runner.calls
    assert (
        len(seen) == 1
        and seen[0] is not None
        and seen[0].endswith("\n")
        and seen[0].count("\n") == 1
    ), seen
    line = json.loads(seen[0])
    assert line == written and line["result"] == "ok" and "time" in line, line
    assert SECRET not in seen[0], seen[0]
    assert all(SECRET not in " ".join(call) for call in runner.calls), "secret on a command line"


def test_audit_round_trip_and_last_n() -> None:
    host = HostRunner()
    for n in range(5):
        append_audit(host, STACK, {"n": n, "action": "deploy"})
    host.files[f"{STACK}/.jitsi-ops/audit.log"] += b"{torn line\n"
    records = read_audit(host, STACK, last=3)
    assert [r["n"] for r in records] == [3, 4], records  # the torn line is skipped, not fatal
    assert read_audit(host, STACK, last=10)[0]["n"] == 0


def test_read_audit_without_a_log_is_empty() -> None:
    assert read_audit(HostRunner(), STACK) == []


# --- local history ----------------------------------------------------------------------------


def test_history_jsonl(tmp_path: Path) -> None:
    path = hoststate.history_path(tmp_path)
    assert path == tmp_path / ".jitsi-ops" / "history.jsonl"
    append_history(
        path, {"env": "prod", "from": "stable-11031", "to": "stable-11146-2", "result": "ok"}
    )
    append_history(
        path,
        {
            "env": "prod",
            "result": "rolled back",
            "phases": [{"name": "gate", "seconds": 1.5}],
            "why": SECRET,
        },
        secret_values={"JICOFO_AUTH_PASSWORD": SECRET},
    )
    lines = path.read_text().splitlines()
    assert len(lines) == 2, lines
    first, second = (json.loads(line) for line in lines)
    assert first["to"] == "stable-11146-2" and first["time"].endswith("Z"), first
    assert second["phases"] == [{"name": "gate", "seconds": 1.5}] and second["why"] == "********", (
        second
    )
    assert read_history(path, last=1) == [second]
    assert read_history(tmp_path / "missing.jsonl") == []


# --- the same functions against the real commands (LocalRunner) --------------------------------


def test_real_commands_lock_state_audit(tmp_path: Path) -> None:
    stack = str(tmp_path / "stack")
    runner = LocalRunner()
    mine = info("sandbox-20261126T063357Z-000001")
    acquire_lock(runner, stack, mine)
    lock = Path(posixpath.join(stack, ".jitsi-ops", "lock"))
    assert lock.is_dir() and oct(lock.stat().st_mode & 0o777) == "0o700", lock
    stack_mode = oct(Path(stack).stat().st_mode & 0o777)
    assert stack_mode == "0o750", f"stack dir created as {stack_mode}, apply would use 0o750"
    with pytest.raises(LockHeld, match="alice@laptop"):
        acquire_lock(runner, stack, info("sandbox-20261126T063358Z-000002"))
    assert release_lock(runner, stack, mine.deploy_id) is True
    assert not lock.exists() and read_lock(runner, stack) is None

    write_state(runner, stack, make_state())
    assert read_state(runner, stack) == make_state()
    assert read_audit(runner, stack) == []
    append_audit(runner, stack, {"n": 1})
    append_audit(runner, stack, {"n": 2})
    assert [r["n"] for r in read_audit(runner, stack, last=5)] == [1, 2]


@dataclass
class CtrlCWhileLocking(LocalRunner):
    """A real host in tmp_path where Ctrl-C arrives right after the command that made the lock
    appear (its answer is lost); `fail_after` makes every later command fail too."""

    lock: Path = Path("/nonexistent")
    fail_after: bool = False
    fired: bool = False
    owner_at_first_sight: bool | None = None

    def __post_init__(self) -> None:
        super().__init__("tmp-host")

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> Result:
        if self.fired and self.fail_after:
            raise OSError("connection lost")
        result = super().run(argv, check=check, timeout=timeout, stdin=stdin)
        if not self.fired and self.lock.exists():
            self.fired = True
            self.owner_at_first_sight = (self.lock / "owner.json").is_file()
            raise KeyboardInterrupt
        return result

    def put(self, data: bytes, path: str, mode: int = 0o600) -> None:
        if self.fired and self.fail_after:
            raise OSError("connection lost")
        super().put(data, path, mode)
        if not self.fired and self.lock.exists():
            self.fired = True
            self.owner_at_first_sight = (self.lock / "owner.json").is_file()
            raise KeyboardInterrupt


def test_ctrl_c_while_taking_the_lock_leaves_no_lock_behind(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    runner = CtrlCWhileLocking(lock=stack / ".jitsi-ops" / "lock")
    with pytest.raises(KeyboardInterrupt):
        acquire_lock(runner, str(stack), info())
    assert runner.owner_at_first_sight is True, "the lock existed without owner.json"
    assert not runner.lock.exists(), "an interrupted take left the lock behind"
    leftovers = sorted(p.name for p in (stack / ".jitsi-ops").iterdir())
    assert leftovers == [], f"private staging left behind: {leftovers}"
    acquire_lock(LocalRunner(), str(stack), info("prod-20261126T063358Z-000002"))  # free again


def test_ctrl_c_with_the_host_gone_leaves_a_lock_that_names_its_owner(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    runner = CtrlCWhileLocking(lock=stack / ".jitsi-ops" / "lock", fail_after=True)
    with pytest.raises(KeyboardInterrupt):
        acquire_lock(runner, str(stack), info())
    # The give-back could not run: what is left is a lock that says whose it is.
    assert read_lock(LocalRunner(), str(stack)) == info()


def test_an_older_versions_empty_lock_dir_is_not_taken_over(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    lock = stack / ".jitsi-ops" / "lock"
    lock.mkdir(parents=True)
    # rename(2) onto an empty directory succeeds: the script must refuse before it gets there.
    with pytest.raises(LockHeld, match=r"has no owner\.json") as caught:
        acquire_lock(LocalRunner(), str(stack), info())
    assert "invoke unlock --env prod" in caught.value.hint, caught.value.hint
    assert list(lock.iterdir()) == [], "the ownerless lock was replaced"
    assert sorted(p.name for p in lock.parent.iterdir()) == ["lock"]
    holder = read_lock(LocalRunner(), str(stack))
    assert holder is not None and holder.problem and "older jitsi-ops" in holder.describe()
    assert break_lock(LocalRunner(), str(stack)) == holder and not lock.exists()


def test_a_lock_taken_between_check_and_rename_is_refused(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    runner = LocalRunner()
    hoststate._ensure_ops_dir(runner, str(stack))
    lock = stack / ".jitsi-ops" / "lock"
    # The other run's complete lock appears after the `-e` check: mv -T must fail onto it.
    script = hoststate._LOCK_SCRIPT.replace('[ -e "$1" ] && exit 75; ', "", 1)
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps(info("prod-other").as_dict()))
    argv = hoststate.lock_argv(str(stack), "{}", "abcdef")
    result = runner.run([*argv[:2], script, *argv[3:]], check=False)
    assert result.exit_code == hoststate.LOCK_HELD_EXIT, result
    assert json.loads((lock / "owner.json").read_text())["deploy_id"] == "prod-other"
    assert sorted(p.name for p in lock.parent.iterdir()) == ["lock"], "staging left behind"
