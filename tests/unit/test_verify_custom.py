"""web.custom_config: CONFIG/web custom-*.js against the served config.js / interface_config.js
through the RecordingRunner. tests/fixtures/verify/custom: served-*.js were fetched over HTTPS
from the sandbox's stand-in web (plain; after a start with an older custom-config.js; after a
start with both custom files); Facts.served_text is replaced by those answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitsi_ops.runner import RecordingRunner
from jitsi_ops.settings import Environment, load_environment
from jitsi_ops.verify import checks, custom, select
from jitsi_ops.verify.facts import Facts, VerifyRun
from jitsi_ops.verify.hostside import HttpAnswer
from jitsi_ops.verify.model import CheckResult
from jitsi_ops.verify.suite import run_checks

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "verify" / "custom"
WEB = "/srv/jitsi-ops-sandbox/config/web"
CONFIG_JS = f"{WEB}/custom-config.js"
INTERFACE_JS = f"{WEB}/custom-interface_config.js"
STAT = ("env", "LC_ALL=C", "stat", "-L", "-c", "%n|%F|%u|%g|%a", "--", CONFIG_JS, INTERFACE_JS)
MISSING = "stat: cannot statx '{}': No such file or directory\n"
TOKEN = "fixture-token-7c1e9a55d0b34f2e"  # in custom-config.js: must never be reported


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sandbox(**overrides: str) -> Environment:
    environ = {"JITSI_OPS_JVB_AUTH_PASSWORD": "j" * 32, "JITSI_OPS_JICOFO_AUTH_PASSWORD": "x" * 32}
    environ.update({f"JITSI_OPS_{k}": v for k, v in overrides.items()})
    return load_environment("sandbox", REPO, environ=environ)


def stat_line(path: str, uid: int = 0, gid: int = 0, mode: str = "644") -> str:
    return f"{path}|regular file|{uid}|{gid}|{mode}"


def host_with(files: dict[str, bytes], stat_lines: list[str]) -> RecordingRunner:
    # stat exits 1 when one of the paths is missing and still reports the others.
    stdout = "".join(f"{line}\n" for line in stat_lines)
    stderr = "".join(MISSING.format(p) for p in (CONFIG_JS, INTERFACE_JS) if p not in stdout)
    return RecordingRunner(
        label="sandbox",
        responses={STAT: (1 if stderr else 0, stdout, stderr)},
        files=dict(files),
    )


class Served:
    """What the web container serves, by file name; records what was fetched."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.fetched: list[str] = []

    def __call__(self, name: str) -> str:
        self.fetched.append(name)
        return self.files[name].decode("utf-8")


def run_check(
    monkeypatch: pytest.MonkeyPatch,
    runner: RecordingRunner,
    served: Served,
    env: Environment | None = None,
) -> CheckResult:
    env = env or sandbox()
    monkeypatch.setattr(Facts, "served_text", lambda _facts, name: served(name))
    run = VerifyRun(
        env=env,
        values=dict(env.values),
        runners={env.deploy.main_host: runner},
        loopback=lambda *_a: HttpAnswer(404, ""),
        deadline=1e12,
        clock=lambda: 0.0,
        sleep=lambda _s: None,
    )
    return custom.check_custom_config(Facts(run), env.deploy.main_host)


def assert_no_content(result: CheckResult) -> None:
    text = result.observed + result.hint
    for secret in (TOKEN, "startWithAudioMuted", "Réunions"):
        assert secret not in text, f"custom file content in the report: {text}"


