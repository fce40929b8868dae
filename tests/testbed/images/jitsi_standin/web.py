"""STAND-IN jitsi/web entrypoint for tests: render config.js + nginx config, then exec nginx.

Kept from the real image (docker-jitsi-meet stable-11146-2 and, for legacy, stable-11031):
- rootless (stable-11146+): uid 1000, read-only root fs; listens on 8000/8443; /config is input
  only and is copied to /run/web/config, where config.js and the nginx config are rendered;
  TLS material lives in /storage/keys (the ``storage/web`` volume), generated on first start;
  /storage and the load-test dir must be writable by uid 1000 or the container exits with
  ``FATAL ERROR``;
- legacy (before 11146): root; listens on 80/443; renders into /config and keeps the key pair
  in /config/keys;
- config.js is JavaScript in upstream's shape (``var config = {};`` then one
  ``config.<key> = ...;`` assignment per line): with ENABLE_SUBDOMAINS (default true) the bosh
  and websocket URLs are ``'https://<host>/' + subdir + 'http-bind'`` where ``subdir`` is set
  by nginx SSI (``''`` outside a tenant path), exactly like the real template;
- ``CONFIG/web/custom-config.js`` / ``custom-interface_config.js`` (and
  ``nginx/custom-meet.conf``) are appended to the freshly rendered files at every start, byte for
  byte like upstream's ``cat >>``; on rootless from the /run copy, so a file uid 1000 cannot read
  is left out; a file created or edited later is served only after the next start;
- nginx proxies /http-bind and /xmpp-websocket to XMPP_BOSH_URL_BASE, ``= /socket.io/`` to
  WHITEBOARD_COLLAB_SERVER_URL_BASE and ``/etherpad/`` to ETHERPAD_URL_BASE (only when set);
  variables in ``proxy_pass`` plus a resolver make nginx start before the backends resolve.
Let's Encrypt is not available (no ACME server): ENABLE_LETSENCRYPT=1 fails like a failed
issuance (exit 1).
"""

from __future__ import annotations

import os
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

COMPONENT = "web"
SELF_SIGNED_SUBJECT = "/C=US/ST=TX/L=Austin/O=jitsi.org/OU=Jitsi Server/CN=*"
LOAD_TEST_DIR = "/usr/share/jitsi-meet/load-test"


def _shell_flag(name: str) -> bool:
    """Upstream's start script tests some flags with ``[[ $X -eq 1 ]]``: only 1 counts."""
    try:
        return int(env(name, "0")) == 1
    except ValueError:
        return False


class Paths:
    """Where this layout reads and renders things."""

    def __init__(self, rootless: bool) -> None:
        self.rootless = rootless
        self.config = Path("/run/web/config") if rootless else Path("/config")
        self.nginx = self.config / "nginx"
        self.keys = Path("/storage/keys") if rootless else Path("/config/keys")
        self.pid = "/run/web/nginx.pid" if rootless else "/run/nginx.pid"
        self.temp = Path("/tmp/nginx")
        self.http_port = 8000 if rootless else 80
        self.https_port = 8443 if rootless else 443


