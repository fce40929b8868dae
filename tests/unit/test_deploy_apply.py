"""The apply and pull steps of the deploy pipeline against a recording runner: the order in
which Compose is asked to converge, and the background pulls."""

from __future__ import annotations

import threading
from pathlib import Path
from types import MappingProxyType

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops.errors import RemoteCommandError
from jitsi_ops.runner import RecordingRunner
from jitsi_ops.settings import Environment, load_environment

REPO = Path(__file__).resolve().parents[2]
EMPTY = pipeline.Snapshot(MappingProxyType({}), MappingProxyType({}), None)


@pytest.fixture
def env() -> Environment:
    return load_environment("sandbox", REPO, environ={"JITSI_OPS_JVB_AUTH_PASSWORD": "x" * 32})


def ups(runner: RecordingRunner) -> list[list[str]]:
    """The services named by each `docker compose ... up -d` call, in order."""
    calls = []
    for argv in runner.calls:
        if argv[:2] == ("docker", "compose") and "up" in argv:
            tail = list(argv[argv.index("up") + 1 :])
            calls.append([a for a in tail if not a.startswith("-")])
    return calls


@pytest.mark.parametrize(
    ("recreate", "expected"),
    [
        # web with its backends: backends first, then web alone (the whiteboard depends on
        # it), then everything else.
        (["jicofo", "jvb", "prosody", "web"], [["jicofo", "jvb", "prosody"], ["web"], []]),
        (["web"], [["web"], []]),
        # web untouched: one converge, nothing to order.
        (["jvb", "prosody"], [[]]),
        ([], [[]]),
    ],
)
def test_apply_brings_web_up_alone_after_its_backends(
    env: Environment, recreate: list[str], expected: list[list[str]]
) -> None:
    runner = RecordingRunner()
    detail = pipeline.apply_target(env, runner, EMPTY, recreate)
    assert ups(runner) == expected, runner.calls
    assert ("web" in recreate) == ("in order:" in detail), detail
    uploaded = [c[1] for c in runner.calls if c[0] == "put"]
    first_up = next(i for i, c in enumerate(runner.calls) if "up" in c)
    assert all(
        runner.calls.index(("put", p, oct(0o600 if p.endswith(".env") else 0o644))) < first_up
        for p in uploaded
    ), "compose ran before every file was uploaded"


def test_background_pull_pulls_every_host_and_reports_the_first_failure() -> None:
    main = RecordingRunner(label="main")
    bridge = RecordingRunner(
        label="jvb1", responses={("docker", "pull", "--quiet", "r/jvb:2"): (1, "", "denied")}
    )
    seen: list[str] = []
    lock = threading.Lock()

    def progress(message: str) -> None:
        with lock:
            seen.append(message)

    pulls = pipeline.BackgroundPull(
        [("", main, ["r/web:2", "r/jvb:2"]), ("jvb1", bridge, ["r/jvb:2"])], progress
    )
    with pytest.raises(RemoteCommandError) as info:
        pulls.wait()
    assert "docker pull --quiet r/jvb:2" in str(info.value), info.value
    # Each host pulls its images in order; the main host is not stopped by the bridge's failure.
    assert main.calls == [
        ("docker", "pull", "--quiet", "r/web:2"),
        ("docker", "pull", "--quiet", "r/jvb:2"),
    ], main.calls
    assert len(seen) == 3, seen


def test_background_pull_detail_names_each_host() -> None:
    pulls = pipeline.BackgroundPull(
        [("", RecordingRunner(), ["a:1", "b:1"]), ("jvb1", RecordingRunner(), ["b:1"])], None
    )
    detail = pulls.wait()
    assert detail.startswith("2 image(s); jvb1: 1 image(s) ("), detail
    assert "alongside the backup" in detail
