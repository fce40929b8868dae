"""A failed or interrupted upgrade of the seed scenario is rolled back to what ran before,
migrations included: the hand-made stable-11031 install of test_adopt, adopted, pinned to
stable-11146-2, then

- `docker compose up` fails for real: the upgrade also moves jvb's REST port to a port that a
  process of this test holds, so Docker cannot publish it (after the migrate phase has created
  `storage/`, chowned the old data to 1000:1000 and rewritten env/seed);
- the deploy is interrupted with SIGINT while its apply phase recreates containers.

Both must end with the old release serving, CONFIG with its owners and modes as before,
env/seed byte for byte as before, exit 1 and the verify suite passing on the old release.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jitsi_ops.settings import Environment
from tests.e2e.conftest import compose_down, ctrl_c_reaches_children, run_invoke
from tests.e2e.test_adopt import (
    HAND_SECRETS,
    HANDCFG,
    HANDMADE,
    LEGACY,
    PROJECT,
    ROOTLESS,
    SEED_BACKUPS,
    TESTBED,
    Outputs,
    containers,
    install_by_hand,
    remove_project,
    scratch_repo,
    serves,
    tree,
)

SERVICES = ("web", "prosody", "jicofo", "jvb")


@dataclass
class Seed:
    """The adopted install, pinned to the rootless release (not deployed yet)."""

    repo: Path
    out: Outputs
    user: str
    password: str

    @property
    def env_dir(self) -> Path:
        return self.repo / "env" / "seed"

    def state(self) -> dict[str, object]:
        """What must be the same after a rolled-back upgrade."""
        return {
            "images": {s: img for s, (_, img) in containers().items()},
            "config": tree(HANDCFG, times=False),
            "stack": {p.name: p.read_bytes() for p in sorted(HANDMADE.iterdir()) if p.is_file()},
            "env": {p.name: (p.stat().st_mode, p.read_bytes()) for p in self.env_dir.iterdir()},
        }

    def assert_back(self, before: dict[str, object], output: str) -> None:
        after = self.state()
        assert after["images"] == before["images"], after["images"]
        assert after["images"] == {s: f"127.0.0.1:5000/jitsi/{s}:{LEGACY}" for s in SERVICES}
        config_before, config_after = before["config"], after["config"]
        assert isinstance(config_before, dict) and isinstance(config_after, dict)
        assert not (HANDCFG / "storage").exists(), f"storage/ left behind:\n{output}"
        changed = {
            path: (config_before.get(path), config_after.get(path))
            for path in set(config_before) | set(config_after)
            if config_before.get(path) != config_after.get(path)
        }
        assert changed == {}, f"CONFIG owners/modes/paths differ: {changed}"
        assert after["stack"] == before["stack"], "the stack dir's files were not restored"
        assert after["env"] == before["env"], "env/seed is not as it was before the deploy"
        assert not (HANDMADE / ".jitsi-ops" / "lock").exists(), "lock left behind"
        serves(self.user, self.password)
        # The suite on the release that runs again (env/seed still pins the new one).
        verified = run_invoke(
            "verify",
            "--env",
            "seed",
            env={"JITSI_OPS_JITSI_IMAGE_VERSION": LEGACY},
            root=self.repo,
        )
        self.out.texts += [verified.stdout, verified.stderr]
        assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture(scope="module")
def seed(sandbox_env: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    """A hand-made stable-11031 install adopted into env/seed, pinned to stable-11146-2."""
    compose_down(sandbox_env)
    remove_project(PROJECT)
    passwords = {key: os.urandom(16).hex() for key in HAND_SECRETS}
    user, password = "alice", os.urandom(8).hex()
    try:
        install_by_hand(passwords, user, password)
        repo = scratch_repo(tmp_path_factory.mktemp("rollback"))
        out = Outputs({**passwords, "user": password}, repo)
        adopted = out.invoke(
            "adopt",
            "--env", "seed",
            "--from", str(HANDMADE),
            "--host", "sandbox",
            "--ssh-config", str(TESTBED / "ssh_config"),
            "--known-hosts", str(TESTBED / "known_hosts"),
            "--backup-dir", str(SEED_BACKUPS),
        )  # fmt: skip
        assert adopted.returncode == 0, adopted.stdout + adopted.stderr
        env_dir = repo / "env" / "seed"
        toml = env_dir / "deploy.toml"
        toml.write_text(
            toml.read_text().replace(
                "use_common_env = false\n",
                "use_common_env = false\ntest_environment = true\ninternet_facing = false\n",
            )
            + "\n[verify]\ntimeout = 150\ntrust_host_certificate = true\n"
        )
        jitsi = env_dir / "jitsi.env"
        jitsi.write_text(
            jitsi.read_text().replace(
                f"JITSI_IMAGE_VERSION={LEGACY}", f"JITSI_IMAGE_VERSION={ROOTLESS}"
            )
        )
        yield Seed(repo, out, user, password)
        out.assert_no_secrets()
    finally:
        remove_project(PROJECT)
        for path in (HANDMADE, HANDCFG, SEED_BACKUPS):
            subprocess.run(["rm", "-rf", "--", str(path)], check=False)
        compose_down(sandbox_env)


def test_compose_up_failure_after_migrate_rolls_back_to_the_old_release(seed: Seed) -> None:
    before = seed.state()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # held for the whole deploy: Docker cannot publish it
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        started = time.monotonic()
        result = run_invoke(
            "deploy",
            "--env",
            "seed",
            "--json",
            env={"JITSI_OPS_JVB_COLIBRI_PORT": str(port)},
            root=seed.repo,
        )
        took = time.monotonic() - started
    finally:
        holder.close()
    seed.out.texts += [result.stdout, result.stderr]
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    phases = {p["name"]: p["status"] for p in report["phases"]}
    assert phases["migrate"] == "ok" and phases["apply"] == "failed", report["phases"]
    assert f":{port}" in report["error"], report["error"]  # Docker's own words, via Compose
    assert report["result"] == "rolled-back", (report["result"], report["rollback"])
    rollback = report["rollback"]
    assert rollback["cause"] == "failed" and rollback["done"], rollback
    assert f"restored backup {report['backup_id']}" in rollback["detail"], rollback
    assert sorted(rollback["env_files"]) == ["env/seed/jitsi.env", "env/seed/secrets.env"]
    assert rollback["verification"]["ok"] is True, rollback["verification"]
    print(f"failed upgrade + rollback + gate took {took:.1f}s")
    seed.assert_back(before, result.stdout)


def interrupted_deploy(seed: Seed, *triggers: str) -> tuple[int, str]:
    """`invoke deploy` as an operator runs it, with SIGINT (what Ctrl-C sends) after the first
    output line starting with each trigger, in turn; returns (exit code, output)."""
    with ctrl_c_reaches_children():
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "deploy", "--env", "seed"],
            cwd=seed.repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    output, pending = "", list(triggers)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output += line
            if pending and line.startswith(pending[0]):
                pending.pop(0)
                time.sleep(0.5)  # well inside the step: containers are being recreated
                proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    seed.out.texts.append(output)
    assert not pending, f"never saw {pending[0]!r}:\n{output}"
    return proc.returncode, output


# The apply phase's first `docker compose up` (containers being recreated).
APPLY_UP = "  ... starting "


def test_ctrl_c_during_apply_rolls_back_to_the_old_release(seed: Seed) -> None:
    before = seed.state()
    code, output = interrupted_deploy(seed, APPLY_UP)
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("INTERRUPTED: interrupted during apply; "), last
    assert f"rolled back to {LEGACY} (verified)" in last, last
    assert "  migrate " in output and "  rollback " in output, output
    print(output)
    seed.assert_back(before, output)


def test_a_second_ctrl_c_during_the_rollback_does_not_stop_it(seed: Seed) -> None:
    before = seed.state()
    code, output = interrupted_deploy(
        seed, APPLY_UP, "  ... interrupted during apply: rolling back"
    )
    assert code == 1, output
    assert "press Ctrl-C again to abandon the rollback" in output, output
    last = output.strip().splitlines()[-1]
    assert f"rolled back to {LEGACY} (verified)" in last, last
    seed.assert_back(before, output)
