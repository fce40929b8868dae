"""Load one environment (env/common.env, env/NAME/{deploy.toml,jitsi.env,secrets.env}) into frozen settings.

Layering: common.env < jitsi.env < secrets.env < JITSI_OPS_<KEY> process overrides, with
`${VAR}` interpolation across layers (an environment with `use_common_env = false` in its
deploy.toml, such as an adopted one, skips common.env). Nothing here touches os.environ or any host.
"""

from __future__ import annotations

import dataclasses
import difflib
import getpass
import ipaddress
import math
import os
import posixpath
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from jitsi_ops.composeset import COMPONENTS, component_problem
from jitsi_ops.envfile import Entry, interpolate, parse_entries
from jitsi_ops.errors import ConfigError
from jitsi_ops.versions import Layout, layout_for

OVERRIDE_PREFIX = "JITSI_OPS_"
# The deploy user's sudo password for unattended runs (read by jitsi_ops.cli.common). It shares
# the override prefix but is never a `.env` value: override_layer() skips it by name.
SUDO_PASSWORD_VAR = "JITSI_OPS_SUDO_PASSWORD"  # noqa: S105 - a variable name
_NOT_OVERRIDES = frozenset({SUDO_PASSWORD_VAR})
ENV_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
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


GuardPolicy = Literal["refuse", "wait", "force"]
GUARD_POLICIES: tuple[GuardPolicy, ...] = ("refuse", "wait", "force")


@dataclass(frozen=True)
class GuardOptions:
    """The conference guard: what a disruptive step does while meetings are live."""

    policy: GuardPolicy = "refuse"
    max_wait: float = 1800.0  # seconds `wait` waits for the meetings to end


@dataclass(frozen=True)
class RollingOptions:
    """Rolling bridge upgrades: how many bridges are drained and upgraded at once."""

    batch: int = 1


@dataclass(frozen=True)
class FleetOptions:
    """How many hosts the read-only and preparing phases reach at once."""

    parallel: int = 8


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
    guard: GuardOptions = field(default_factory=GuardOptions)
    rolling: RollingOptions = field(default_factory=RollingOptions)
    fleet: FleetOptions = field(default_factory=FleetOptions)

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
        """CONFIG as the host will see it: relative to stack_dir (see config_path), `~`
        expanded there, not here."""
        return config_path(self.values.get("CONFIG", ""), self.deploy.stack_dir)


def config_path(config: str, stack_dir: str) -> str:
    """Where a CONFIG value points on the host, as Compose reads it.

    Compose resolves a relative bind-mount source against the project directory, and every
    jitsi-ops compose call pins that to stack_dir (`--project-directory`), so `CONFIG=./cfg`
    means <stack_dir>/cfg. `~` is left to the host (the deploy user's home); '' stays ''.
    """
    if not config or config.startswith(("/", "~")):
        return config
    return posixpath.normpath(posixpath.join(stack_dir, config))


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
    "guard",
    "rolling",
    "fleet",
}
_HOST_KEYS = {"address", "user", "port", "role", "values", "sudo", "stack_dir", "backup_dir"}
_ENV_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
# Host names, IPv4 and ssh_config Host aliases; IPv6 addresses are checked with ipaddress.
_ADDRESS_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_SSH_KEYS = {"config", "known_hosts", "host_key_policy", "connect_timeout"}
_BACKUP_KEYS = {"dir", "keep"}
_VERIFY_KEYS = {
    "timeout",
    "ca_file",
    "trust_host_certificate",
    "cert_warning_days",
    "min_free_disk_mb",
}
_GUARD_KEYS = {"policy", "max_wait"}
_ROLLING_KEYS = {"batch"}
_FLEET_KEYS = {"parallel"}
_TYPES_HINT = "see env/example/deploy.toml for the expected types"


