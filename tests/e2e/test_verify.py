"""e2e: `invoke verify` against the sandbox. A healthy sandbox passes every check; each broken
variant fails exactly the checks its fault explains, with the observed value, and nothing else.

Expected failures per variant (a fault is allowed to fail every check it really breaks):
- wrong JVB password: the bridge never joins the brewery -> conference.bridges, and the two
  health endpoints that report exactly that (jicofo /about/health, jvb /about/health);
- whiteboard collab URL with a /socket.io/ path -> collab.whiteboard only;
- PUBLIC_URL changed locally without redeploying -> web.config_js only;
- jvb container stopped -> everything that needs a running jvb: host.containers, its published
  ports (sockets.jvb_udp, sockets.jvb_rest), conference.*, media.ice;
- .env mode 0644 -> host.env_file only;
- CONFIG/web/custom-*.js created after web started, or unreadable by uid 1000 ->
  web.custom_config (run alone with --only), until web starts again with a readable file.
"""

from __future__ import annotations

import json
import posixpath
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from invoke.collection import Collection
from invoke.program import Program

from jitsi_ops import stack
from jitsi_ops.cli import verify_tasks
from jitsi_ops.environments import rendered_values
from jitsi_ops.secrets import secret_values
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.ssh import SshRunner
from jitsi_ops.verify import VerifyReport, human_lines, verify
from tests.e2e.conftest import REPO_ROOT

WRONG_JVB_PASSWORD = "0123456789abcdef0123456789abcdef"
JVB_DEPENDENT = {
    "host.containers",
    "sockets.jvb_udp",
    "sockets.jvb_rest",
    "conference.bridges",
    "conference.jicofo_health",
    "conference.jvb_health",
    "conference.jvb_version",
    "media.ice",
}


def sandbox(**overrides: str) -> Environment:
    """env/sandbox as the operator's files say, plus JITSI_OPS_<KEY> overrides."""
    return load_environment(
        "sandbox", REPO_ROOT, environ={f"JITSI_OPS_{k}": v for k, v in overrides.items()}
    )


def run_verify(env: Environment, runner: SshRunner, timeout: float) -> VerifyReport:
    return verify(env, {env.deploy.main_host: runner}, timeout=timeout)


def failing(report: VerifyReport) -> set[str]:
    return {o.id for o in report.outcomes if o.status == "fail"}


def observed(report: VerifyReport, check_id: str) -> str:
    return next(o.observed for o in report.outcomes if o.id == check_id)


def assert_fails_exactly(report: VerifyReport, expected: set[str]) -> None:
    lines = "\n".join(human_lines(report))
    assert failing(report) == expected, f"expected {sorted(expected)} to fail:\n{lines}"
    assert report.count("warn") == 0, lines


def wait_healthy(env: Environment, runner: SshRunner) -> VerifyReport:
    report = run_verify(env, runner, timeout=120)
    assert report.ok and report.count("warn") == 0, "\n".join(human_lines(report))
    return report


@pytest.fixture
def deployed(clean_sandbox: Environment, sandbox_runner: SshRunner) -> Environment:
    """A freshly applied, healthy sandbox (the product's own apply, over SSH)."""
    stack.apply(clean_sandbox, sandbox_runner)
    wait_healthy(clean_sandbox, sandbox_runner)
    return clean_sandbox


def invoke_verify(
    monkeypatch: pytest.MonkeyPatch, *args: str, environ: Mapping[str, str] | None = None
) -> int:
    """The verify task as an operator runs it (in-process Program; exit code returned)."""
    for key, value in (environ or {}).items():
        monkeypatch.setenv(key, value)
    namespace = Collection.from_module(verify_tasks)
    namespace.configure({"jitsi_ops": {"root": str(REPO_ROOT)}})
    try:
        Program(namespace=namespace).run(["invoke", "verify", "--env", "sandbox", *args])
    except SystemExit as exited:  # invoke exits only on failure
        return int(exited.code or 0)
    return 0


