"""STAND-IN jitsi/prosody entrypoint for tests: render config, create accounts, exec prosody.

The XMPP server itself is the real prosody (Debian bookworm's 0.12; the real stable-11146-2
image ships 13.x). Kept from the real image (docker-jitsi-meet stable-11146-2 / stable-11031):
- config rendered from env at every start: XMPP_DOMAIN, XMPP_AUTH_DOMAIN, XMPP_MUC_DOMAIN,
  XMPP_INTERNAL_MUC_DOMAIN (JVB brewery), XMPP_GUEST_DOMAIN, XMPP_HIDDEN_DOMAIN (fallback
  XMPP_RECORDER_DOMAIN), ENABLE_AUTH + AUTH_TYPE/PROSODY_AUTH_TYPE (internal), ENABLE_GUESTS,
  ENABLE_XMPP_WEBSOCKET; BOSH and websocket on 5280, c2s on 5222 (STARTTLS with a self-signed
  certificate, required unless PROSODY_C2S_REQUIRE_ENCRYPTION=0);
- ``GET /health`` on 5280 answers "OK" to 127.0.0.1/::1 only (403 otherwise);
- creates focus@<auth> and <JVB_AUTH_USER:-jvb>@<auth> (plus jibri/jigasi/recorder/transcriber
  accounts when their passwords are set) ONLY IF THEY DO NOT EXIST, so a rotated password locks
  the component out exactly like upstream since stable-10741; "FATAL ERROR" if the jicofo or jvb
  password is empty;
- rootless: uid 1000, config in /run/prosody/config, data in /var/lib/prosody/data (the
  storage/prosody volume, which must be writable: FATAL otherwise), one-time copy of the old
  /config/data when the new data dir is empty; legacy: root (prosody drops to its own user),
  config in /config, data in /config/data.

Create an internal-auth user (what the handbook documents):
  rootless: prosodyctl --config /run/prosody/config/prosody.cfg.lua register USER meet.jitsi PASS
  legacy:   prosodyctl --config /config/prosody.cfg.lua register USER meet.jitsi PASS
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from jitsi_standin.common import (
    check_writable,
    copy_config_input,
    env,
    env_bool,
    exec_main,
    fatal,
    layout,
    log,
    release,
)

COMPONENT = "prosody"
PLUGIN_DIR = "/usr/share/jitsi-ops-standin/prosody-plugins"


class Paths:
    """Where this layout renders config and keeps data."""

    def __init__(self, rootless: bool) -> None:
        self.rootless = rootless
        self.config = Path("/run/prosody/config") if rootless else Path("/config")
        self.cfg = self.config / "prosody.cfg.lua"
        self.certs = self.config / "certs"
        self.data = Path("/var/lib/prosody/data") if rootless else Path("/config/data")
        self.pid = "/run/prosody/prosody.pid" if rootless else "/var/run/prosody/prosody.pid"
        self.user = pwd.getpwuid(os.getuid()).pw_name if rootless else "prosody"


def _lua(value: str) -> str:
    """A Lua string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encode(part: str) -> str:
    """prosody's datamanager file-name encoding: every non-alphanumeric byte becomes %xx."""
    return "".join(c if c.isascii() and c.isalnum() else f"%{ord(c):02x}" for c in part)


def domains() -> dict[str, str]:
    """The XMPP domains with upstream's defaults."""
    hidden = env("XMPP_HIDDEN_DOMAIN") or env("XMPP_RECORDER_DOMAIN") or "hidden.meet.jitsi"
    return {
        "domain": env("XMPP_DOMAIN", "meet.jitsi"),
        "auth": env("XMPP_AUTH_DOMAIN", "auth.meet.jitsi"),
        "guest": env("XMPP_GUEST_DOMAIN", "guest.meet.jitsi"),
        "muc": env("XMPP_MUC_DOMAIN", "muc.meet.jitsi"),
        "internal_muc": env("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi"),
        "hidden": hidden,
    }