# TOML's names of the types tomllib returns (bool before int: a bool is an int in Python).
_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for messages (never the value: no secrets there)."""
    return next((name for kind, name in _TOML_TYPES if isinstance(value, kind)), "a date/time")


def valid_address(value: str) -> bool:
    """Whether `value` is a host name, an IP address or an ssh_config alias (nothing else: it
    reaches ssh, so no whitespace, no option-like '-' prefix, no user@ or :port)."""
    if _ADDRESS_RE.fullmatch(value):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def remote_path_problem(value: str) -> str | None:
    """Why `value` cannot be a directory on the host (stack_dir, backup dir), or None.

    `~` is refused rather than expanded: every command would have to expand it the same way on
    the host, and one that did not created a directory literally named `~`.
    """
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "contains a control character"
    if value.startswith("~"):
        return "starts with '~', which is not expanded on the host"
    if not value.startswith("/"):
        return "must be absolute"
    if posixpath.normpath(value) == "/":
        return "is the filesystem root /"
    return None


@dataclass(frozen=True)
class _Table:
    """One deploy.toml table with typed getters; every error names the dotted key and a hint."""

    data: Mapping[str, Any]
    where: str  # "" for the top level, else "ssh.", "hosts[0]." ...
    source: str

    def error(self, key: str, problem: str, hint: str = _TYPES_HINT) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where}{key} {problem}", hint=hint)

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.data:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(sorted(allowed))}"
            )
            if self.where.startswith("hosts[") and key in _TOP_KEYS:
                # TOML puts every key after [[hosts]] into that host's table.
                hint = f"move '{key}' above the first [[hosts]] table (top-level keys come first)"
            # A quoted key may hold control characters: escaped, the message stays one line.
            shown = key.encode("unicode_escape").decode("ascii")
            raise ConfigError(f"{self.source}: unknown key '{self.where}{shown}'", hint=hint)

    def _typed(self, key: str, kinds: tuple[type, ...], wanted: str, hint: str) -> Any:
        value = self.data[key]
        # bool is an int in Python, but `port = true` is still wrong.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(key, f"must be {wanted}, got {_toml_type(value)}", hint)
        return value

    def string(self, key: str, default: str) -> str:
        if key not in self.data:
            return default
        return str(self._typed(key, (str,), "a string", f'quote it: {key} = "..."'))

    def optional_string(self, key: str) -> str | None:
        return self.string(key, "") if key in self.data else None

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        hint = f"write {key} = true or {key} = false, without quotes"
        return bool(self._typed(key, (bool,), "a boolean (true or false)", hint))

    def integer(self, key: str, default: int, minimum: int | None) -> int:
        if key not in self.data:
            return default
        value = int(self._typed(key, (int,), "an integer", f"e.g. {key} = {default}"))
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}", f"e.g. {key} = {default}")
        return value

    def number(self, key: str, default: float) -> float:
        """A positive, finite number of seconds (an integer or a float)."""
        if key not in self.data:
            return default
        hint = f"write a number of seconds without quotes, e.g. {key} = {default:g}"
        value = float(self._typed(key, (int, float), "a number", hint))
        if not math.isfinite(value):
            raise self.error(key, "must be a finite number", hint)
        if value <= 0:
            raise self.error(key, "must be greater than 0", hint)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        if key not in self.data:
            return ()
        hint = f'a list of strings, e.g. {key} = ["jibri"]'
        items = self._typed(key, (list,), "a list of strings", hint)
        for item in items:
            if not isinstance(item, str):
                raise self.error(key, f"must hold strings only, got {_toml_type(item)}", hint)
        return tuple(items)

    def table(self, key: str) -> _Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(
                key, f"must be a table, got {_toml_type(value)}", f"write it as a [{key}] section"
            )
        return _Table(value, f"{self.where}{key}.", self.source)

    def remote_dir(self, key: str, default: str) -> str:
        """An absolute directory on the host (see remote_path_problem)."""
        value = self.string(key, default)
        problem = remote_path_problem(value)
        if problem:
            # The value is a path from the operator's own file: shown so it can be found.
            raise self.error(
                key,
                f"{value!r} {problem}",
                hint=f"use an absolute path, e.g. {key} = {default!r}",
            )
        return value

    def local_path(self, key: str, env_dir: Path) -> Path | None:
        """A file on this machine, relative to env/NAME unless absolute (`~` is this user's)."""
        value = self.optional_string(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (env_dir / path).resolve()


def _parse_hosts(data: _Table) -> tuple[Host, ...]:
    raw_hosts = data.data.get("hosts")
    if not raw_hosts:
        raise ConfigError(
            f"{data.source}: no [[hosts]] defined",
            hint='add [[hosts]] with address = "..." and role = "main"',
        )
    if not isinstance(raw_hosts, list):
        raise data.error(
            "hosts",
            f"must be a list of [[hosts]] tables, got {_toml_type(raw_hosts)}",
            hint='write each host as a [[hosts]] table with address = "..."',
        )
    hosts = []
    for index, raw in enumerate(raw_hosts):
        if not isinstance(raw, dict):
            raise data.error(
                f"hosts[{index}]",
                f"must be a table, got {_toml_type(raw)}",
                hint='use [[hosts]] tables with address = "..."',
            )
        hosts.append(_parse_host(_Table(raw, f"hosts[{index}].", data.source)))
    mains = [h for h in hosts if h.role == "main"]
    if len(mains) != 1:
        raise ConfigError(
            f"{data.source}: {len(mains)} hosts have role 'main'",
            hint="exactly one host runs web/prosody/jicofo (role = 'main'); others are 'jvb'",
        )
    return tuple(hosts)


def _parse_host(raw: _Table) -> Host:
    raw.check_keys(_HOST_KEYS)
    if "address" not in raw.data:
        raise raw.error("address", "is missing", hint="set the host name or IP")
    address = raw.string("address", "")
    if not valid_address(address):
        raise raw.error(
            "address",
            "is not a host name, IP address or ssh_config Host alias",
            hint='e.g. address = "meet.example.com" (user and port have keys of their own)',
        )
    role = raw.data.get("role", "main")
    if role not in ("main", "jvb"):
        raise raw.error("role", "must be 'main' or 'jvb'", hint="role is 'main' or 'jvb'")
    user = raw.optional_string("user")
    if user is not None and not _USER_RE.fullmatch(user):
        raise raw.error("user", "is not a valid user name", hint='e.g. user = "deploy"')
    port = raw.integer("port", 22, None) if "port" in raw.data else None
    if port is not None and not 1 <= port <= 65535:
        raise raw.error("port", f"{port} out of range", hint="use 1-65535")
    values = _host_values(raw)
    stack_dir = (
        raw.remote_dir("stack_dir", DeploySettings.stack_dir) if "stack_dir" in raw.data else None
    )
    backup_dir = (
        raw.remote_dir("backup_dir", BackupOptions.dir) if "backup_dir" in raw.data else None
    )
    if role == "main" and (stack_dir or backup_dir):
        raise raw.error(
            "stack_dir/backup_dir",
            "are for role 'jvb' hosts",
            hint="the main host uses the top-level stack_dir and [backup] dir",
        )
    return Host(
        address=address,
        role=role,
        user=user,
        port=port,
        values=values,
        sudo=raw.boolean("sudo", False),
        stack_dir=stack_dir,
        backup_dir=backup_dir,
    )


def _host_values(raw: _Table) -> tuple[tuple[str, str], ...]:
    """`values = { KEY = "value" }` of one host: `.env` keys with string values."""
    table = raw.data.get("values", {})
    if not isinstance(table, dict):
        raise raw.error(
            "values",
            f"must be a table, got {_toml_type(table)}",
            hint='e.g. values = { JVB_ADVERTISE_IPS = "203.0.113.7" }',
        )
    for key, value in table.items():
        if not _ENV_KEY_RE.fullmatch(key):
            shown = key if key.isprintable() else "(a key with control characters)"
            raise raw.error(
                f"values.{shown}",
                "is not an .env key",
                hint="keys are upper-case like JVB_ADVERTISE_IPS",
            )
        if not isinstance(value, str):
            raise raw.error(
                f"values.{key}",
                f"must be a string, got {_toml_type(value)}",
                hint='quote it: KEY = "value"',
            )
    return tuple(sorted(table.items()))


def parse_deploy_toml(text: str, source: str, env_dir: Path) -> DeploySettings:
    """Validate deploy.toml text into DeploySettings: every key type-checked, unknown keys
    refused with a suggestion, each problem one ConfigError naming the dotted key."""
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}", hint="fix the TOML syntax") from None
    data = _Table(parsed, "", source)
    data.check_keys(_TOP_KEYS)
    hosts = _parse_hosts(data)

    ssh_raw = data.table("ssh")
    ssh_raw.check_keys(_SSH_KEYS)
    policy = ssh_raw.data.get("host_key_policy", "strict")
    if policy not in ("strict", "accept-new"):
        raise ssh_raw.error(
            "host_key_policy",
            "must be 'strict' or 'accept-new'",
            hint="use 'strict' (default) or 'accept-new'",
        )
    ssh = SshOptions(
        config_file=ssh_raw.local_path("config", env_dir),
        known_hosts=ssh_raw.local_path("known_hosts", env_dir),
        host_key_policy=policy,
        connect_timeout=ssh_raw.number("connect_timeout", SshOptions.connect_timeout),
    )
    backup_raw = data.table("backup")
    backup_raw.check_keys(_BACKUP_KEYS)
    backup = BackupOptions(
        dir=backup_raw.remote_dir("dir", BackupOptions.dir),
        keep=backup_raw.integer("keep", BackupOptions.keep, 1),
    )
    verify_raw = data.table("verify")
    verify_raw.check_keys(_VERIFY_KEYS)
    verify = VerifyOptions(
        timeout=verify_raw.number("timeout", VerifyOptions.timeout),
        ca_file=verify_raw.local_path("ca_file", env_dir),
        trust_host_certificate=verify_raw.boolean("trust_host_certificate", False),
        cert_warning_days=verify_raw.integer(
            "cert_warning_days", VerifyOptions.cert_warning_days, 0
        ),
        min_free_disk_mb=verify_raw.integer("min_free_disk_mb", VerifyOptions.min_free_disk_mb, 0),
    )
    guard_raw = data.table("guard")
    guard_raw.check_keys(_GUARD_KEYS)
    policy_text = guard_raw.string("policy", GuardOptions.policy)
    if policy_text not in GUARD_POLICIES:
        raise guard_raw.error(
            "policy",
            f"must be one of {', '.join(GUARD_POLICIES)}, got {policy_text!r}",
            hint='e.g. policy = "refuse" (default): a deploy that would cut meetings stops',
        )
    guard = GuardOptions(
        policy=policy_text,
        max_wait=guard_raw.number("max_wait", GuardOptions.max_wait),
    )
    rolling_raw = data.table("rolling")
    rolling_raw.check_keys(_ROLLING_KEYS)
    rolling = RollingOptions(batch=rolling_raw.integer("batch", RollingOptions.batch, 1))
    fleet_raw = data.table("fleet")
    fleet_raw.check_keys(_FLEET_KEYS)
    fleet = FleetOptions(parallel=fleet_raw.integer("parallel", FleetOptions.parallel, 1))
    components = data.strings("components")
    for name in components:
        if name not in COMPONENTS:
            problem, hint = component_problem(name)
            raise data.error("components", problem, hint=hint)
    project = data.string("project", DeploySettings.project)
    if not _PROJECT_RE.fullmatch(project):
        raise data.error(
            "project",
            f"{project!r} is not a valid compose project name",
            hint="lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )
    return DeploySettings(
        hosts=hosts,
        project=project,
        stack_dir=data.remote_dir("stack_dir", DeploySettings.stack_dir),
        components=components,
        test_environment=data.boolean("test_environment", False),
        reverse_proxy=data.boolean("reverse_proxy", False),
        internet_facing=data.boolean("internet_facing", True),
        use_common_env=data.boolean("use_common_env", True),
        ssh=ssh,
        backup=backup,
        verify=verify,
        guard=guard,
        rolling=rolling,
        fleet=fleet,
    )


def available_environments(root: Path) -> list[str]:
    """Names of the environments under env/."""
    env_root = root / "env"
    if not env_root.is_dir():
        return []
    # A hidden directory is an unfinished `invoke init` (see environments.scaffold), not one.
    return sorted(
        p.name
        for p in env_root.iterdir()
        if not p.name.startswith(".") and (p / "deploy.toml").is_file()
    )


def validate_env_name(name: str) -> str:
    """Environment names become directory names: keep them simple."""
    if not name:
        raise ConfigError("no environment given", hint="pass --env NAME (e.g. --env prod)")
    if not ENV_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid environment name {name!r}",
            hint="use lowercase letters, digits, '-' and '_' (max 40 characters)",
        )
    return name


def _read_text(path: Path, name: str) -> str:
    """A local settings file as text; unreadable or non-UTF-8 files are one-line errors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot read ({exc.strerror or exc.__class__.__name__})",
            hint="check the file's owner and mode",
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not UTF-8 text", hint="save the file as UTF-8") from None


def _read_layer(path: Path, name: str) -> Layer:
    try:
        text = _read_text(path, name)
    except FileNotFoundError:
        return Layer(name, ())
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
        _read_text(deploy_path, f"{rel}/deploy.toml"), f"{rel}/deploy.toml", env_dir
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
