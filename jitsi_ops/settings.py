"""Load one environment (env/common.env, env/NAME/{deploy.toml,jitsi.env,secrets.env}) into frozen settings.

Layering: common.env < jitsi.env < secrets.env < JITSI_OPS_<KEY> process overrides, with
`${VAR}` interpolation across layers (an environment with `use_common_env = false` in its
deploy.toml, such as an adopted one, skips common.env). Nothing here touches os.environ or any host.
"""

from __future__ import annotations

import dataclasses
import difflib
import getpass
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from jitsi_ops.envfile import Entry, interpolate, parse_entries
from jitsi_ops.errors import ConfigError
from jitsi_ops.versions import Layout, layout_for

OVERRIDE_PREFIX = "JITSI_OPS_"
# The deploy user's sudo password for unattended runs (read by jitsi_ops.cli.common). It shares
# the override prefix but is never a `.env` value: override_layer() skips it by name.
SUDO_PASSWORD_VAR = "JITSI_OPS_SUDO_PASSWORD"  # noqa: S105 - a variable name
_NOT_OVERRIDES = frozenset({SUDO_PASSWORD_VAR})
ENV_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
Role = Literal["main", "jvb"]
HostKeyPolicy = Literal["strict", "accept-new"]


@dataclass(frozen=True)
class Host:
    """One SSH target of an environment."""

    address: str
    role: Role = "main"
    user: str | None = None
    port: int | None = None
    # Values only this host's `.env` gets, on top of the environment's (a remote bridge's own
    # JVB_ADVERTISE_IPS, the address it reaches prosody at). A tuple keeps Host hashable.
    values: tuple[tuple[str, str], ...] = ()
    # Where this host keeps the stack and the backups when it differs from the environment's.
    stack_dir: str | None = None
    backup_dir: str | None = None
    # A non-root deploy user: every command goes through sudo (see jitsi_ops.ssh).
    sudo: bool = False

    @property
    def label(self) -> str:
        """Short name for reports."""
        return self.address if self.port in (None, 22) else f"{self.address}:{self.port}"


@dataclass(frozen=True)
class SshOptions:
    """How to reach the hosts: ssh_config, known_hosts and the host-key policy."""

    config_file: Path | None = None
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicy = "strict"
    connect_timeout: float = 15.0


@dataclass(frozen=True)
class BackupOptions:
    """Where backups go on the host and how many are kept."""

    dir: str = "/var/backups/jitsi-ops"
    keep: int = 5


@dataclass(frozen=True)
class VerifyOptions:
    """Settings of the post-deploy verification."""

    timeout: float = 180.0
    ca_file: Path | None = None
    trust_host_certificate: bool = False
    cert_warning_days: int = 14
    min_free_disk_mb: int = 2048


@dataclass(frozen=True)
class DeploySettings:
    """The parsed env/NAME/deploy.toml."""

    hosts: tuple[Host, ...]
    project: str = "jitsi"
    stack_dir: str = "/opt/jitsi-meet"
    components: tuple[str, ...] = ()
    test_environment: bool = False
    reverse_proxy: bool = False
    internet_facing: bool = True
    # False for an adopted environment: its values are exactly the host's, and env/common.env's
    # shared defaults would add keys the host never had (recreating containers).
    use_common_env: bool = True
    ssh: SshOptions = field(default_factory=SshOptions)
    backup: BackupOptions = field(default_factory=BackupOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)

    @property
    def main_host(self) -> Host:
        """The host that runs web, prosody and jicofo."""
        return next(host for host in self.hosts if host.role == "main")

    @property
    def bridge_hosts(self) -> tuple[Host, ...]:
        """The role 'jvb' hosts: extra videobridges that reach the main host's prosody."""
        return tuple(host for host in self.hosts if host.role == "jvb")