def test_healthy_sandbox_passes_every_check_and_leaks_no_secret(
    deployed: Environment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    junit = tmp_path / "verify.xml"
    code = invoke_verify(monkeypatch, "--json", "--junit", str(junit))
    out, err = capsys.readouterr()
    assert code == 0, f"{out}\n{err}"
    document = json.loads(out)
    statuses = {(c["id"], c["host"]): c["status"] for c in document["checks"]}
    assert document["ok"] is True and set(statuses.values()) == {"pass"}, statuses
    assert len(statuses) == 27, sorted(statuses)
    root = ElementTree.parse(junit).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "27", "0"), (
        root.attrib
    )

    code = invoke_verify(monkeypatch)
    human, err = capsys.readouterr()
    assert code == 0, f"{human}\n{err}"
    lines = human.strip().splitlines()
    assert len(lines) == 28 and all(" PASS" in line for line in lines[:-1]), human
    assert lines[-1].startswith("verify sandbox (stable-11146-2): 27 passed, 0 failed"), lines[-1]

    secrets = secret_values(rendered_values(deployed))
    assert secrets, "the sandbox has generated secrets"
    for text in (out, human, err, junit.read_text()):
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} secret value(s) in verify output"


def test_wrong_jvb_password_leaves_jicofo_without_bridges(
    deployed: Environment, sandbox_runner: SshRunner
) -> None:
    # What rerunning gen-passwords.sh does: prosody keeps the stored account, jvb gets a new one.
    broken = sandbox(JVB_AUTH_PASSWORD=WRONG_JVB_PASSWORD)
    stack.apply(broken, sandbox_runner)
    report = run_verify(broken, sandbox_runner, timeout=45)
    assert_fails_exactly(
        report, {"conference.bridges", "conference.jicofo_health", "conference.jvb_health"}
    )
    assert observed(report, "conference.bridges").startswith("operational_bridge_count 0"), (
        observed(report, "conference.bridges")
    )


def test_whiteboard_url_with_socketio_path_is_refused_by_the_backend(
    clean_sandbox: Environment, sandbox_runner: SshRunner
) -> None:
    # `invoke apply` refuses this (check has an error for it); the lower-level apply does not.
    broken = sandbox(WHITEBOARD_COLLAB_SERVER_PUBLIC_URL="https://127.0.0.1:8443/socket.io/")
    stack.apply(broken, sandbox_runner)
    report = run_verify(broken, sandbox_runner, timeout=120)
    assert_fails_exactly(report, {"collab.whiteboard"})
    seen = observed(report, "collab.whiteboard")
    assert "namespace '/socket.io/'" in seen and "Invalid namespace" in seen, seen


def test_public_url_not_redeployed_shows_in_config_js(
    deployed: Environment, sandbox_runner: SshRunner
) -> None:
    # The operator changed PUBLIC_URL locally but never applied it: the host serves the old one.
    changed = sandbox(PUBLIC_URL="https://localhost:8443")
    report = run_verify(changed, sandbox_runner, timeout=45)
    assert_fails_exactly(report, {"web.config_js"})
    seen = observed(report, "web.config_js")
    assert (
        "bosh: served 'https://127.0.0.1:8443/http-bind', expected 'https://localhost:8443/http-bind'"
        in seen
    ), seen


def test_stopped_jvb_fails_what_needs_a_bridge(
    deployed: Environment, sandbox_runner: SshRunner
) -> None:
    sandbox_runner.run([*stack.target_for(deployed).base(), "stop", "jvb"], timeout=60)
    report = run_verify(deployed, sandbox_runner, timeout=30)
    assert_fails_exactly(report, JVB_DEPENDENT)
    assert "jvb: exited" in observed(report, "host.containers"), observed(report, "host.containers")