def ensure_keys(paths: Paths) -> None:
    """Self-signed TLS pair, persisted; an operator pair in /config/keys wins (rootless copies it)."""
    crt, key = paths.keys / "cert.crt", paths.keys / "cert.key"
    operator_crt, operator_key = Path("/config/keys/cert.crt"), Path("/config/keys/cert.key")
    if paths.rootless and operator_crt.is_file() and operator_key.is_file():
        log(COMPONENT, "using keys found in /config/keys")
        try:
            shutil.copyfile(operator_crt, crt)
            shutil.copyfile(operator_key, key)
        except OSError as exc:
            # Upstream's `cp` failure is not fatal either; nginx then fails on the missing key.
            log(COMPONENT, f"cp: cannot copy /config/keys: {exc.strerror}")
        return
    if crt.is_file() and key.is_file():
        log(COMPONENT, f"using persisted keys in {paths.keys}")
        return
    log(COMPONENT, f"generating self-signed keys in {paths.keys}")
    subprocess.run(
        [
            "openssl", "req", "-new", "-x509", "-days", "3650", "-nodes",
            "-newkey", "rsa:2048", "-out", str(crt), "-keyout", str(key),
            "-subj", SELF_SIGNED_SUBJECT,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def resolvers() -> str:
    """NGINX_RESOLVER, else the nameservers of /etc/resolv.conf (Docker's 127.0.0.11)."""
    configured = env("NGINX_RESOLVER")
    if configured:
        return configured
    found = []
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                found.append(f"[{parts[1]}]" if parts[1].count(":") >= 2 else parts[1])
    except OSError:
        pass
    return " ".join(found) or "127.0.0.11"


def render_config_js() -> str:
    """config.js, derived from the environment the way upstream's templates derive it."""
    subdomains = env_bool("ENABLE_SUBDOMAINS", True)
    bosh_relative = env_bool("BOSH_RELATIVE", False)
    websocket = env_bool("ENABLE_XMPP_WEBSOCKET", True)
    public_url = env("PUBLIC_URL", "https://localhost:8443")
    host = public_url.removeprefix("https://").removesuffix("/")
    domain = env("XMPP_DOMAIN", "meet.jitsi")
    muc = env("XMPP_MUC_DOMAIN", "muc.meet.jitsi")
    out = [
        "// Jitsi Meet configuration.",
        "// jitsi-ops STAND-IN web image (tests only): same shape as upstream's rendered file.",
        "var config = {};",
        "",
        "config.hosts = {};",
        f"config.hosts.domain = '{domain}';",
        "",
    ]
    if subdomains:
        out += [
            'var subdir = \'<!--# echo var="subdir" default="" -->\';',
            'var subdomain = \'<!--# echo var="subdomain" default="" -->\';',
            "if (subdir.startsWith('<!--')) {",
            "    subdir = '';",
            "}",
            "if (subdomain) {",
            "    subdomain = subdomain.substring(0,subdomain.length-1)"
            ".split('.').join('_').toLowerCase() + '.';",
            "}",
            f"config.hosts.muc = '{muc.split('.')[0]}.' + subdomain + '{domain}';",
        ]
    else:
        out.append(f"config.hosts.muc = '{muc}';")
    if env_bool("ENABLE_AUTH", False):
        if env_bool("ENABLE_GUESTS", False):
            out.append(
                f"config.hosts.anonymousdomain = '{env('XMPP_GUEST_DOMAIN', 'guest.meet.jitsi')}';"
            )
        if env_bool("ENABLE_AUTH_DOMAIN", True):
            out.append(f"config.hosts.authdomain = '{domain}';")
    out.append("")
    if bosh_relative:
        bosh = "'/' + subdir + 'http-bind'" if subdomains else "'/http-bind'"
    elif subdomains:
        bosh = f"'https://{host}/' + subdir + 'http-bind'"
    else:
        bosh = f"'https://{host}/http-bind'"
    out.append(f"config.bosh = {bosh};")
    if websocket:
        ws = (
            f"'wss://{host}/' + subdir + 'xmpp-websocket'"
            if subdomains
            else f"'wss://{host}/xmpp-websocket'"
        )
        out.append(f"config.websocket = {ws};")
    out += [
        "",
        "config.bridgeChannel = {",
        f"    preferSctp: {str(env_bool('JVB_PREFER_SCTP', True)).lower()}",
        "};",
        "",
        "// Etherpad",
    ]
    if env("ETHERPAD_PUBLIC_URL"):
        out.append(f"config.etherpad_base = '{env('ETHERPAD_PUBLIC_URL')}';")
    elif env("ETHERPAD_URL_BASE"):
        out.append(f"config.etherpad_base = '{public_url}/etherpad/p/';")
    wb_public = env("WHITEBOARD_COLLAB_SERVER_PUBLIC_URL")
    wb_internal = env("WHITEBOARD_COLLAB_SERVER_URL_BASE")
    wb_url = wb_public or (public_url if wb_internal else "")
    out += [
        "",
        "// Settings for the Excalidraw whiteboard integration.",
        "config.whiteboard = {",
        f"    enabled: {str(bool(wb_public or wb_internal)).lower()},",
        f"    collabServerBaseUrl: '{wb_url}'",
        "};",
        "",
    ]
    return "\n".join(out)


def _proxy_block(location: str, var: str, base: str, upstream_path: str, host: str) -> str:
    """A websocket-capable proxy location whose upstream is resolved at request time."""
    host_line = f"    proxy_set_header Host {host};\n" if host else ""
    return (
        f"location {location} {{\n"
        "    tcp_nodelay on;\n"
        "    proxy_buffering off;\n"
        "    proxy_http_version 1.1;\n"
        "    proxy_set_header Upgrade $http_upgrade;\n"
        "    proxy_set_header Connection $connection_upgrade;\n"
        f"{host_line}"
        "    proxy_set_header X-Forwarded-For $remote_addr;\n"
        f"    set ${var} {base.rstrip('/')};\n"
        f"    proxy_pass ${var}{upstream_path};\n"
        "}\n"
    )


def render_meet_conf(paths: Paths) -> str:
    """The server-level include shared by the HTTP and HTTPS servers."""
    domain = env("XMPP_DOMAIN", "meet.jitsi")
    bosh_base = env("XMPP_BOSH_URL_BASE", "http://xmpp.meet.jitsi:5280")
    conf = [
        "# jitsi-ops STAND-IN web image (tests only)",
        "server_name _;",
        "charset utf8;",
        "client_max_body_size 0;",
        "root /usr/share/jitsi-meet;",
        "# ssi fills in the tenant variables of config.js, as upstream does",
        "ssi on;",
        "ssi_types application/x-javascript application/javascript;",
        "index index.html index.htm;",
        "error_page 404 /static/404.html;",
        "add_header X-Content-Type-Options nosniff;",
        'set $prefix "";',
        f"include {paths.config}/nginx-custom/*.conf;",
        f"location = /config.js {{ alias {paths.config}/config.js; }}",
        f"location = /interface_config.js {{ alias {paths.config}/interface_config.js; }}",
        "location = /external_api.js { alias /usr/share/jitsi-meet/libs/external_api.min.js; }",
        "location ~ ^/(libs|css|static|images|fonts|lang|sounds|connection_optimization"
        "|.well-known|transcripts)/(.*)$ {",
        "    alias /usr/share/jitsi-meet/$1/$2;",
        "}",
        "",
        "# BOSH",
        _proxy_block(
            "= /http-bind", "bosh_backend", bosh_base, "/http-bind?prefix=$prefix&$args", domain
        ),
    ]
    if env_bool("ENABLE_XMPP_WEBSOCKET", True):
        conf += [
            "# xmpp websockets",
            _proxy_block(
                "= /xmpp-websocket",
                "xmpp_ws_backend",
                bosh_base,
                "/xmpp-websocket?prefix=$prefix&$args",
                domain,
            ),
        ]
    etherpad = env("ETHERPAD_URL_BASE")
    if etherpad:
        # With a variable in proxy_pass nginx does not replace the prefix: strip it by rewrite.
        conf += [
            "# Etherpad-lite",
            "location ^~ /etherpad/ {\n"
            "    proxy_buffering off;\n"
            "    proxy_cache_bypass $http_upgrade;\n"
            "    proxy_http_version 1.1;\n"
            "    proxy_set_header Upgrade $http_upgrade;\n"
            "    proxy_set_header Connection 'upgrade';\n"
            "    proxy_set_header X-Forwarded-For $remote_addr;\n"
            f"    set $etherpad_backend {etherpad.rstrip('/')};\n"
            "    rewrite ^/etherpad/(.*)$ /$1 break;\n"
            "    proxy_pass $etherpad_backend;\n"
            "}\n",
        ]
    whiteboard = env("WHITEBOARD_COLLAB_SERVER_URL_BASE")
    if whiteboard:
        conf += [
            "# whiteboard (excalidraw-backend): exact path only, like upstream",
            _proxy_block(
                "= /socket.io/", "whiteboard_backend", whiteboard, "/socket.io/?$args", ""
            ),
        ]
    conf += [
        "location ~ ^/([^/?&:'\"]+)$ {",
        "    try_files $uri @root_path;",
        "}",
        "location @root_path {",
        "    rewrite ^/(.*)$ / break;",
        "}",
    ]
    if env_bool("ENABLE_SUBDOMAINS", True):
        conf += [
            "location ~ ^/([^/?&:'\"]+)/config.js$ {",
            '    set $subdomain "$1.";',
            '    set $subdir "$1/";',
            f"    alias {paths.config}/config.js;",
            "}",
            "location ~ ^/([^/?&:'\"]+)/http-bind {",
            '    set $subdomain "$1.";',
            '    set $subdir "$1/";',
            '    set $prefix "$1";',
            "    rewrite ^/(.*)$ /http-bind;",
            "}",
            "location ~ ^/([^/?&:'\"]+)/(.*)$ {",
            '    set $subdomain "$1.";',
            '    set $subdir "$1/";',
            "    rewrite ^/([^/?&:'\"]+)/(.*)$ /$2;",
            "}",
        ]
    return "\n".join(conf) + "\n"


def render_nginx_conf(paths: Paths) -> str:
    """nginx.conf: one HTTP server (or a redirect) and one HTTPS server unless DISABLE_HTTPS."""
    ipv6 = env_bool("ENABLE_IPV6", True)
    temp = paths.temp
    http_listen = f"    listen {paths.http_port} default_server;\n"
    https_listen = f"    listen {paths.https_port} ssl http2 default_server;\n"
    if ipv6:
        http_listen += f"    listen [::]:{paths.http_port} default_server;\n"
        https_listen += f"    listen [::]:{paths.https_port} ssl http2 default_server;\n"
    if env_bool("ENABLE_HTTP_REDIRECT", False):
        http_body = (
            "    server_name _;\n"
            "    location / {\n"
            "        return 301 https://$host$request_uri;\n"
            "    }\n"
        )
    else:
        http_body = f"    include {paths.nginx}/meet.conf;\n"
    servers = f"server {{\n{http_listen}{http_body}}}\n"
    if not _shell_flag("DISABLE_HTTPS"):
        hsts = (
            '    add_header Strict-Transport-Security "max-age=63072000" always;\n'
            if env_bool("ENABLE_HSTS", True)
            else ""
        )
        servers += (
            "server {\n"
            f"{https_listen}"
            f"    include {paths.nginx}/ssl.conf;\n"
            f"{hsts}"
            f"    include {paths.nginx}/meet.conf;\n"
            "}\n"
        )
    user = "" if paths.rootless else "user www-data;\n"
    return (
        "# jitsi-ops STAND-IN web image (tests only)\n"
        f"{user}"
        "worker_processes 1;\n"
        f"pid {paths.pid};\n"
        "daemon off;\n"
        "error_log stderr warn;\n"
        "events {\n    worker_connections 768;\n}\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    server_tokens off;\n"
        "    access_log /dev/stdout;\n"
        f"    client_body_temp_path {temp}/body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    resolver {resolvers()} valid=10s ipv6=off;\n"
        "    map $http_upgrade $connection_upgrade {\n"
        "        default upgrade;\n"
        "        ''      close;\n"
        "    }\n"
        f"{_indent(servers)}"
        "}\n"
    )


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())


def render_ssl_conf(paths: Paths) -> str:
    """TLS settings with the persisted key pair."""
    return (
        "ssl_protocols TLSv1.2 TLSv1.3;\n"
        "ssl_prefer_server_ciphers off;\n"
        "ssl_session_timeout 1d;\n"
        "ssl_session_cache shared:SSL:10m;\n"
        "ssl_session_tickets off;\n"
        f"ssl_certificate {paths.keys}/cert.crt;\n"
        f"ssl_certificate_key {paths.keys}/cert.key;\n"
    )


def main() -> None:
    """Checks, render, exec nginx."""
    rootless = layout() == "rootless"
    paths = Paths(rootless)
    https = not _shell_flag("DISABLE_HTTPS")
    if rootless:
        if https:
            # TLS material persists in the storage/web volume (upstream checks it only then).
            check_writable("/storage", "${CONFIG}/storage/web")
        check_writable(LOAD_TEST_DIR, "${CONFIG}/tmp/web-load-test")
        copy_config_input(str(paths.config), COMPONENT)
    if https:
        paths.keys.mkdir(parents=True, exist_ok=True)
        if _shell_flag("ENABLE_LETSENCRYPT"):
            log(COMPONENT, "Failed to obtain a certificate from the Let's Encrypt CA.")
            fatal("Let's Encrypt is not available in the jitsi-ops stand-in web image")
        ensure_keys(paths)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (paths.temp / sub).mkdir(parents=True, exist_ok=True)
    (paths.nginx / "site-confs").mkdir(parents=True, exist_ok=True)
    (paths.nginx / "meet.conf").write_text(render_meet_conf(paths))
    _append_custom(paths, "nginx/custom-meet.conf", paths.nginx / "meet.conf")
    (paths.nginx / "ssl.conf").write_text(render_ssl_conf(paths))
    (paths.nginx / "nginx.conf").write_text(render_nginx_conf(paths))
    (paths.config / "config.js").write_text(render_config_js())
    _append_custom(paths, "custom-config.js", paths.config / "config.js")
    (paths.config / "interface_config.js").write_text(
        "var interfaceConfig = {\n    APP_NAME: 'Jitsi Meet',\n    SHOW_JITSI_WATERMARK: true\n};\n"
    )
    _append_custom(paths, "custom-interface_config.js", paths.config / "interface_config.js")
    ports = f"{paths.http_port}" + ("" if not https else f"/{paths.https_port}")
    log(COMPONENT, f"{release()} ({layout()}) nginx on {ports}, config in {paths.config}")
    os.umask(0o022)
    exec_main(["nginx", "-e", "stderr", "-c", str(paths.nginx / "nginx.conf")])


def _append_custom(paths: Paths, name: str, target: Path) -> None:
    """Upstream's ``[[ -f $CUSTOM ]] && cat $CUSTOM >> $TARGET``: the bytes as they are.

    Read from the rendered config dir, so on rootless a file uid 1000 could not copy out of
    /config is simply absent here and nothing is appended; that happens at start only.
    """
    try:
        data = (paths.config / name).read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        log(COMPONENT, f"cat: {paths.config / name}: {exc.strerror}")
        return
    with target.open("ab") as out:
        out.write(data)


if __name__ == "__main__":
    main()