@dataclass(frozen=True)
class Layer:
    """One source of values in precedence order, kept for reporting where a key came from."""

    name: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Environment:
    """Everything jitsi-ops knows about one environment, validated and immutable."""

    name: str
    root: Path
    deploy: DeploySettings
    layers: tuple[Layer, ...]
    values: Mapping[str, str]
    origins: Mapping[str, str]
    # Which kind of host this view of the environment renders for: the whole environment is
    # the main host's view; for_host() gives a role 'jvb' host its own.
    role: Role = "main"

    def for_host(self, host: Host) -> Environment:
        """The environment as one host gets it: that host's `values` layered in (below the
        process overrides, which still win) and its role."""
        if not (host.values or host.stack_dir or host.backup_dir) and host.role == self.role:
            return self
        deploy = dataclasses.replace(
            self.deploy,
            stack_dir=host.stack_dir or self.deploy.stack_dir,
            backup=dataclasses.replace(
                self.deploy.backup, dir=host.backup_dir or self.deploy.backup.dir
            ),
        )
        entries = tuple(
            Entry(key=key, value=value, literal=True, line=0) for key, value in host.values
        )
        layers = (*self.layers[:-1], Layer(f"deploy.toml hosts ({host.label})", entries))
        layers += self.layers[-1:]
        values, origins = fold_layers(layers)
        return dataclasses.replace(
            self, deploy=deploy, layers=layers, values=values, origins=origins, role=host.role
        )

    @property
    def env_dir(self) -> Path:
        """env/NAME."""
        return self.root / "env" / self.name

    @property
    def secrets_file(self) -> Path:
        """env/NAME/secrets.env."""
        return self.env_dir / "secrets.env"

    @property
    def release(self) -> str | None:
        """The pinned JITSI_IMAGE_VERSION, if any."""
        return self.values.get("JITSI_IMAGE_VERSION") or None

    @property
    def layout(self) -> Layout:
        """Compose layout of the pinned release."""
        return layout_for(self.release)

    @property
    def config_dir(self) -> str:
        """CONFIG as the host will see it (`~` expanded there, not here)."""
        return self.values.get("CONFIG", "")


_TOP_KEYS = {
    "hosts",
    "project",
    "stack_dir",
    "components",
    "test_environment",
    "reverse_proxy",
    "internet_facing",
    "use_common_env",
    "ssh",
    "backup",
    "verify",
}
_HOST_KEYS = {"address", "user", "port", "role", "values", "sudo", "stack_dir", "backup_dir"}
_ENV_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SSH_KEYS = {"config", "known_hosts", "host_key_policy", "connect_timeout"}
_BACKUP_KEYS = {"dir", "keep"}
_VERIFY_KEYS = {
    "timeout",
    "ca_file",
    "trust_host_certificate",
    "cert_warning_days",
    "min_free_disk_mb",
}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
            )
            if where.startswith("hosts[") and key in _TOP_KEYS:
                # TOML puts every key after [[hosts]] into that host's table.
                hint = f"move '{key}' above the first [[hosts]] table (top-level keys come first)"
            raise ConfigError(f"{source}: unknown key '{where}{key}'", hint=hint)


def _typed(table: Mapping[str, Any], key: str, kind: type, source: str, where: str = "") -> Any:
    value = table[key]
    # bool is an int in Python; a port of `true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: '{where}{key}' must be {kind.__name__}, got {type(value).__name__}",
            hint="see env/example/deploy.toml for the expected types",
        )
    return value


def _path(env_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (env_dir / path).resolve()


def _parse_hosts(hosts_data: Any, source: str) -> tuple[Host, ...]:
    if not isinstance(hosts_data, list) or not hosts_data:
        raise ConfigError(
            f"{source}: no [[hosts]] defined",
            hint='add [[hosts]] with address = "..." and role = "main"',
        )
    hosts = []
    for index, raw in enumerate(hosts_data):
        where = f"hosts[{index}]."
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: hosts[{index}] must be a table", hint="use [[hosts]] tables"
            )
        _check_keys(raw, _HOST_KEYS, where, source)
        if "address" not in raw:
            raise ConfigError(
                f"{source}: {where}address is missing", hint="set the host name or IP"
            )
        role = raw.get("role", "main")
        if role not in ("main", "jvb"):
            raise ConfigError(f"{source}: {where}role is {role!r}", hint="role is 'main' or 'jvb'")
        port = _typed(raw, "port", int, source, where) if "port" in raw else None
        values = _host_values(raw, source, where)
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"{source}: {where}port {port} out of range", hint="use 1-65535")
        hosts.append(
            Host(
                address=_typed(raw, "address", str, source, where),
                role=role,
                user=_typed(raw, "user", str, source, where) if "user" in raw else None,
                port=port,
                values=values,
                sudo=_typed(raw, "sudo", bool, source, where) if "sudo" in raw else False,
                stack_dir=_host_dir(raw, "stack_dir", source, where),
                backup_dir=_host_dir(raw, "backup_dir", source, where),
            )
        )
        if role == "main" and ("stack_dir" in raw or "backup_dir" in raw):
            raise ConfigError(
                f"{source}: {where}stack_dir/backup_dir are for role 'jvb' hosts",
                hint="the main host uses the top-level stack_dir and [backup] dir",
            )
    mains = [h for h in hosts if h.role == "main"]
    if len(mains) != 1:
        raise ConfigError(
            f"{source}: {len(mains)} hosts have role 'main'",
            hint="exactly one host runs web/prosody/jicofo (role = 'main'); others are 'jvb'",
        )

    return tuple(hosts)