def test_env_file_mode_0644_fails_only_that_check(
    deployed: Environment,
    sandbox_runner: SshRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_file = f"{deployed.deploy.stack_dir}/.env"
    sandbox_runner.run(["chmod", "0644", env_file])
    report = run_verify(deployed, sandbox_runner, timeout=45)
    assert_fails_exactly(report, {"host.env_file"})
    assert observed(report, "host.env_file") == f"{env_file}: mode 0644, expected 0600"
    # The operator's view: exit 1, the check named on stderr, the observed value in its line.
    code = invoke_verify(monkeypatch, "--timeout", "45")
    out, err = capsys.readouterr()
    assert code == 1, f"{out}\n{err}"
    assert "1 of 27 checks failed: host.env_file@sandbox" in err, err
    line = next(li for li in out.splitlines() if "host.env_file" in li)
    assert "FAIL" in line and "mode 0644, expected 0600" in line, line


def only_custom_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], timeout: int
) -> tuple[int, dict[str, Any], str]:
    """`invoke verify --only web.custom_config --json`: exit code, its one check, all output."""
    code = invoke_verify(
        monkeypatch, "--only", "web.custom_config", "--json", "--timeout", str(timeout)
    )
    out, err = capsys.readouterr()
    (check,) = json.loads(out)["checks"]
    return code, check, out + err


def test_custom_config_counts_only_once_web_started_with_it(
    deployed: Environment,
    sandbox_runner: SshRunner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    web = posixpath.join(stack.resolve_config_dir(deployed, sandbox_runner), "web")
    token = "e2e-custom-token-" + secrets.token_hex(8)
    custom_js = (
        f"// jitsi-ops e2e\r\nconfig.startWithAudioMuted = true;\r\nconfig.e2e = '{token}';\r\n"
    )
    interface_js = f"interfaceConfig.APP_NAME = 'jitsi-ops {token}';\n"
    restart_web = [*stack.target_for(deployed).base(), "restart", "web"]
    exec_web = [*stack.target_for(deployed).base(), "exec", "-T", "web"]

    # Created after web started, as after an upgrade that ignored them: not served.
    sandbox_runner.put(custom_js.encode(), f"{web}/custom-config.js", 0o644)
    # Readable by root only: the rootless web (uid 1000) cannot copy it even when it restarts.
    sandbox_runner.put(interface_js.encode(), f"{web}/custom-interface_config.js", 0o600)
    code, check, output = only_custom_config(monkeypatch, capsys, 30)
    assert (code, check["status"]) == (1, "fail"), output
    assert check["observed"] == (
        f"custom-config.js ({len(custom_js)} bytes) is not in the served /config.js; "
        f"custom-interface_config.js ({len(interface_js)} bytes) is not in the served "
        "/interface_config.js"
    ), check["observed"]
    assert "restart web" in check["hint"], check["hint"]
    assert token not in output, "custom file content in verify output"

    # web starts again and appends what it can read, like the real image.
    sandbox_runner.run(restart_web, timeout=60)
    code, check, output = only_custom_config(monkeypatch, capsys, 30)
    assert (code, check["status"]) == (1, "fail"), output
    assert check["observed"] == (
        f"custom-config.js ({len(custom_js)} bytes) served in /config.js; "
        f"custom-interface_config.js ({len(interface_js)} bytes) is not in the served "
        "/interface_config.js"
    ), check["observed"]
    assert f"{web}/custom-interface_config.js is 0:0 mode 0600" in check["hint"], check["hint"]
    assert token not in output, "custom file content in verify output"
    # The stand-in's append is upstream's `cat >>` from the /run copy: bytes as they are.
    rendered = sandbox_runner.run([*exec_web, "cat", "/run/web/config/config.js"]).stdout
    assert rendered.endswith("};\n" + custom_js), rendered[-200:]
    copied = sandbox_runner.run([*exec_web, "ls", "/run/web/config"]).stdout.split()
    assert "custom-config.js" in copied and "custom-interface_config.js" not in copied, copied

    sandbox_runner.run(["chmod", "0644", f"{web}/custom-interface_config.js"])
    sandbox_runner.run(restart_web, timeout=60)
    code, check, output = only_custom_config(monkeypatch, capsys, 30)
    assert (code, check["status"]) == (0, "pass"), output
    assert check["observed"].endswith(
        f"custom-interface_config.js ({len(interface_js)} bytes) served in /interface_config.js"
    ), check["observed"]
    assert token not in output, "custom file content in verify output"
