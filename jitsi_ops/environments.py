"""Operations on the local environment model: scaffold, fill secrets, render the `.env`, check."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from urllib.parse import urlsplit

import tomli_w

from jitsi_ops import __version__
from jitsi_ops.composeset import (
    BRIDGE_FILE,
    COMPOSE_VARIABLES,
    compose_dir,
    enabled_components,
    host_compose_files,
    variables_in,
)
from jitsi_ops.envfile import Section, normalise_boolean, parse_entries, quote_value, render
from jitsi_ops.errors import ConfigError
from jitsi_ops.lint import Finding, context_for, run_checks
from jitsi_ops.localfiles import PUBLIC_MODE, fsync_dir, write_atomic, write_private
from jitsi_ops.secrets import fill_missing, is_secret_key
from jitsi_ops.settings import Environment, parse_deploy_toml, valid_address, validate_env_name
from jitsi_ops.versions import LATEST_KNOWN

SECRETS_HEADER = (
    "# Secrets of this environment. Generated once by `invoke secrets`, never rotated by jitsi-ops.\n"
    "# Keep this file out of git (it is in .gitignore) and at mode 0600.\n"
)


def deployed_components(env: Environment) -> list[str]:
    """Optional components this environment deploys."""
    return enabled_components(env.values, env.deploy.components)


def compose_names(env: Environment) -> list[str]:
    """The compose files (in -f order) of the host this view of the environment is for."""
    return host_compose_files(
        env.role, deployed_components(env), remote_bridges=bool(env.deploy.bridge_hosts)
    )


def rendered_values(env: Environment) -> dict[str, str]:
    """The final key/value set of the host's `.env` (booleans as 1/0, Compose project pinned).

    A bridge host's `.env` holds only what its compose file consumes: it never receives the
    passwords of jicofo, prosody's users or the other components.
    """
    values = {key: normalise_boolean(key, value) for key, value in env.values.items()}
    if env.role == "jvb":
        wanted = variables_in((compose_dir(env.root, env.layout) / BRIDGE_FILE).read_text())
        wanted |= COMPOSE_VARIABLES
        values = {key: value for key, value in values.items() if key in wanted}
    values["COMPOSE_PROJECT_NAME"] = env.deploy.project
    values["COMPOSE_FILE"] = ":".join(compose_names(env))
    return values


def render_env(env: Environment, *, show_secrets: bool = False) -> str:
    """The `.env` text for the host; secrets masked unless `show_secrets`."""
    values = rendered_values(env)
    overrides = [e.key for e in env.layers[-1].entries]
    sources = [layer.name for layer in env.layers[:-1] if layer.entries]
    header = [
        f"Rendered by jitsi-ops {__version__}: edit env/{env.name}/ in the jitsi-ops repository, "
        "not this file.",
        f"environment: {env.name}",
        f"release: {env.release or 'unpinned'}",
        f"sources: {', '.join(sources) or 'none'}"
        + (f"; overrides: {', '.join(overrides)}" if overrides else ""),
    ]
    compose = {k: v for k, v in values.items() if k.startswith("COMPOSE_")}
    settings = {k: v for k, v in values.items() if k not in compose and not is_secret_key(k)}
    secrets = {k: v for k, v in values.items() if k not in compose and is_secret_key(k)}
    sections = [
        Section("compose (pinned by jitsi-ops)", compose),
        Section("settings", settings),
        Section("secrets", secrets),
    ]
    return render(header, sections, show_secrets=show_secrets)


def fill_secrets(env: Environment) -> list[str]:
    """Generate only the missing secrets into secrets.env; returns the generated key names.

    Existing lines are kept byte for byte; new ones are appended. The file ends at mode 0600
    even when nothing was missing.
    """
    path = env.secrets_file
    existing_text = path.read_text(encoding="utf-8") if path.exists() else SECRETS_HEADER
    existing = {e.key: e.value for e in parse_entries(existing_text, str(path))}
    # A secret given by another layer (e.g. a JITSI_OPS_ override) still counts as missing
    # here: secrets.env must hold it so the next run without the override renders the same.
    new = fill_missing(existing)
    if not new:
        if path.exists() and (path.stat().st_mode & 0o077):
            os.chmod(path, 0o600)
        return []
    text = existing_text if existing_text.endswith("\n") else existing_text + "\n"
    text += _secret_lines(new)
    write_private(path, text)
    return list(new)


@dataclass(frozen=True)
class CheckReport:
    """Result of `invoke check`."""

    env: str
    release: str | None
    findings: tuple[Finding, ...]

    def as_dict(self) -> dict[str, object]:
        """The documented JSON shape."""
        return {
            "env": self.env,
            "release": self.release,
            "findings": [f.as_dict() for f in self.findings],
        }


def check(env: Environment) -> CheckReport:
    """Run every rule against the environment (offline)."""
    return CheckReport(env.name, env.release, tuple(run_checks(context_for(env))))


# The commented defaults around the one table init writes; the table itself comes from a TOML
# serializer (tomli_w), so no argument can add a key or a line.
DEPLOY_TOML_HEAD = """\
# jitsi-ops deployment settings for the '{name}' environment.
# Every key but [[hosts]] is optional; the defaults are shown commented out.