def _host_dir(raw: Mapping[str, Any], key: str, source: str, where: str) -> str | None:
    """An absolute directory of one host (stack_dir, backup_dir), or None when not set."""
    if key not in raw:
        return None
    value: str = _typed(raw, key, str, source, where)
    if not value.startswith(("/", "~")):
        raise ConfigError(
            f"{source}: {where}{key} {value!r} must be absolute", hint="e.g. /opt/jitsi-meet"
        )
    return value


def _host_values(raw: Mapping[str, Any], source: str, where: str) -> tuple[tuple[str, str], ...]:
    """`values = { KEY = "value" }` of one host: `.env` keys with string values."""
    table = raw.get("values", {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"{source}: {where}values must be a table",
            hint='e.g. values = { JVB_ADVERTISE_IPS = "203.0.113.7" }',
        )
    for key, value in table.items():
        if not _ENV_KEY_RE.match(key):
            raise ConfigError(
                f"{source}: {where}values.{key} is not an .env key",
                hint="keys are upper-case like JVB_ADVERTISE_IPS",
            )
        if not isinstance(value, str):
            raise ConfigError(
                f"{source}: {where}values.{key} must be a string, got {type(value).__name__}",
                hint='quote it: KEY = "value"',
            )
    return tuple(sorted(table.items()))


def parse_deploy_toml(text: str, source: str, env_dir: Path) -> DeploySettings:
    """Validate deploy.toml text into DeploySettings; unknown keys are errors with a suggestion."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}", hint="fix the TOML syntax") from None
    _check_keys(data, _TOP_KEYS, "", source)
    hosts = _parse_hosts(data.get("hosts"), source)

    ssh_raw = data.get("ssh", {})
    _check_keys(ssh_raw, _SSH_KEYS, "ssh.", source)
    policy = ssh_raw.get("host_key_policy", "strict")
    if policy not in ("strict", "accept-new"):
        raise ConfigError(
            f"{source}: ssh.host_key_policy is {policy!r}",
            hint="use 'strict' (default) or 'accept-new'",
        )
    ssh = SshOptions(
        config_file=_path(env_dir, ssh_raw["config"]) if "config" in ssh_raw else None,
        known_hosts=_path(env_dir, ssh_raw["known_hosts"]) if "known_hosts" in ssh_raw else None,
        host_key_policy=policy,
        connect_timeout=float(ssh_raw.get("connect_timeout", 15)),
    )
    backup_raw = data.get("backup", {})
    _check_keys(backup_raw, _BACKUP_KEYS, "backup.", source)
    backup = BackupOptions(
        dir=str(backup_raw.get("dir", BackupOptions.dir)),
        keep=_typed(backup_raw, "keep", int, source, "backup.") if "keep" in backup_raw else 5,
    )
    if backup.keep < 1:
        raise ConfigError(f"{source}: backup.keep must be >= 1", hint="keep at least one backup")
    verify_raw = data.get("verify", {})
    _check_keys(verify_raw, _VERIFY_KEYS, "verify.", source)
    verify = VerifyOptions(
        timeout=float(verify_raw.get("timeout", 180)),
        ca_file=_path(env_dir, verify_raw["ca_file"]) if "ca_file" in verify_raw else None,
        trust_host_certificate=bool(verify_raw.get("trust_host_certificate", False)),
        cert_warning_days=int(verify_raw.get("cert_warning_days", 14)),
        min_free_disk_mb=int(verify_raw.get("min_free_disk_mb", 2048)),
    )
    components = tuple(data.get("components", ()))
    for name in components:
        if name not in ("etherpad", "whiteboard", "jibri", "jigasi"):
            raise ConfigError(
                f"{source}: unknown component {name!r}",
                hint="components: etherpad, whiteboard, jibri, jigasi",
            )
    project = data.get("project", "jitsi")
    if not re.match(r"^[a-z0-9][a-z0-9_-]*$", project):
        raise ConfigError(
            f"{source}: project {project!r} is not a valid compose project name",
            hint="lowercase letters, digits, '-' and '_'",
        )
    stack_dir = data.get("stack_dir", DeploySettings.stack_dir)
    if not str(stack_dir).startswith(("/", "~")):
        raise ConfigError(
            f"{source}: stack_dir {stack_dir!r} must be absolute", hint="e.g. /opt/jitsi-meet"
        )
    return DeploySettings(
        hosts=hosts,
        project=project,
        stack_dir=str(stack_dir),
        components=components,
        test_environment=bool(data.get("test_environment", False)),
        reverse_proxy=bool(data.get("reverse_proxy", False)),
        internet_facing=bool(data.get("internet_facing", True)),
        use_common_env=bool(data.get("use_common_env", True)),
        ssh=ssh,
        backup=backup,
        verify=verify,
    )


def available_environments(root: Path) -> list[str]:
    """Names of the environments under env/."""
    env_root = root / "env"
    if not env_root.is_dir():
        return []
    return sorted(p.name for p in env_root.iterdir() if (p / "deploy.toml").is_file())


def validate_env_name(name: str) -> str:
    """Environment names become directory names: keep them simple."""
    if not name:
        raise ConfigError("no environment given", hint="pass --env NAME (e.g. --env prod)")
    if not ENV_NAME_RE.match(name):
        raise ConfigError(
            f"invalid environment name {name!r}",
            hint="use lowercase letters, digits, '-' and '_' (max 40 characters)",
        )
    return name


def _read_layer(path: Path, name: str) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Layer(name, ())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{name}: cannot read ({exc.__class__.__name__})", hint="check the file"
        ) from None
    return Layer(name, tuple(parse_entries(text, name)))


def override_layer(environ: Mapping[str, str]) -> Layer:
    """JITSI_OPS_<KEY>=value process variables as the topmost layer (values are literal)."""
    entries = [
        Entry(key=key[len(OVERRIDE_PREFIX) :], value=value, literal=True, line=0)
        for key, value in sorted(environ.items())
        if key.startswith(OVERRIDE_PREFIX)
        and len(key) > len(OVERRIDE_PREFIX)
        and key not in _NOT_OVERRIDES
    ]
    return Layer("process overrides (JITSI_OPS_*)", tuple(entries))


def load_environment(
    name: str, root: Path | None = None, environ: Mapping[str, str] | None = None
) -> Environment:
    """Load and validate env/NAME; raises ConfigError naming the file and key on bad input."""
    root = (root or Path.cwd()).resolve()
    validate_env_name(name)
    env_dir = root / "env" / name
    deploy_path = env_dir / "deploy.toml"
    if not deploy_path.is_file():
        known = ", ".join(available_environments(root)) or "none yet"
        raise ConfigError(
            f"environment '{name}' not found: {deploy_path.relative_to(root)} does not exist",
            hint=f"create it with `invoke init --env {name}`; existing: {known}",
        )
    rel = f"env/{name}"
    deploy = parse_deploy_toml(
        deploy_path.read_text(encoding="utf-8"), f"{rel}/deploy.toml", env_dir
    )
    common = (
        _read_layer(root / "env" / "common.env", "env/common.env")
        if deploy.use_common_env
        else Layer("env/common.env (not used: use_common_env = false)", ())
    )
    layers = (
        common,
        _read_layer(env_dir / "jitsi.env", f"{rel}/jitsi.env"),
        _read_layer(env_dir / "secrets.env", f"{rel}/secrets.env"),
        override_layer(os.environ if environ is None else environ),
    )
    values, origins = fold_layers(layers)
    return Environment(
        name=name, root=root, deploy=deploy, layers=layers, values=values, origins=origins
    )


def fold_layers(layers: tuple[Layer, ...]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """Values (interpolated layer by layer) and the layer each key came from."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for layer in layers:
        values = interpolate(layer.entries, values)
        for entry in layer.entries:
            origins[entry.key] = layer.name
    return MappingProxyType(values), MappingProxyType(origins)


def local_user() -> str:
    """Who runs jitsi-ops here (for locks and audit records)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
