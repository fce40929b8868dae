"""envfile parse errors name file, line and key, never any part of a value (issue 10 item 4)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from jitsi_ops import deploy as pipeline
from jitsi_ops import hoststate
from jitsi_ops.envfile import parse_entries
from jitsi_ops.errors import ConfigError
from jitsi_ops.runner import RecordingRunner, Result
from tests.unit.test_migrations import ok_report, pipeline_runner, write_seed_env

FAKE_SECRET = "Zq7Xw-p9K2vR4mT8jL"  # no English word: any 4 characters of it leaking is a leak


def fragments(secret: str, size: int = 4) -> list[str]:
    """Every run of `size` characters of the secret: a half password is a leak too."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_secret(text: str) -> None:
    leaked = [part for part in fragments(FAKE_SECRET) if part in text]
    assert not leaked, f"secret fragments {leaked} in {text!r}"


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (f"JICOFO_AUTH_PASSWORD='{FAKE_SECRET}\n", 1, "JICOFO_AUTH_PASSWORD"),
        (f'A=1\nJVB_AUTH_PASSWORD="{FAKE_SECRET}\n', 2, "JVB_AUTH_PASSWORD"),
        (f'# c\n\nexport JIBRI_XMPP_PASSWORD="{FAKE_SECRET}\n', 3, "JIBRI_XMPP_PASSWORD"),
        (f"  TURN_CREDENTIALS = '{FAKE_SECRET}\nB=2\n", 1, "TURN_CREDENTIALS"),
        (f'JWT_APP_SECRET="{FAKE_SECRET}\\"\n', 1, "JWT_APP_SECRET"),
        (f"A=1\nB=2\nC=3\nJIGASI_XMPP_PASSWORD='{FAKE_SECRET}", 4, "JIGASI_XMPP_PASSWORD"),
    ],
)
def test_unterminated_quote_names_file_line_and_key_only(text: str, line: int, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_entries(text, "env/x/secrets.env")
    message = info.value.message
    assert message.startswith(f"env/x/secrets.env:{line}: "), message
    assert key in message, message
    assert_no_secret(message + info.value.hint)
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        f"{FAKE_SECRET}\n",  # a password pasted on a line of its own
        f"{FAKE_SECRET.replace('-', '')}\n",  # ... that looks like a variable name without '='
        f"A=1\n{FAKE_SECRET}!\n",
        f"9{FAKE_SECRET}=x\n",
        f"'{FAKE_SECRET}\n",
        f"{FAKE_SECRET} more=x\n",
    ],
)
def test_line_without_a_valid_key_shows_no_part_of_it(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_entries(text, "host .env")
    assert info.value.message.startswith("host .env:"), info.value.message
    assert_no_secret(info.value.message + info.value.hint)


class StdinRecorder(RecordingRunner):
    """RecordingRunner that also keeps what each command got on stdin (the audit line)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stdins: list[str] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        if kwargs.get("stdin"):
            self.stdins.append(kwargs["stdin"])
        return super().run(argv, **kwargs)


def test_a_bad_host_env_leaks_nothing_into_report_audit_or_history(scratch_repo: Path) -> None:
    env = write_seed_env(scratch_repo)
    canned = pipeline_runner()
    host_env = (
        "CONFIG=/srv/jitsi-cfg\nJITSI_IMAGE_VERSION=stable-11031\n"
        f"JICOFO_AUTH_PASSWORD='{FAKE_SECRET}\n"
    )
    runner = StdinRecorder(
        responses=canned.responses, files={"/srv/handmade/.env": host_env.encode()}
    )
    report = pipeline.deploy(env, runner, verifier=ok_report)
    assert report.result == "failed", report.result
    assert "JICOFO_AUTH_PASSWORD" in (report.error or ""), report.error
    history = hoststate.history_path(env.root).read_text()
    audit = "".join(runner.stdins)
    assert "JICOFO_AUTH_PASSWORD" in audit and "JICOFO_AUTH_PASSWORD" in history
    assert_no_secret(json.dumps(report.as_dict()) + audit + history)