CONTAINS_CASES = [
    ("identical", "config.a = 1;\n", "config.a = 1;\n", True),
    ("crlf custom, lf served", "x;\nconfig.a = 1;\nconfig.b = 2;\n", "config.a = 1;\r\nconfig.b = 2;\r\n", True),
    ("no final newline", "x;\nconfig.a = 1;", "config.a = 1;\n", True),
    ("re-indented", "x;\n  config.p = {\n\tenabled: true\n  };\n", "config.p = {\n    enabled: true\n};\n", True),
    ("joined to the line before", "var i = {};config.a = 1;\n", "config.a = 1;\n", True),
    ("absent", "var config = {};\n", "config.a = 1;\n", False),
    ("older version", "x;\nconfig.a = 0;\nconfig.b = 2;\n", "config.a = 1;\nconfig.b = 2;\n", False),
    ("only part of it", "x;\nconfig.a = 1;\n", "config.a = 1;\nconfig.b = 2;\n", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("served", "text", "expected"),
    [c[1:] for c in CONTAINS_CASES],
    ids=[c[0] for c in CONTAINS_CASES],
)
def test_served_contains_ignores_whitespace_only(served: str, text: str, expected: bool) -> None:
    assert custom.served_contains(served, text) is expected, (served, text)


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "expected"),
    [
        (0, 0, 0o644, True),
        (0, 0, 0o600, False),
        (1000, 1000, 0o600, True),
        (0, 1000, 0o640, True),
        (1000, 0, 0o044, False),  # the owner bits decide for the owner
        (0, 0, 0o640, False),
    ],
)
def test_readable_by_uid_1000(uid: int, gid: int, mode: int, expected: bool) -> None:
    assert custom.readable_by(uid, gid, mode) is expected


def test_no_custom_files_pass_without_fetching_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served({})
    result = run_check(monkeypatch, host_with({}, []), served)
    assert result.status == "pass", result
    assert result.observed == f"no custom-config.js or custom-interface_config.js in {WEB}"
    assert served.fetched == [], served.fetched


def test_custom_files_appended_at_start_pass_with_names_and_sizes_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {
        CONFIG_JS: fixture("custom-config.js"),
        INTERFACE_JS: fixture("custom-interface_config.js"),
    }
    served = Served(
        {
            "config.js": fixture("served-config.js"),
            "interface_config.js": fixture("served-interface_config.js"),
        }
    )
    runner = host_with(files, [stat_line(CONFIG_JS), stat_line(INTERFACE_JS)])
    result = run_check(monkeypatch, runner, served)
    assert result.status == "pass", result
    assert result.observed == (
        f"custom-config.js ({len(files[CONFIG_JS])} bytes) served in /config.js; "
        f"custom-interface_config.js ({len(files[INTERFACE_JS])} bytes) served in "
        "/interface_config.js"
    ), result.observed
    assert served.fetched == ["config.js", "interface_config.js"], served.fetched
    assert_no_content(result)


def test_custom_config_created_after_web_started_fails_with_its_name_and_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = fixture("custom-config.js")
    served = Served({"config.js": fixture("served-config-plain.js")})
    result = run_check(monkeypatch, host_with({CONFIG_JS: data}, [stat_line(CONFIG_JS)]), served)
    assert (result.status, result.final) == ("fail", True), result
    assert (
        result.observed == f"custom-config.js ({len(data)} bytes) is not in the served /config.js"
    )
    assert "restart web" in result.hint and "docker compose -p jitsi-sandbox restart web" in (
        result.hint
    ), result.hint
    assert "#2291" in result.hint, result.hint
    assert_no_content(result)


def test_an_older_version_served_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served({"config.js": fixture("served-config-stale.js")})
    runner = host_with({CONFIG_JS: fixture("custom-config.js")}, [stat_line(CONFIG_JS)])
    result = run_check(monkeypatch, runner, served)
    assert result.status == "fail" and "is not in the served /config.js" in result.observed, result
    assert_no_content(result)


def test_one_of_two_not_served_names_that_one(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        CONFIG_JS: fixture("custom-config.js"),
        INTERFACE_JS: fixture("custom-interface_config.js"),
    }
    served = Served(
        {
            "config.js": fixture("served-config.js"),
            "interface_config.js": fixture("served-interface_config-plain.js"),
        }
    )
    runner = host_with(files, [stat_line(CONFIG_JS), stat_line(INTERFACE_JS)])
    result = run_check(monkeypatch, runner, served)
    assert result.status == "fail", result
    assert "custom-config.js (227 bytes) served in /config.js" in result.observed, result.observed
    assert (
        "custom-interface_config.js (85 bytes) is not in the served /interface_config.js"
        in result.observed
    ), result.observed
    assert_no_content(result)