def render_main(paths: Paths, doms: dict[str, str]) -> str:
    """prosody.cfg.lua (global section); the hosts live in conf.d/jitsi-meet.cfg.lua."""
    require_tls = env_bool("PROSODY_C2S_REQUIRE_ENCRYPTION", True)
    return f"""-- jitsi-ops STAND-IN prosody config (tests only), rendered at container start
admins = {{ {_lua("focus@" + doms["auth"])} }}
plugin_paths = {{ "/prosody-plugins-custom", {_lua(PLUGIN_DIR)} }}
prosody_user = {_lua(paths.user)}
pidfile = {_lua(paths.pid)}
data_path = {_lua(str(paths.data))}
certificates = "certs"
log = {{ {{ levels = {{ min = {_lua(env("LOG_LEVEL", "info"))} }}, to = "console" }} }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "admin_shell" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_ports = {{ {int(env("XMPP_PORT", "5222"))} }}
c2s_require_encryption = {str(require_tls).lower()}
http_ports = {{ {int(env("PROSODY_HTTP_PORT", "5280"))} }}
http_interfaces = {{ "*" }}
https_ports = {{ }}
http_default_host = {_lua(doms["domain"])}
consider_bosh_secure = true
consider_websocket_secure = true
Include "conf.d/*.cfg.lua"
"""


def _auth_type() -> str:
    """prosody's authentication provider for the main domain."""
    if not env_bool("ENABLE_AUTH", False):
        return "anonymous"
    kind = env("PROSODY_AUTH_TYPE") or env("AUTH_TYPE", "internal")
    if kind != "internal":
        log(COMPONENT, f"AUTH_TYPE={kind} is not implemented by the stand-in; using internal")
    return "internal_hashed"


def render_hosts(doms: dict[str, str]) -> str:
    """conf.d/jitsi-meet.cfg.lua: the virtual hosts and MUC components."""
    main_modules = ['"bosh"', '"ping"', '"standin_health"']
    if env_bool("ENABLE_XMPP_WEBSOCKET", True):
        main_modules.insert(1, '"websocket"')
    text = f"""-- jitsi-ops STAND-IN prosody hosts (tests only)
VirtualHost {_lua(doms["domain"])}
    authentication = {_lua(_auth_type())}
    modules_enabled = {{ {"; ".join(main_modules)} }}

VirtualHost {_lua(doms["auth"])}
    authentication = "internal_hashed"

VirtualHost {_lua(doms["hidden"])}
    authentication = "internal_hashed"
"""
    if env_bool("ENABLE_AUTH", False) and env_bool("ENABLE_GUESTS", False):
        text += f"""
VirtualHost {_lua(doms["guest"])}
    authentication = "anonymous"
    c2s_require_encryption = false
"""
    for key in ("internal_muc", "muc"):
        text += f"""
Component {_lua(doms[key])} "muc"
    storage = "memory"
    muc_room_locking = false
    muc_room_default_public_jids = true
"""
    return text


