"""check / render / check --json on a secrets.env with an unterminated quote: one line naming
file, line and key, and no part of the password anywhere (issue 10 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_env_tasks import invoke

FAKE_SECRET = "Zq7Xw-p9K2vR4mT8jL"


def fragments(secret: str, size: int = 4) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.mark.parametrize(
    "args",
    [("check",), ("check", "--json"), ("render",), ("render", "--show-secrets"), ("secrets",)],
)
def test_unterminated_quote_in_secrets_env_leaks_nothing(
    scratch_repo: Path, args: tuple[str, ...]
) -> None:
    path = scratch_repo / "env" / "example" / "secrets.env"
    path.write_text(f"# mine\nJVB_AUTH_PASSWORD='{FAKE_SECRET}\n")
    path.chmod(0o600)
    result = invoke(scratch_repo, *args, "--env", "example")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert result.stderr.startswith(
        "error: env/example/secrets.env:2: cannot parse the value of JVB_AUTH_PASSWORD\nhint: "
    ), result.stderr
    assert "Traceback" not in out
    leaked = [part for part in fragments(FAKE_SECRET) if part in out]
    assert not leaked, f"secret fragments {leaked} in {out!r}"