def test_rootless_file_uid_1000_cannot_read_is_named_in_the_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = Served({"config.js": fixture("served-config-plain.js")})
    runner = host_with({CONFIG_JS: fixture("custom-config.js")}, [stat_line(CONFIG_JS, mode="600")])
    result = run_check(monkeypatch, runner, served)
    assert result.status == "fail", result
    assert f"{CONFIG_JS} is 0:0 mode 0600" in result.hint and "uid 1000" in result.hint, result.hint
    assert "chmod o+r" in result.hint, result.hint


def test_legacy_layout_runs_as_root_so_modes_do_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    env = sandbox(JITSI_IMAGE_VERSION="stable-11031")
    served = Served({"config.js": fixture("served-config-plain.js")})
    runner = host_with({CONFIG_JS: fixture("custom-config.js")}, [stat_line(CONFIG_JS, mode="600")])
    result = run_check(monkeypatch, runner, served, env)
    assert result.status == "fail" and "uid 1000" not in result.hint, result
    assert "restart web" in result.hint, result.hint


def test_empty_custom_file_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    served = Served({})
    result = run_check(
        monkeypatch, host_with({CONFIG_JS: b"\r\n  \n"}, [stat_line(CONFIG_JS)]), served
    )
    assert (result.status, result.observed) == (
        "pass",
        "custom-config.js (5 bytes) has no content to serve",
    ), result
    assert served.fetched == []


def test_unreadable_over_ssh_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    class Denied(RecordingRunner):
        def get(self, path: str) -> bytes:
            raise PermissionError(13, "Permission denied", path)

    runner = Denied(
        label="sandbox",
        responses={
            STAT: (1, stat_line(CONFIG_JS, mode="600") + "\n", MISSING.format(INTERFACE_JS))
        },
    )
    result = run_check(monkeypatch, runner, Served({}))
    assert result.status == "warn", result
    assert "custom-config.js (0 bytes) could not be read over SSH" in result.observed, result
    assert CONFIG_JS in result.hint and "sudo = true" in result.hint, result.hint


def test_a_config_web_the_deploy_user_cannot_search_is_not_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    denied = "".join(
        f"stat: cannot statx '{p}': Permission denied\n" for p in (CONFIG_JS, INTERFACE_JS)
    )
    runner = RecordingRunner(label="sandbox", responses={STAT: (1, "", denied)})
    result = run_check(monkeypatch, runner, Served({}))
    assert result.status == "warn", result
    assert result.observed.startswith(f"cannot tell whether {WEB} holds custom files"), result
    assert "Permission denied" in result.observed and "sudo = true" in result.hint, result


def test_suite_has_it_after_config_js_and_only_selects_it() -> None:
    env = sandbox()
    suite = checks.build_suite(env, dict(env.values))
    ids = [c.id for c in suite]
    assert ids.index("web.custom_config") == ids.index("web.config_js") + 1, ids
    chosen = select(suite, ["web.custom_config"])
    assert [(c.id, c.host.label) for c in chosen] == [("web.custom_config", "sandbox")], chosen
    assert chosen[0].settles, "a web container still starting is retried"


def test_fetch_failure_is_retried_and_a_missing_file_is_final(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = sandbox()
    answers = [b"", fixture("served-config-plain.js")]

    def served_text(_facts: Facts, name: str) -> str:
        body = answers.pop(0)
        if not body:
            raise ConnectionError(f"GET https://127.0.0.1:8443/{name}: connection refused")
        return body.decode()

    monkeypatch.setattr(Facts, "served_text", served_text)
    now = [0.0]
    run = VerifyRun(
        env=env,
        values=dict(env.values),
        runners={
            env.deploy.main_host: host_with(
                {CONFIG_JS: fixture("custom-config.js")}, [stat_line(CONFIG_JS)]
            )
        },
        loopback=lambda *_a: HttpAnswer(404, ""),
        deadline=60.0,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    chosen = select(checks.build_suite(env, dict(env.values)), ["web.custom_config"])
    (outcome,) = run_checks(chosen, run)
    assert (outcome.status, outcome.attempts) == ("fail", 2), outcome
    assert "is not in the served /config.js" in outcome.observed, outcome
    assert answers == [], "the not-served answer ended the retries"
