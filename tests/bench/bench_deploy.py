"""Deploy benchmark on the testbed (`nox -s bench`): prints ratios against baselines measured in
the same run, on the same host, for the same upgrade. No timed assertions anywhere.

1. jitsi-ops deploy wall time vs raw `docker compose pull && up -d` + time to healthy
   (goal <= 1.10 excluding the verify gate; both printed).
2. HTTPS unavailability during the upgrade, probed every 50 ms: jitsi-ops vs the naive
   `down; pull; up -d` (goal <= 0.2x).
3. No-op redeploy: wall time and container restarts (goal < 5 s, 0).
4. SSH connections opened per host per deploy (goal 1).

Each figure comes twice: with the small stand-in images (a few MB above a base every host
already has), and with "sized" stand-ins whose extra layer makes an upgrade pull what a real
host pulls for the real images (tests/testbed/images.py: REAL_IMAGE_MB, and its note on where
the sizes come from). `--sizes small|real|both|none` (default both) picks the passes.

5. The fleet (`--fleet 1,4,8`, the default; "" or none skips it): an upgrade of the sandbox main
   host plus 1, 4 and 8 bridge hosts, the prepare phases (lock..pull, run on every host at
   once) timed apart from the rolling part; goal: prepare(8)/prepare(1) <= 1.5. See
   tests/bench/bench_fleet.py.

The host is the testbed's namespaced host jvb1 (its own sshd and dockerd): before every
measured upgrade the target images are removed from its daemon, so each flow really pulls them
from the registry, as on a production host (the sandbox's daemon built the images and would
"pull" nothing). The environment is env/sandbox's values retargeted to jvb1 in a scratch
checkout; nothing of it is published beyond the namespace's address.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paramiko

from jitsi_ops import commands, stack
from jitsi_ops import deploy as pipeline
from jitsi_ops import plan as planning
from jitsi_ops.environments import fill_secrets, rendered_values
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.ssh import SshRunner, connect
from jitsi_ops.verify.hostside import loopback_get
from tests.bench import bench_fleet
from tests.testbed import images
from tests.testbed.provision import provision

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = "stable-11146-1", "stable-11146-2"
ADDRESS = "10.231.1.2"  # jvb1's namespace address
ROOT = Path("/srv/jitsi-ops-bench")
URL = f"https://{ADDRESS}:8443/"
PROBE_EVERY = 0.05


def scratch_checkout(directory: Path) -> Path:
    """A checkout whose env/bench is env/sandbox on jvb1."""
    shutil.copytree(REPO / "compose", directory / "compose")
    shutil.copytree(REPO / "env" / "sandbox", directory / "env" / "bench")
    shutil.copy(REPO / "env" / "common.env", directory / "env" / "common.env")
    (directory / "env" / "bench" / "secrets.env").unlink(missing_ok=True)
    testbed = REPO / ".testbed"
    toml = directory / "env" / "bench" / "deploy.toml"
    toml.write_text(
        toml.read_text()
        .replace('address = "sandbox"', 'address = "jvb1"')
        .replace('project = "jitsi-sandbox"', 'project = "jitsi-bench"')
        .replace("/srv/jitsi-ops-sandbox", str(ROOT))
        .replace('"../../.testbed/ssh_config"', json.dumps(str(testbed / "ssh_config")))
        .replace('"../../.testbed/known_hosts"', json.dumps(str(testbed / "known_hosts")))
    )
    values = directory / "env" / "bench" / "jitsi.env"
    values.write_text(
        values.read_text()
        .replace("/srv/jitsi-ops-sandbox", str(ROOT))
        .replace("127.0.0.1:8443", f"{ADDRESS}:8443")
        .replace("PUBLISH_ADDRESS=127.0.0.1", f"PUBLISH_ADDRESS={ADDRESS}")
        .replace("JVB_ADVERTISE_IPS=127.0.0.1", f"JVB_ADVERTISE_IPS={ADDRESS}")
    )
    return directory


def bench_env(checkout: Path, release: str, *, sized: bool = False) -> Environment:
    environ = {"JITSI_OPS_JITSI_IMAGE_VERSION": release}
    if sized:
        environ["JITSI_OPS_JITSI_IMAGE_REPO"] = f"{images.DEFAULT_REGISTRY}/{images.SIZED_REPO}"
    return load_environment("bench", checkout, environ=environ)


def https_up(cert: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the pinned self-signed certificate is the only CA
        with urllib.request.urlopen(URL, context=context, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, ssl.SSLError):
        return False


def bridges_up(runner: SshRunner) -> bool:
    """jicofo counts a bridge (its REST listens on the host's own 127.0.0.1)."""
    try:
        answer = loopback_get(runner, 8888, "/stats", 1.0)
        stats = json.loads(answer.body)
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


def wait_healthy(cert: Path, probe: SshRunner, timeout: float = 180.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if https_up(cert) and bridges_up(probe):
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("the bench stack did not become healthy")


def deploy_to(env: Environment) -> pipeline.DeployReport:
    runner = connect(env, env.deploy.main_host)
    try:
        return pipeline.deploy(env, runner)
    finally:
        runner.close()


def reset(env_old: Environment, env_new: Environment, probe: SshRunner, cert: Path) -> None:
    """The stack on OLD, healthy, deployed by jitsi-ops, and NEW's images gone from the daemon
    (so the next upgrade pulls them for real)."""
    report = deploy_to(env_old)
    if report.result not in ("deployed", "nothing-to-do"):
        raise SystemExit(f"could not reset to {OLD}: {report.result} {report.error}")
    old_refs = set(
        planning.target_images(rendered_values(env_old), stack.stack_files(env_old)).values()
    )
    new_refs = set(
        planning.target_images(rendered_values(env_new), stack.stack_files(env_new)).values()
    )
    probe.run(["docker", "image", "rm", *sorted(new_refs - old_refs)], check=False)
    wait_healthy(cert, probe)


def counting_transports() -> Callable[[], int]:
    """Count paramiko Transports this process starts (one per SSH connection)."""
    original = paramiko.Transport.start_client
    count = {"n": 0}

    def start_client(self: paramiko.Transport, *args: object, **kwargs: object) -> object:
        count["n"] += 1
        return original(self, *args, **kwargs)

    paramiko.Transport.start_client = start_client  # type: ignore[method-assign]
    return lambda: count["n"]


def container_starts(probe: SshRunner) -> dict[str, str]:
    ids = probe.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=jitsi-bench"]
    ).stdout.split()
    out = probe.run(["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *ids]).stdout
    return dict(line.split() for line in out.splitlines())


def raw_upgrade(env_new: Environment, probe: SshRunner, cert: Path, naive_down: bool) -> float:
    """The operator's manual upgrade with the same files; returns seconds until healthy."""
    runner = connect(env_new, env_new.deploy.main_host)
    target = stack.target_for(env_new)
    started = time.monotonic()
    try:
        stack.upload_stack(env_new, runner)
        if naive_down:
            runner.run(commands.compose_down(target), timeout=300)
        runner.run([*target.base(), "pull", "--quiet"], timeout=600)
        runner.run([*target.base(), "up", "-d"], timeout=600)
    finally:
        runner.close()
    wait_healthy(cert, probe)
    return time.monotonic() - started


def tear_down(env: Environment, probe: SshRunner) -> None:
    probe.run(commands.compose_down(stack.target_for(env)), check=False, timeout=300)
    shutil.rmtree(ROOT, ignore_errors=True)


def measure(
    env_old: Environment, env_new: Environment, probe: SshRunner, cert: Path, label: str
) -> dict[str, float]:
    """One pass of every figure; prints them and returns the ratios."""
    connections = counting_transports()

    reset(env_old, env_new, probe, cert)
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
    phases = {p.name: p.seconds for p in report.phases}
    gate = phases.get("gate", 0.0)
    ops_no_gate = ops_total - gate

    reset(env_old, env_new, probe, cert)
    with Prober(cert) as raw_probe:
        raw_total = raw_upgrade(env_new, probe, cert, naive_down=False)

    reset(env_old, env_new, probe, cert)
    with Prober(cert) as naive_probe:
        naive_total = raw_upgrade(env_new, probe, cert, naive_down=True)

    report = deploy_to(env_new)
    starts = container_starts(probe)
    started = time.monotonic()
    noop = deploy_to(env_new)
    noop_time = time.monotonic() - started
    restarted = sum(1 for cid, at in container_starts(probe).items() if starts.get(cid) != at)

    print(f"\njitsi-ops deploy benchmark (testbed host jvb1, one run), upgrade {OLD} -> {NEW}")
    print(f"  images: {label}")
    print("  phases: " + ", ".join(f"{name} {secs:.2f}s" for name, secs in phases.items()))
    print(f"  jitsi-ops deploy wall time          {ops_total:7.2f} s (gate {gate:.2f} s)")
    print(f"  jitsi-ops without the verify gate   {ops_no_gate:7.2f} s")
    print(f"  raw pull && up -d + time to healthy {raw_total:7.2f} s")
    print(f"  ratio (excl. verify) / raw          {ops_no_gate / raw_total:7.2f}   goal <= 1.10")
    print(f"  ratio (incl. verify) / raw          {ops_total / raw_total:7.2f}")
    print(f"  HTTPS unavailable: jitsi-ops        {ops_probe.down:7.2f} s")
    print(
        f"  HTTPS unavailable: naive down/pull/up {naive_probe.down:5.2f} s "
        f"(raw pull+up: {raw_probe.down:.2f} s; naive total {naive_total:.2f} s)"
    )
    ratio = ops_probe.down / naive_probe.down if naive_probe.down else float("nan")
    print(f"  unavailability ratio                {ratio:7.2f}   goal <= 0.2")
    print(
        f"  no-op redeploy                      {noop_time:7.2f} s, {restarted} container "
        f"restart(s) ({noop.result})   goal < 5 s, 0"
    )
    print(f"  SSH connections per host per deploy {ssh_per_deploy:7d}   goal 1")
    return {
        "deploy": ops_no_gate / raw_total,
        "deploy_with_gate": ops_total / raw_total,
        "unavailability": ratio,
        "pull": phases.get("pull", 0.0),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_deploy")
    parser.add_argument(
        "--sizes",
        choices=("small", "real", "both", "none"),
        default="both",
        help="single-host passes: small: the stand-ins as they are; real: padded to the real "
        "images' compressed sizes; both (default): one pass each; none: no single-host figures",
    )
    parser.add_argument(
        "--fleet",
        default="1,4,8",
        help="bridge host counts of the fleet figures, comma-separated (default 1,4,8; "
        '"" or none skips them)',
    )
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    passes = {"small": [False], "real": [True], "both": [False, True], "none": []}[arguments.sizes]
    fleet_sizes = bench_fleet.parse_fleet(arguments.fleet)
    provision(hosts=max([1, *fleet_sizes]), install_packages=False)
    if True in passes:
        timings = images.build_sized([OLD, NEW])
        print("sized stand-ins: " + ", ".join(f"{k} {v:g}" for k, v in timings.items()))
    results: dict[str, dict[str, float]] = {}
    fleet_runs: dict[int, bench_fleet.FleetRun] = {}
    with tempfile.TemporaryDirectory(prefix="jitsi-ops-bench-") as scratch:
        checkout = scratch_checkout(Path(scratch) / "single")
        fill_secrets(bench_env(checkout, OLD))
        for sized in passes:
            env_old = bench_env(checkout, OLD, sized=sized)
            env_new = bench_env(checkout, NEW, sized=sized)
            cert = Path(rendered_values(env_old)["CONFIG"]) / "storage/web/keys/cert.crt"
            probe = connect(env_old, env_old.deploy.main_host)
            pulled = sum(images.upgrade_pull_mb(NEW).values())
            label = (
                f"sized to the real images' compressed sizes (an upgrade pulls {pulled} MB; "
                "sizes: tests/testbed/images.py REAL_IMAGE_MB, ESTIMATES, see its note)"
                if sized
                else "small stand-ins (an upgrade pulls a few MB)"
            )
            try:
                results["real" if sized else "small"] = measure(
                    env_old, env_new, probe, cert, label
                )
            finally:
                tear_down(env_old, probe)
                probe.close()
        if fleet_sizes:
            fleet_scratch = Path(scratch) / "fleet"
            fleet_scratch.mkdir()
            fleet_runs = bench_fleet.measure_fleet(fleet_scratch, fleet_sizes)
    if len(results) > 1:
        print("\nsmall vs real sizes (same run)")
        for key in ("deploy", "deploy_with_gate", "unavailability", "pull"):
            small, real = results["small"][key], results["real"][key]
            print(f"  {key:<18} small {small:7.2f}   real sizes {real:7.2f}")
    if fleet_sizes:
        bench_fleet.print_fleet(fleet_runs)


if __name__ == "__main__":
    main()
