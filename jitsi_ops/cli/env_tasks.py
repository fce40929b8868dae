"""Tasks on the local environment model: init, secrets, render, check."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from jitsi_ops import environments, localfiles
from jitsi_ops.cli.common import ENV_HELP, boundary, emit_json, load, repo_root
from jitsi_ops.settings import validate_env_name


@task(
    help={
        "env": "name of the new environment (folder env/NAME)",
        "public_url": "the URL users type, e.g. https://meet.example.com",
        "host": "SSH address of the main host (default: PUBLIC_URL's host name)",
    }
)
@boundary
def init(c: Context, env: str = "", public_url: str = "", host: str = "") -> None:
    """Scaffold a new environment (deploy.toml, jitsi.env); never overwrites."""
    validate_env_name(env)
    if not public_url:
        raise Exit(
            "error: --public-url is required\nhint: e.g. --public-url https://meet.example.com",
            code=2,
        )
    created = environments.scaffold(repo_root(c), env, public_url, host)
    for path in created.files[:2]:
        print(f"created {path.relative_to(repo_root(c))}")
    print(f"created env/{env}/secrets.env (mode 0600) with: {', '.join(created.generated)}")
    print(f"next: edit env/{env}/deploy.toml and jitsi.env, then `invoke check --env {env}`")


@task(help={"env": ENV_HELP})
@boundary
def secrets(c: Context, env: str = "") -> None:
    """Generate missing secrets into secrets.env (0600); never rotates an existing one."""
    loaded = load(c, env)
    generated = environments.fill_secrets(loaded)
    rel = loaded.secrets_file.relative_to(repo_root(c))
    if generated:
        print(f"generated in {rel}: {', '.join(generated)}")
    else:
        print(f"nothing to generate: every secret is already set in {rel}")


@task(
    help={
        "env": ENV_HELP,
        "output": "write to this file (mode 0600) instead of printing",
        "show_secrets": "print secret values instead of masking them (never in shared logs)",
    }
)
@boundary
def render(c: Context, env: str = "", output: str = "", show_secrets: bool = False) -> None:
    """Print the .env the host would get (secrets masked unless --show-secrets)."""
    loaded = load(c, env)
    if output:
        # A written file is meant for docker compose, so it always holds the real values.
        localfiles.write_private(Path(output), environments.render_env(loaded, show_secrets=True))
        print(f"wrote {output} (mode 0600)")
        return
    print(environments.render_env(loaded, show_secrets=show_secrets), end="")


@task(help={"env": ENV_HELP, "json": "print one JSON object instead of text"})
@boundary
def check(c: Context, env: str = "", json: bool = False) -> None:
    """Check an environment offline for known mistakes (exit 1 on any error)."""
    report = environments.check(load(c, env))
    if json:
        emit_json(report.as_dict())
    else:
        for f in report.findings:
            key = f" {f.key}:" if f.key else ""
            print(f"{f.severity:<7} [{f.rule}]{key} {f.message} (hint: {f.hint})")
        counts = {
            s: sum(1 for f in report.findings if f.severity == s)
            for s in ("error", "warning", "info")
        }
        print(
            f"{report.env} ({report.release or 'no release'}): "
            f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"
        )
    if any(f.severity == "error" for f in report.findings):
        raise Exit(code=1)