# project = "jitsi"               # docker compose project name, pinned with -p
# stack_dir = "/opt/jitsi-meet"   # where .env and the compose files live on the host (absolute)
# components = []                 # extra overlays: "jibri", "jigasi", "transcriber" (etherpad/whiteboard follow their URLs)
# test_environment = false        # true allows unpinned image tags (sandboxes only)
# reverse_proxy = false           # TLS terminated by a proxy in front of HTTP_PORT/HTTPS_PORT
# internet_facing = true          # warn when JVB_ADVERTISE_IPS holds only private addresses
# use_common_env = true           # false: env/common.env does not apply (adopted environments)

# address: name or IP, or a Host alias from ssh_config
# role: main (web, prosody, jicofo, jvb) | jvb (extra bridge)
"""

DEPLOY_TOML_TAIL = """\
# user = "deploy"                 # default: from ssh_config, else your local user
# port = 22

# [ssh]
# config = "ssh_config"           # relative to this directory
# known_hosts = "known_hosts"     # default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts
# host_key_policy = "strict"      # strict | accept-new
# connect_timeout = 15

# [backup]
# dir = "/var/backups/jitsi-ops"  # absolute: `~` is not expanded on the host
# keep = 5

# [verify]
# timeout = 180                   # seconds the health gate waits for services to settle
# ca_file = "ca.pem"              # CA that signed PUBLIC_URL's certificate, if not a public one
# cert_warning_days = 14
# min_free_disk_mb = 2048
"""

JITSI_ENV_TEMPLATE = """\
# docker-jitsi-meet settings of the '{name}' environment (no secrets here: see secrets.env).
# Layers: env/common.env < this file < secrets.env < JITSI_OPS_<KEY> process variables.

