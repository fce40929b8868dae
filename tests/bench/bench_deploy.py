"""Deploy benchmark on the testbed (`nox -s bench`): prints ratios against baselines measured in
the same run, on the same host, for the same upgrade. No timed assertions anywhere.

1. jitsi-ops deploy wall time vs raw `docker compose pull && up -d` + time to healthy
   (goal <= 1.10 excluding the verify gate; both printed).
2. HTTPS unavailability during the upgrade, probed every 50 ms: jitsi-ops vs the naive
   `down; pull; up -d` (goal <= 0.2x).
3. No-op redeploy: wall time and container restarts (goal < 5 s, 0).
4. SSH connections opened per host per deploy (goal 1).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paramiko

from jitsi_ops import deploy as pipeline
from jitsi_ops import stack
from jitsi_ops.environments import rendered_values
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.ssh import connect
from tests.testbed.provision import provision

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "stable-11146-1", "stable-11146-2"
URL = "https://127.0.0.1:8443/"
PROBE_EVERY = 0.05


def sandbox(release: str) -> Environment:
    return load_environment("sandbox", REPO, environ={"JITSI_OPS_JITSI_IMAGE_VERSION": release})


def https_up(cert: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the pinned self-signed sandbox certificate is the only CA
        with urllib.request.urlopen(URL, context=context, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, ssl.SSLError):
        return False


def bridges_up() -> bool:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8888/stats", timeout=1) as response:
            stats = json.load(response)
        return bool(stats["bridge_selector"]["operational_bridge_count"] >= 1)
    except (OSError, ValueError, KeyError):
        return False


class Prober:
    """Probes HTTPS every 50 ms in a thread; counts the time it was not answering."""

    def __init__(self, cert: Path) -> None:
        self.cert = cert
        self.down = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            ok = https_up(self.cert)
            elapsed = max(time.monotonic() - started, PROBE_EVERY)
            if not ok:
                self.down += elapsed
            time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_healthy(cert: Path, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if https_up(cert) and bridges_up():
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("sandbox did not become healthy")


def reset(env_old: Environment) -> None:
    """Sandbox on OLD, healthy, deployed by jitsi-ops."""
    runner = connect(env_old, env_old.deploy.main_host)
    try:
        report = pipeline.deploy(env_old, runner)
    finally:
        runner.close()
    if report.result not in ("deployed", "nothing-to-do"):
        raise SystemExit(f"could not reset the sandbox to {OLD}: {report.result} {report.error}")


def counting_transports() -> Callable[[], int]:
    """Count paramiko Transports this process starts (one per SSH connection)."""
    original = paramiko.Transport.start_client
    count = {"n": 0}

    def start_client(self: paramiko.Transport, *args: object, **kwargs: object) -> object:
        count["n"] += 1
        return original(self, *args, **kwargs)

    paramiko.Transport.start_client = start_client  # type: ignore[method-assign]
    return lambda: count["n"]


def container_starts() -> dict[str, str]:
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=jitsi-sandbox"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *ids],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines())


def raw_upgrade(env_new: Environment, naive_down: bool) -> float:
    """The operator's manual upgrade with the same files; returns seconds until healthy."""
    runner = connect(env_new, env_new.deploy.main_host)
    target = stack.target_for(env_new)
    from jitsi_ops import commands  # noqa: PLC0415

    cert = Path(stack.resolve_config_dir(env_new, runner)) / "storage/web/keys/cert.crt"
    started = time.monotonic()
    try:
        stack.upload_stack(env_new, runner)
        if naive_down:
            runner.run(commands.compose_down(target), timeout=300)
        runner.run([*target.base(), "pull", "--quiet"], timeout=600)
        runner.run([*target.base(), "up", "-d"], timeout=600)
    finally:
        runner.close()
    wait_healthy(cert)
    return time.monotonic() - started


def main() -> None:
    provision(hosts=0, install_packages=False)
    env_old, env_new = sandbox(OLD), sandbox(NEW)
    config = Path(rendered_values(env_old)["CONFIG"])
    cert = config / "storage/web/keys/cert.crt"
    connections = counting_transports()

    reset(env_old)
    wait_healthy(cert)
    runner = connect(env_new, env_new.deploy.main_host)
    before = connections()
    with Prober(cert) as ops_probe:
        started = time.monotonic()
        report = pipeline.deploy(env_new, runner)
        ops_total = time.monotonic() - started
    runner.close()
    ssh_per_deploy = connections() - before
    if report.result != "deployed":
        raise SystemExit(f"upgrade failed: {report.result} {report.error}")
    gate = sum(p.seconds for p in report.phases if p.name == "gate")
    ops_no_gate = ops_total - gate

    reset(env_old)
    wait_healthy(cert)
    with Prober(cert) as raw_probe:
        raw_total = raw_upgrade(env_new, naive_down=False)

    reset(env_old)
    wait_healthy(cert)
    with Prober(cert) as naive_probe:
        naive_total = raw_upgrade(env_new, naive_down=True)

    reset(env_new)
    starts = container_starts()
    runner = connect(env_new, env_new.deploy.main_host)
    started = time.monotonic()
    noop = pipeline.deploy(env_new, runner)
    noop_time = time.monotonic() - started
    runner.close()
    restarted = sum(1 for cid, at in container_starts().items() if starts.get(cid) != at)

    print("\njitsi-ops deploy benchmark (sandbox, one host, one run)")
    print(f"  upgrade {OLD} -> {NEW}")
    print(f"  jitsi-ops deploy wall time         {ops_total:7.2f} s (gate {gate:.2f} s)")
    print(f"  jitsi-ops without the verify gate  {ops_no_gate:7.2f} s")
    print(f"  raw pull && up -d + time to healthy{raw_total:7.2f} s")
    print(f"  ratio (excl. verify) / raw         {ops_no_gate / raw_total:7.2f}   goal <= 1.10")
    print(f"  ratio (incl. verify) / raw         {ops_total / raw_total:7.2f}")
    print(f"  HTTPS unavailable: jitsi-ops       {ops_probe.down:7.2f} s")
    print(
        f"  HTTPS unavailable: naive down/pull/up {naive_probe.down:5.2f} s (raw pull+up: {raw_probe.down:.2f} s; naive total {naive_total:.2f} s)"
    )
    ratio = ops_probe.down / naive_probe.down if naive_probe.down else float("nan")
    print(f"  unavailability ratio               {ratio:7.2f}   goal <= 0.2")
    print(
        f"  no-op redeploy                     {noop_time:7.2f} s, {restarted} container restart(s) ({noop.result})   goal < 5 s, 0"
    )
    print(f"  SSH connections per host per deploy {ssh_per_deploy:6d}   goal 1")


if __name__ == "__main__":
    main()