def ensure_certs(paths: Paths, doms: dict[str, str]) -> None:
    """Self-signed certificates for the main and auth domains (c2s STARTTLS)."""
    paths.certs.mkdir(parents=True, exist_ok=True)
    for host in (doms["domain"], doms["auth"]):
        crt, key = paths.certs / f"{host}.crt", paths.certs / f"{host}.key"
        if crt.is_file() and key.is_file():
            continue
        subprocess.run(
            [
                "openssl", "req", "-new", "-x509", "-days", "3650", "-nodes",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},DNS:*.{host}",
                "-out", str(crt), "-keyout", str(key),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        key.chmod(0o640)


def accounts(doms: dict[str, str]) -> list[tuple[str, str, str]]:
    """(user, host, env var holding the password) of every service account to create."""
    found = [
        ("focus", doms["auth"], "JICOFO_AUTH_PASSWORD"),
        (env("JVB_AUTH_USER", "jvb"), doms["auth"], "JVB_AUTH_PASSWORD"),
    ]
    if env("JIBRI_XMPP_PASSWORD"):
        found.append((env("JIBRI_XMPP_USER", "jibri"), doms["auth"], "JIBRI_XMPP_PASSWORD"))
    if env("JIBRI_RECORDER_PASSWORD"):
        found.append(
            (env("JIBRI_RECORDER_USER", "recorder"), doms["hidden"], "JIBRI_RECORDER_PASSWORD")
        )
    if env("JIGASI_XMPP_PASSWORD"):
        found.append((env("JIGASI_XMPP_USER", "jigasi"), doms["auth"], "JIGASI_XMPP_PASSWORD"))
    if env_bool("ENABLE_TRANSCRIPTIONS", False) and env("JIGASI_TRANSCRIBER_PASSWORD"):
        user = env("JIGASI_TRANSCRIBER_USER", "transcriber")
        found.append((user, doms["hidden"], "JIGASI_TRANSCRIBER_PASSWORD"))
    return found


def create_missing_accounts(paths: Paths, doms: dict[str, str]) -> None:
    """Create each service account unless it exists; an existing one keeps its OLD password."""
    for user, host, var in accounts(doms):
        stored = paths.data / _encode(host) / "accounts" / f"{_encode(user)}.dat"
        jid = f"{user}@{host}"
        if stored.exists():
            log(COMPONENT, f"User exists: {jid} (password left unchanged)")
            continue
        # The password goes through prosodyctl's prompt on stdin, never on a command line.
        secret = env(var)
        done = subprocess.run(
            ["prosodyctl", "--config", str(paths.cfg), "adduser", jid],
            input=f"{secret}\n{secret}\n",
            text=True,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0 or not stored.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            fatal(f"could not create {jid}: {tail[0]}")
        log(COMPONENT, f"created {jid}")


def migrate_old_data(paths: Paths) -> None:
    """Rootless first start: seed /var/lib/prosody/data from the old /config/data (a copy)."""
    old = Path("/config/data")
    if paths.data.is_dir() and any(paths.data.iterdir()):
        return
    if not old.is_dir():
        return
    log(COMPONENT, "migrating prosody data from /config/data to /var/lib/prosody/data")
    try:
        shutil.copytree(old, paths.data, dirs_exist_ok=True)
    except (shutil.Error, OSError) as exc:
        # Not fatal upstream either: unreadable old data (root/prosody-owned, mode 750) is lost.
        log(COMPONENT, f"cp: migration of /config/data incomplete: {exc}")


def main() -> None:
    """Checks, render, accounts, exec prosody."""
    rootless = layout() == "rootless"
    paths = Paths(rootless)
    doms = domains()
    if rootless:
        check_writable("/var/lib/prosody", "${CONFIG}/storage/prosody")
        copy_config_input(str(paths.config), COMPONENT)
        Path("/run/prosody").mkdir(parents=True, exist_ok=True)
        migrate_old_data(paths)
    paths.data.mkdir(mode=0o750, parents=True, exist_ok=True)
    (paths.config / "conf.d").mkdir(parents=True, exist_ok=True)
    paths.cfg.write_text(render_main(paths, doms))
    (paths.config / "conf.d" / "jitsi-meet.cfg.lua").write_text(render_hosts(doms))
    if not env("JICOFO_AUTH_PASSWORD"):
        fatal("Jicofo auth password must be set")
    if not env("JVB_AUTH_PASSWORD"):
        fatal("JVB auth password must be set")
    ensure_certs(paths, doms)
    if not rootless:
        # The legacy image ran prosody as its own user over root-created /config.
        Path("/var/run/prosody").mkdir(parents=True, exist_ok=True)
        for target in (paths.data, paths.certs, Path("/var/run/prosody")):
            subprocess.run(["chown", "-R", "prosody:prosody", str(target)], check=False)
    create_missing_accounts(paths, doms)
    log(COMPONENT, f"{release()} ({layout()}) config {paths.cfg}, data {paths.data}")
    argv = ["prosody", "--config", str(paths.cfg), "-F"]
    if not rootless:
        # prosody 0.12 refuses to run as root; the legacy image started it as its own user.
        argv = ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", *argv]
    exec_main(argv)


if __name__ == "__main__":
    main()