# The exact URL users type, with the port if it is not 443.
{public_url}
# Pinned release; jitsi-ops refuses floating tags (stable, latest, unstable).
{release}
# Public IP(s) of the videobridge host, comma separated (IP or IP#port).
# JVB_ADVERTISE_IPS=203.0.113.10
# The bridge's private REST (host 127.0.0.1 only): lets verify prove the media path.
COLIBRI_REST_ENABLED=1
"""

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_URL_HINT = "pass the URL users type, e.g. --public-url https://meet.example.com[:8443]"


def checked_public_url(url: str) -> str:
    """`url` as exactly https://host[:port], or a ConfigError. The URL is not echoed: it may
    hold credentials, and a control character in it would break the one-line message."""

    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"--public-url {problem}", hint=_URL_HINT)

    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise refuse("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("has an invalid host or port") from None
    if parts.scheme != "https":
        raise refuse("is not an https:// URL")
    if "@" in parts.netloc:
        raise refuse("contains user credentials")
    host = parts.hostname or ""
    if not host:
        raise refuse("has no host name")
    if not (_DNS_NAME_RE.fullmatch(host) or _is_ip(host)):
        raise refuse("has an invalid host name")
    if port == 0:
        raise refuse("has port 0")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise refuse("has a query or fragment")
    if parts.path not in ("", "/"):
        raise refuse("has a path (Jitsi is served at the root of its host name)")
    return f"https://{parts.netloc}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def deploy_toml_text(name: str, address: str) -> str:
    """deploy.toml of a new environment: the commented defaults and one main host."""
    # The table's body from the serializer, under a constant [[hosts]] header: tomli_w writes an
    # array of tables inline (hosts = [{...}]), where the operator adds [[hosts]] tables later.
    host = tomli_w.dumps({"address": address, "role": "main"})
    return DEPLOY_TOML_HEAD.format(name=name) + "[[hosts]]\n" + host + DEPLOY_TOML_TAIL


def _secret_lines(new: Mapping[str, str]) -> str:
    return "".join(f"{key}={quote_value(key, value)}\n" for key, value in new.items())


@dataclass(frozen=True)
class Scaffold:
    """What init created: the files (in env/NAME) and the names of the generated secrets."""

    files: tuple[Path, ...]
    generated: tuple[str, ...]


def scaffold(root: Path, name: str, public_url: str, host: str) -> Scaffold:
    """Create env/NAME with deploy.toml, jitsi.env and secrets.env; refuses to overwrite.

    All or nothing: the files are written into a hidden directory next to env/NAME, which is
    renamed into place last, so a failure leaves nothing that would block the next try.
    """
    validate_env_name(name)
    url = checked_public_url(public_url)
    address = host or (urlsplit(url).hostname or "")
    if not valid_address(address):
        raise ConfigError(
            f"--host {address!r} is not a host name, IP address or ssh_config Host alias",
            hint="pass the SSH address alone, e.g. --host meet.example.com "
            "(user and port go into deploy.toml)",
        )
    env_root = root / "env"
    env_dir = env_root / name
    exists = ConfigError(
        f"env/{name} already exists; refusing to overwrite it",
        hint=f"edit env/{name}/ directly, or choose another name",
    )
    if env_dir.exists() or env_dir.is_symlink():
        raise exists
    deploy_text = deploy_toml_text(name, address)
    # What load_environment() will read back: the serializer's output, validated once here.
    parse_deploy_toml(deploy_text, f"env/{name}/deploy.toml", env_dir)
    jitsi_text = JITSI_ENV_TEMPLATE.format(
        name=name,
        public_url=f"PUBLIC_URL={quote_value('PUBLIC_URL', url)}",
        release=f"JITSI_IMAGE_VERSION={quote_value('JITSI_IMAGE_VERSION', LATEST_KNOWN)}",
    )
    new_secrets = fill_missing({})
    env_root.mkdir(parents=True, exist_ok=True)
    # Hidden (a leading '.'): never listed as an environment, and no valid environment name.
    staging = env_root / f".{name}.init-{token_hex(4)}"
    staging.mkdir()
    try:
        write_atomic(staging / "deploy.toml", deploy_text, PUBLIC_MODE)
        write_atomic(staging / "jitsi.env", jitsi_text, PUBLIC_MODE)
        write_private(staging / "secrets.env", SECRETS_HEADER + _secret_lines(new_secrets))
        if env_dir.exists() or env_dir.is_symlink():  # created meanwhile by another run
            raise exists
        staging.rename(env_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(env_root)
    files = tuple(env_dir / n for n in ("deploy.toml", "jitsi.env", "secrets.env"))
    return Scaffold(files, tuple(new_secrets))
