"""check rules: every rule fires on its mistake and stays quiet on a good environment.

Each case starts from GOOD (a realistic rootless environment that produces no finding at all)
and applies small overrides; `None` deletes a key. The meta-test keeps the case tables and the
rule registry in step, so a new rule without tests fails the suite.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import jitsi_ops.lint_rules  # noqa: F401  (registers the rules before the tables below use RULES)
from jitsi_ops.envfile import parse_env
from jitsi_ops.lint import (
    RULES,
    Finding,
    LintContext,
    Severity,
    context_for,
    has_errors,
    run_checks,
)
from jitsi_ops.secrets import is_secret_key
from jitsi_ops.settings import Host, load_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"

SECRETS = {
    "JICOFO_AUTH_PASSWORD": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "JVB_AUTH_PASSWORD": "1a2b3c4d5e6f708192a3b4c5d6e7f809",
    "JIGASI_XMPP_PASSWORD": "2b3c4d5e6f708192a3b4c5d6e7f8091a",
    "JIBRI_RECORDER_PASSWORD": "3c4d5e6f708192a3b4c5d6e7f8091a2b",
    "JIBRI_XMPP_PASSWORD": "4d5e6f708192a3b4c5d6e7f8091a2b3c",
    "JIGASI_TRANSCRIBER_PASSWORD": "5e6f708192a3b4c5d6e7f8091a2b3c4d",
}

# A production-like rootless environment: Let's Encrypt on 80/443, auth with guests,
# recording, etherpad and whiteboard behind PUBLIC_URL, public media addresses.
GOOD: dict[str, str] = {
    "CONFIG": "/srv/jitsi-meet-cfg",
    "HTTP_PORT": "80",
    "HTTPS_PORT": "443",
    "TZ": "Europe/Berlin",
    "PUBLIC_URL": "https://meet.example.com",
    "JVB_ADVERTISE_IPS": "198.51.100.7,2001:db8::7",
    "JVB_PORT": "10000",
    "COLIBRI_REST_ENABLED": "1",
    "JITSI_IMAGE_VERSION": "stable-11146-2",
    "RESTART_POLICY": "unless-stopped",
    "ENABLE_LETSENCRYPT": "1",
    "LETSENCRYPT_DOMAIN": "meet.example.com",
    "LETSENCRYPT_EMAIL": "ops@example.com",
    "LETSENCRYPT_ACME_SERVER": "letsencrypt",
    "LETSENCRYPT_USE_STAGING": "0",
    "DISABLE_HTTPS": "0",
    "ENABLE_HTTP_REDIRECT": "1",
    "ENABLE_AUTH": "1",
    "ENABLE_GUESTS": "1",
    "AUTH_TYPE": "internal",
    "ENABLE_RECORDING": "1",
    "ETHERPAD_URL_BASE": "http://etherpad.meet.jitsi:9001",
    "ETHERPAD_PUBLIC_URL": "https://meet.example.com/etherpad/p/",
    "WHITEBOARD_COLLAB_SERVER_URL_BASE": "http://whiteboard.meet.jitsi",
    "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL": "https://meet.example.com",
    **SECRETS,
}
COMPONENTS = ("etherpad", "whiteboard", "jibri", "jigasi")


def make_ctx(overrides: Mapping[str, str | None] | None = None, **options: Any) -> LintContext:
    """GOOD with `overrides` applied (None deletes a key) as a test context."""
    values = {**GOOD, **(overrides or {})}
    options.setdefault("components", COMPONENTS)
    return LintContext.for_test(
        {k: v for k, v in values.items() if v is not None}, root=REPO_ROOT, **options
    )


@dataclass(frozen=True)
class Fires:
    """A config on which `rule` must report `severity` for `key`, quoting `observed`."""

    rule: str
    name: str
    overrides: Mapping[str, str | None]
    severity: Severity
    key: str | None
    observed: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Quiet:
    """A config on which `rule` must report nothing."""

    rule: str
    name: str
    overrides: Mapping[str, str | None] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


TEST_ENV = {"test_environment": True}
PROXY = {"reverse_proxy": True}
U = "PUBLIC_URL"
WB = "WHITEBOARD_COLLAB_SERVER_PUBLIC_URL"
WBB = "WHITEBOARD_COLLAB_SERVER_URL_BASE"
ADV = "JVB_ADVERTISE_IPS"
IMG = "JITSI_IMAGE_VERSION"
MAIN = Host("meet.example.com")


def bridges(**values: str) -> dict[str, Any]:
    """Options for an environment with one bridge host carrying `values`."""
    return {"hosts": (MAIN, Host("jvb2.example.com", role="jvb", values=tuple(values.items())))}


GOOD_BRIDGE = bridges(JVB_XMPP_SERVER="10.0.0.1", JVB_ADVERTISE_IPS="198.51.100.12")

FIRES: list[Fires] = [
    Fires(
        "bridge-xmpp-server",
        "unset",
        {},
        "error",
        "JVB_XMPP_SERVER",
        "jvb2.example.com",
        bridges(JVB_ADVERTISE_IPS="198.51.100.12"),
    ),
    Fires(
        "bridge-xmpp-server",
        "environment-wide",
        {"JVB_XMPP_SERVER": "10.0.0.1"},
        "warning",
        "JVB_XMPP_SERVER",
        "'10.0.0.1'",
        bridges(JVB_ADVERTISE_IPS="198.51.100.12"),
    ),
    Fires(
        "bridge-advertise-ips",
        "inherited",
        {},
        "error",
        ADV,
        "198.51.100.7",
        bridges(JVB_XMPP_SERVER="10.0.0.1"),
    ),
    Fires(
        "bridge-advertise-ips",
        "none",
        {ADV: None},
        "warning",
        ADV,
        "no address",
        bridges(JVB_XMPP_SERVER="10.0.0.1"),
    ),
    Fires(
        "bridge-xmpp-exposure",
        "all-interfaces",
        {},
        "warning",
        "XMPP_PUBLISH_ADDRESS",
        "every interface",
        GOOD_BRIDGE,
    ),
    # PUBLIC_URL
    Fires("public-url-required", "unset", {U: None}, "error", U, "not set"),
    Fires("public-url-required", "empty", {U: ""}, "error", U, "not set"),
    Fires("public-url-scheme", "http", {U: "http://meet.example.com"}, "error", U, "http://meet"),
    Fires("public-url-scheme", "bare-host", {U: "meet.example.com"}, "error", U, "meet.example"),
    Fires(
        "public-url-ip-host",
        "ipv4",
        {U: "https://192.0.2.7:8443", "HTTPS_PORT": "8443"},
        "error",
        U,
        "192.0.2.7",
    ),
    Fires("public-url-ip-host", "ipv6", {U: "https://[2001:db8::7]"}, "error", U, "2001:db8::7"),
    Fires(
        "public-url-ip-host",
        "test-env",
        {U: "https://192.0.2.7"},
        "warning",
        U,
        "192.0.2.7",
        TEST_ENV,
    ),
    Fires("public-url-port", "port-missing", {"HTTPS_PORT": "8443"}, "warning", U, "8443"),
    Fires(
        "public-url-port",
        "port-mismatch",
        {U: "https://meet.example.com:8443"},
        "warning",
        U,
        "meet.example.com:8443",
    ),
    Fires("public-url-form", "path", {U: "https://meet.example.com/jitsi"}, "error", U, "/jitsi"),
    Fires("public-url-form", "slash", {U: "https://meet.example.com/"}, "warning", U, "com/'"),
    Fires("public-url-form", "query", {U: "https://meet.example.com?room=1"}, "error", U, "room=1"),
    Fires("public-url-form", "fragment", {U: "https://meet.example.com#x"}, "error", U, "#x"),
    Fires(
        "public-url-form",
        "userinfo",
        {U: "https://admin:Hunter2Hunter2x@meet.example.com"},
        "error",
        U,
        "***@meet.example.com",
    ),
    Fires("public-url-form", "bad-port", {U: "https://meet.example.com:443x"}, "error", U, "443x"),
    Fires("public-url-form", "junk", {U: "https://meet.example.com ,"}, "error", U, "com ,"),
    Fires("public-url-form", "bad-host", {U: "https://meet_example.com"}, "error", U, "meet_ex"),
    # whiteboard and etherpad
    Fires(
        "whiteboard-public-url",
        "socket-io-path",
        {WB: "https://meet.example.com:8443/socket.io/"},
        "error",
        WB,
        "/socket.io/",
    ),
    Fires(
        "whiteboard-public-url", "ws-scheme", {WB: "wss://wb.example.com"}, "error", WB, "wss://"
    ),
    Fires(
        "whiteboard-public-url", "mixed", {WB: "http://wb.example.com"}, "warning", WB, "http://wb"
    ),
    Fires(
        "whiteboard-public-url",
        "sub-path",
        {WB: "https://wb.example.com/whiteboard"},
        "error",
        WB,
        "/whiteboard",
    ),
    Fires(
        "whiteboard-url-base", "path", {WBB: "http://whiteboard/socket.io"}, "error", WBB, "socket"
    ),
    Fires(
        "whiteboard-url-base", "no-scheme", {WBB: "whiteboard.meet.jitsi"}, "error", WBB, "board"
    ),
    Fires(
        "whiteboard-enabled-ignored",
        "with-url",
        {"WHITEBOARD_ENABLED": "true"},
        "warning",
        "WHITEBOARD_ENABLED",
        "'true'",
    ),
    Fires(
        "whiteboard-enabled-ignored",
        "without-url",
        {"WHITEBOARD_ENABLED": "1", WBB: None, WB: None},
        "warning",
        "WHITEBOARD_ENABLED",
        "stays OFF",
    ),
    Fires(
        "etherpad-public-url",
        "no-p",
        {"ETHERPAD_PUBLIC_URL": "https://meet.example.com/etherpad/"},
        "error",
        "ETHERPAD_PUBLIC_URL",
        "/etherpad/'",
    ),
    Fires(
        "etherpad-public-url",
        "scheme",
        {"ETHERPAD_PUBLIC_URL": "pad.example.com/p/"},
        "error",
        "ETHERPAD_PUBLIC_URL",
        "pad.example.com/p/",
    ),
    Fires(
        "etherpad-url-base",
        "no-scheme",
        {"ETHERPAD_URL_BASE": "etherpad.meet.jitsi:9001"},
        "error",
        "ETHERPAD_URL_BASE",
        "etherpad.meet.jitsi:9001",
    ),
    Fires(
        "etherpad-url-base",
        "slash",
        {"ETHERPAD_URL_BASE": "http://etherpad.meet.jitsi:9001/"},
        "warning",
        "ETHERPAD_URL_BASE",
        "9001/",
    ),
    # JVB_ADVERTISE_IPS
    Fires(
        "jvb-advertise-ips-format",
        "space",
        {ADV: "198.51.100.7, 2001:db8::7"},
        "error",
        ADV,
        "' 2001",
    ),
    Fires(
        "jvb-advertise-ips-format", "hostname", {ADV: "meet.example.com"}, "error", ADV, "meet.exa"
    ),
    Fires(
        "jvb-advertise-ips-format",
        "empty-item",
        {ADV: "198.51.100.7,,10.0.0.5"},
        "error",
        ADV,
        "''",
    ),
    Fires(
        "jvb-advertise-ips-format", "bad-port", {ADV: "198.51.100.7#70000"}, "error", ADV, "#70000"
    ),
    Fires(
        "jvb-advertise-ips-format",
        "brackets",
        {ADV: "[2001:db8::7]"},
        "error",
        ADV,
        "[2001:db8::7]",
    ),
    Fires(
        "jvb-advertise-ips-format",
        "port-too-old",
        {ADV: "198.51.100.7#12000", IMG: "stable-10431"},
        "error",
        ADV,
        "#12000",
    ),
    Fires(
        "jvb-advertise-ips-private",
        "rfc1918",
        {ADV: "192.168.1.10,10.0.0.5"},
        "warning",
        ADV,
        "192.168",
    ),
    Fires("jvb-advertise-ips-private", "ula", {ADV: "fd00::5#12000"}, "warning", ADV, "fd00::5"),
    Fires("jvb-advertise-ips-missing", "stun", {ADV: None}, "info", ADV, "not set"),
    Fires(
        "jvb-advertise-ips-missing",
        "no-stun",
        {ADV: None, "JVB_DISABLE_STUN": "1"},
        "warning",
        ADV,
        "STUN is disabled",
    ),
    Fires(
        "colibri-rest",
        "unset",
        {"COLIBRI_REST_ENABLED": None},
        "info",
        "COLIBRI_REST_ENABLED",
        "unproven",
    ),
    Fires(
        "colibri-rest", "off", {"COLIBRI_REST_ENABLED": "0"}, "info", "COLIBRI_REST_ENABLED", "'0'"
    ),
    # booleans
    Fires(
        "boolean-strict",
        "le-true",
        {"ENABLE_LETSENCRYPT": "true"},
        "error",
        "ENABLE_LETSENCRYPT",
        "'true'",
    ),
    Fires(
        "boolean-strict", "https-yes", {"DISABLE_HTTPS": "yes"}, "error", "DISABLE_HTTPS", "'yes'"
    ),
    Fires(
        "boolean-strict",
        "staging-space",
        {"LETSENCRYPT_USE_STAGING": " 1"},
        "error",
        "LETSENCRYPT_USE_STAGING",
        "' 1'",
    ),
    Fires(
        "boolean-strict",
        "jaas-on",
        {"ENABLE_JAAS_COMPONENTS": "on"},
        "error",
        "ENABLE_JAAS_COMPONENTS",
        "'on'",
    ),
    Fires(
        "boolean-strict",
        "legacy-unsafe-regex",
        {"ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX": "true", IMG: "stable-11031"},
        "error",
        "ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX",
        "'true'",
    ),
    Fires("boolean-words", "true", {"ENABLE_AUTH": "true"}, "warning", "ENABLE_AUTH", "'true'"),
    Fires(
        "boolean-words",
        "no-means-true",
        {"ENABLE_GUESTS": "no"},
        "warning",
        "ENABLE_GUESTS",
        "as TRUE",
    ),
    Fires("boolean-words", "off", {"ENABLE_IPV6": "off"}, "warning", "ENABLE_IPV6", "'off'"),
    Fires(
        "boolean-unknown-word",
        "enabled",
        {"ENABLE_LOBBY": "enabled"},
        "warning",
        "ENABLE_LOBBY",
        "'enabled'",
    ),
    # release
    Fires("image-version-required", "unset", {IMG: None}, "error", IMG, "not set"),
    Fires("image-version-pinned", "unstable", {IMG: "unstable"}, "error", IMG, "'unstable'"),
    Fires("image-version-pinned", "latest", {IMG: "latest"}, "error", IMG, "'latest'"),
    Fires("image-version-pinned", "stable", {IMG: "stable"}, "error", IMG, "'stable'"),
    Fires(
        "image-version-pinned",
        "test-unstable",
        {IMG: "unstable"},
        "warning",
        IMG,
        "'unstable'",
        TEST_ENV,
    ),
    Fires("image-version-pinned", "custom", {IMG: "my-build-7"}, "error", IMG, "'my-build-7'"),
    Fires("release-unknown", "newer", {IMG: "stable-11300"}, "warning", IMG, "stable-11146-2"),
    Fires(
        "release-unknown", "newer-patch", {IMG: "stable-11146-3"}, "warning", IMG, "stable-11146-3"
    ),
    Fires(
        "release-before-compose-sets",
        "10888",
        {IMG: "stable-10888"},
        "error",
        IMG,
        "stable-10888",
    ),
    Fires("release-before-compose-sets", "seed", {IMG: "stable-7882"}, "error", IMG, "stable-7882"),
    Fires(
        "image-version-pinned",
        "test-custom",
        {IMG: "my-build-7"},
        "info",
        IMG,
        "'my-build-7'",
        TEST_ENV,
    ),
    # secrets
    Fires(
        "secret-required",
        "jicofo",
        {"JICOFO_AUTH_PASSWORD": None},
        "error",
        "JICOFO_AUTH_PASSWORD",
        "JICOFO_AUTH_PASSWORD is not set",
    ),
    Fires(
        "secret-required", "jvb", {"JVB_AUTH_PASSWORD": ""}, "error", "JVB_AUTH_PASSWORD", "not set"
    ),
    Fires(
        "secret-required",
        "jibri",
        {"JIBRI_RECORDER_PASSWORD": None},
        "error",
        "JIBRI_RECORDER_PASSWORD",
        "not set",
    ),
    Fires(
        "secret-required",
        "jibri-xmpp",
        {"JIBRI_XMPP_PASSWORD": None},
        "error",
        "JIBRI_XMPP_PASSWORD",
        "not set",
    ),
    Fires(
        "secret-required",
        "jigasi",
        {"JIGASI_XMPP_PASSWORD": None},
        "error",
        "JIGASI_XMPP_PASSWORD",
        "not set",
    ),
    Fires(
        "secret-required",
        "transcriber",
        {"JIGASI_TRANSCRIBER_PASSWORD": None, "ENABLE_TRANSCRIPTIONS": "1"},
        "error",
        "JIGASI_TRANSCRIBER_PASSWORD",
        "not set",
    ),
    Fires(
        "secret-required",
        "transcriber-component",
        {"JIGASI_XMPP_PASSWORD": None},
        "error",
        "JIGASI_XMPP_PASSWORD",
        "the transcriber (jigasi) exits without it",
        {"components": ("transcriber",)},
    ),
    Fires(
        "secret-required",
        "no-secrets-file",
        {"JVB_AUTH_PASSWORD": None},
        "warning",
        "JVB_AUTH_PASSWORD",
        "secrets.env does not exist yet",
        {"secrets_file_mode": None},
    ),
    Fires(
        "secret-weak",
        "default",
        {"JVB_AUTH_PASSWORD": "passw0rd"},
        "warning",
        "JVB_AUTH_PASSWORD",
        "default",
    ),
    Fires(
        "secret-weak",
        "changeme",
        {"JICOFO_AUTH_PASSWORD": "CHANGEME"},
        "warning",
        "JICOFO_AUTH_PASSWORD",
        "default",
    ),
    Fires(
        "secret-weak",
        "same-char",
        {"JVB_AUTH_PASSWORD": "z" * 32},
        "warning",
        "JVB_AUTH_PASSWORD",
        "single",
    ),
    Fires(
        "secret-weak",
        "short",
        {"JVB_AUTH_PASSWORD": "Sh0rt-But-Ok"},
        "warning",
        "JVB_AUTH_PASSWORD",
        "12 char",
    ),
    Fires(
        "secret-weak",
        "jwt",
        {"JWT_APP_SECRET": "s3cr3t"},
        "warning",
        "JWT_APP_SECRET",
        "6 characters",
    ),
    Fires("secrets-file-mode", "0644", {}, "warning", None, "0644", {"secrets_file_mode": 0o644}),
    # removed / renamed / legacy / unknown
    *(
        Fires("removed-variable", key.lower(), {key: value}, "warning", key, repr(value))
        for key, value in [
            ("ENABLE_COLIBRI_WEBSOCKET", "1"),
            ("ENABLE_SCTP", "1"),
            ("ENABLE_OCTO_SCTP", "0"),
            ("ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX", "1"),
            ("DISABLE_COLIBRI_WEBSOCKET_JVB_LOOKUP", "1"),
            ("COLIBRI_WEBSOCKET_REGEX", "jvb[0-9]"),
            ("COLIBRI_WEBSOCKET_PORT", "9090"),
            ("COLIBRI_WEBSOCKET_JVB_LOOKUP_NAME", "jvb"),
            ("JVB_WS_DOMAIN", "meet.example.com"),
            ("JVB_WS_SERVER_ID", "jvb1"),
            ("JVB_WS_TLS", "1"),
            ("JICOFO_AUTH_USER", "focus"),
        ]
    ),
    Fires(
        "removed-variable",
        "jicofo-user-legacy",
        {"JICOFO_AUTH_USER": "focus", IMG: "stable-11031"},
        "warning",
        "JICOFO_AUTH_USER",
        "'focus'",
    ),
    Fires(
        "renamed-variable",
        "recorder-domain",
        {"XMPP_RECORDER_DOMAIN": "recorder.meet.jitsi"},
        "warning",
        "XMPP_RECORDER_DOMAIN",
        "recorder.meet.jitsi",
    ),
    Fires(
        "renamed-variable",
        "both-set",
        {"DOCKER_HOST_ADDRESS": "198.51.100.9"},
        "warning",
        "DOCKER_HOST_ADDRESS",
        "198.51.100.9",
    ),
    Fires(
        "unused-legacy-variable",
        "component-secret",
        {"JICOFO_COMPONENT_SECRET": "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"},
        "info",
        "JICOFO_COMPONENT_SECRET",
        "not shown",
    ),
    Fires(
        "unknown-key",
        "typo",
        {"PUBLIC_ULR": "https://meet.example.com"},
        "warning",
        "PUBLIC_ULR",
        "PUBLIC_ULR",
    ),
    Fires("unknown-key", "made-up", {"FOO_BAR_BAZ": "1"}, "warning", "FOO_BAR_BAZ", "FOO_BAR_BAZ"),
    # CONFIG and ports
    Fires("config-dir", "unset", {"CONFIG": None}, "error", "CONFIG", "not set"),
    Fires("config-dir", "relative", {"CONFIG": "./cfg"}, "warning", "CONFIG", "'./cfg'"),
    Fires("config-dir", "root", {"CONFIG": "/"}, "error", "CONFIG", "'/'"),
    Fires(
        "port-required", "http", {"HTTP_PORT": None}, "error", "HTTP_PORT", "HTTP_PORT is not set"
    ),
    Fires(
        "port-required", "https", {"HTTPS_PORT": ""}, "error", "HTTPS_PORT", "HTTPS_PORT is not set"
    ),
    Fires("port-range", "suffix", {"HTTPS_PORT": "8443/tcp"}, "error", "HTTPS_PORT", "'8443/tcp'"),
    Fires("port-range", "too-big", {"JVB_PORT": "70000"}, "error", "JVB_PORT", "'70000'"),
    Fires("port-range", "zero", {"HTTP_PORT": "0"}, "error", "HTTP_PORT", "'0'"),
    Fires(
        "port-conflict",
        "same",
        {"HTTP_PORT": "8443", "HTTPS_PORT": "8443"},
        "error",
        "HTTPS_PORT",
        "8443",
    ),
    # auth
    Fires(
        "guests-without-auth", "no-auth", {"ENABLE_AUTH": "0"}, "warning", "ENABLE_GUESTS", "'0'"
    ),
    Fires(
        "auth-type", "shibboleth", {"AUTH_TYPE": "shibboleth"}, "error", "AUTH_TYPE", "'shibboleth'"
    ),
    Fires(
        "auth-type",
        "uppercase",
        {"PROSODY_AUTH_TYPE": "JWT"},
        "error",
        "PROSODY_AUTH_TYPE",
        "'JWT'",
    ),
    Fires(
        "auth-jwt-settings",
        "app-id",
        {"AUTH_TYPE": "jwt"},
        "error",
        "JWT_APP_ID",
        "JWT_APP_ID is not set",
    ),
    Fires(
        "auth-jwt-settings",
        "secret",
        {"AUTH_TYPE": "jwt", "JWT_APP_ID": "meet"},
        "error",
        "JWT_APP_SECRET",
        "JWT_APP_SECRET is not set",
    ),
    Fires(
        "auth-ldap-settings",
        "unset",
        {"AUTH_TYPE": "ldap"},
        "error",
        "LDAP_URL",
        "LDAP_URL is not set",
    ),
    Fires(
        "auth-ldap-settings",
        "scheme",
        {"AUTH_TYPE": "ldap", "LDAP_URL": "http://ldap.example.com"},
        "error",
        "LDAP_URL",
        "http://ldap.example.com",
    ),
    # Let's Encrypt
    Fires(
        "letsencrypt-domain",
        "mismatch",
        {"LETSENCRYPT_DOMAIN": "other.example.com"},
        "error",
        "LETSENCRYPT_DOMAIN",
        "'other.example.com'",
    ),
    Fires(
        "letsencrypt-domain",
        "unset",
        {"LETSENCRYPT_DOMAIN": None},
        "error",
        "LETSENCRYPT_DOMAIN",
        "not set",
    ),
    Fires(
        "letsencrypt-email",
        "unset",
        {"LETSENCRYPT_EMAIL": None},
        "error",
        "LETSENCRYPT_EMAIL",
        "not set",
    ),
    Fires(
        "letsencrypt-email",
        "invalid",
        {"LETSENCRYPT_EMAIL": "ops"},
        "error",
        "LETSENCRYPT_EMAIL",
        "'ops'",
    ),
    Fires("letsencrypt-ports", "http", {"HTTP_PORT": "8000"}, "error", "HTTP_PORT", "'8000'"),
    Fires(
        "letsencrypt-ports",
        "http-proxy",
        {"HTTP_PORT": "8000"},
        "warning",
        "HTTP_PORT",
        "'8000'",
        PROXY,
    ),
    Fires(
        "letsencrypt-ports",
        "https",
        {"HTTPS_PORT": "8443", U: "https://meet.example.com:8443"},
        "warning",
        "HTTPS_PORT",
        "'8443'",
    ),
    Fires(
        "letsencrypt-acme-server",
        "zerossl",
        {"LETSENCRYPT_ACME_SERVER": None},
        "info",
        "LETSENCRYPT_ACME_SERVER",
        "not set",
    ),
    Fires(
        "letsencrypt-staging",
        "production",
        {"LETSENCRYPT_USE_STAGING": "1"},
        "warning",
        "LETSENCRYPT_USE_STAGING",
        "'1'",
    ),
    # TLS termination
    Fires(
        "disable-https-without-proxy",
        "prod",
        {"DISABLE_HTTPS": "1"},
        "warning",
        "DISABLE_HTTPS",
        "'1'",
    ),
    Fires(
        "disable-https-without-proxy",
        "test",
        {"DISABLE_HTTPS": "1"},
        "info",
        "DISABLE_HTTPS",
        "'1'",
        TEST_ENV,
    ),
    Fires(
        "http-redirect-loop",
        "loop",
        {"DISABLE_HTTPS": "1", "ENABLE_HTTP_REDIRECT": "1"},
        "warning",
        "ENABLE_HTTP_REDIRECT",
        "'1'",
        PROXY,
    ),
    # other
    Fires(
        "xmpp-domain-changed",
        "domain",
        {"XMPP_DOMAIN": "meet.example.com"},
        "info",
        "XMPP_DOMAIN",
        "'meet.example.com'",
    ),
    Fires(
        "xmpp-domain-changed",
        "hidden",
        {"XMPP_HIDDEN_DOMAIN": "recorder.meet.jitsi"},
        "info",
        "XMPP_HIDDEN_DOMAIN",
        "'recorder.meet.jitsi'",
    ),
    Fires("timezone", "unset", {"TZ": None}, "info", "TZ", "not set"),
    Fires("timezone", "space", {"TZ": "Europe Berlin"}, "warning", "TZ", "'Europe Berlin'"),
    Fires(
        "restart-policy",
        "underscore",
        {"RESTART_POLICY": "unless_stopped"},
        "error",
        "RESTART_POLICY",
        "unless_stopped",
    ),
    Fires(
        "recording-jibri", "no-jibri", {}, "warning", "ENABLE_RECORDING", "'1'", {"components": ()}
    ),
    Fires(
        "recording-jibri",
        "no-recording",
        {"ENABLE_RECORDING": "0"},
        "warning",
        "ENABLE_RECORDING",
        "'0'",
    ),
]

QUIET: list[Quiet] = [
    Quiet("bridge-xmpp-server", "single-host"),
    Quiet("bridge-xmpp-server", "per-host", options=GOOD_BRIDGE),
    Quiet("bridge-advertise-ips", "single-host"),
    Quiet("bridge-advertise-ips", "per-host", options=GOOD_BRIDGE),
    Quiet("bridge-xmpp-exposure", "single-host"),
    Quiet("bridge-xmpp-exposure", "bound", {"XMPP_PUBLISH_ADDRESS": "10.0.0.1"}, GOOD_BRIDGE),
    *(Quiet(rule_id, "good") for rule_id in sorted(RULES)),
    Quiet(
        "public-url-scheme",
        "https-port",
        {U: "https://meet.example.com:8443", "HTTPS_PORT": "8443"},
    ),
    Quiet("public-url-ip-host", "dns-with-digits", {U: "https://meet1.example.com"}),
    Quiet(
        "public-url-port", "port-in-url", {"HTTPS_PORT": "8443", U: "https://meet.example.com:8443"}
    ),
    Quiet("public-url-port", "explicit-443", {U: "https://meet.example.com:443"}),
    Quiet("public-url-port", "reverse-proxy", {"HTTPS_PORT": "8443"}, PROXY),
    Quiet("public-url-port", "https-disabled", {"HTTPS_PORT": "8443", "DISABLE_HTTPS": "1"}),
    Quiet(
        "public-url-form", "with-port", {U: "https://meet.example.com:8443", "HTTPS_PORT": "8443"}
    ),
    Quiet("public-url-form", "unset", {U: None}),
    Quiet("whiteboard-public-url", "unset", {WB: None}),
    Quiet("whiteboard-public-url", "own-host", {WB: "https://whiteboard.example.com:4443"}),
    # "/" is socket.io's default namespace: working installs write the URL with it.
    Quiet("whiteboard-public-url", "root-slash", {WB: "https://meet.example.com:8443/"}),
    Quiet("whiteboard-url-base", "port", {WBB: "http://whiteboard:80"}),
    Quiet(
        "whiteboard-enabled-ignored",
        "old-release",
        {"WHITEBOARD_ENABLED": "1", IMG: "stable-9457-2"},
    ),
    Quiet("etherpad-public-url", "own-host", {"ETHERPAD_PUBLIC_URL": "https://pad.example.com/p/"}),
    Quiet("etherpad-url-base", "unset", {"ETHERPAD_URL_BASE": None}),
    Quiet("jvb-advertise-ips-format", "ports", {ADV: "198.51.100.7#12000,fe80::1#12000"}),
    Quiet("jvb-advertise-ips-format", "unset", {ADV: None}),
    Quiet("jvb-advertise-ips-private", "mixed", {ADV: "192.168.1.10,198.51.100.7"}),
    Quiet(
        "jvb-advertise-ips-private", "lan-only", {ADV: "192.168.1.10"}, {"internet_facing": False}
    ),
    Quiet("jvb-advertise-ips-private", "test-env", {ADV: "192.168.1.10"}, TEST_ENV),
    Quiet(
        "jvb-advertise-ips-missing",
        "docker-host-address",
        {ADV: None, "DOCKER_HOST_ADDRESS": "198.51.100.7"},
    ),
    Quiet("colibri-rest", "on", {"COLIBRI_REST_ENABLED": "1"}),
    Quiet("colibri-rest", "true", {"COLIBRI_REST_ENABLED": "true"}),
    Quiet("boolean-strict", "zero", {"ENABLE_JAAS_COMPONENTS": "0", "ENABLE_LETSENCRYPT": "0"}),
    Quiet(
        "boolean-strict", "rootless-unsafe-regex", {"ENABLE_COLIBRI_WEBSOCKET_UNSAFE_REGEX": "true"}
    ),
    Quiet("boolean-words", "numbers", {"ENABLE_P2P": "0", "ENABLE_LOBBY": "1"}),
    Quiet("boolean-words", "strict-key-elsewhere", {"ENABLE_LETSENCRYPT": "true"}),
    Quiet("boolean-words", "removed-key-elsewhere", {"ENABLE_SCTP": "true"}),
    Quiet("boolean-words", "text-key", {"ENABLE_PREJOIN_PAGE": "1", "DEFAULT_LANGUAGE": "no"}),
    Quiet("boolean-unknown-word", "true-word", {"ENABLE_LOBBY": "false"}),
    Quiet("image-version-pinned", "legacy", {IMG: "stable-11031"}),
    Quiet("image-version-pinned", "follow-up", {IMG: "stable-10073-1"}),
    Quiet("image-version-pinned", "unset", {IMG: None}),
    Quiet("release-unknown", "newest", {IMG: "stable-11146-2"}),
    Quiet("release-unknown", "custom", {IMG: "my-build-7"}),
    Quiet("release-before-compose-sets", "oldest-described", {IMG: "stable-10978"}),
    Quiet("release-before-compose-sets", "floating", {IMG: "stable"}),
    Quiet(
        "secret-required",
        "components-off",
        {"JIBRI_RECORDER_PASSWORD": None, "JIGASI_XMPP_PASSWORD": None},
        {"components": ()},
    ),
    Quiet("secret-required", "no-transcriptions", {"JIGASI_TRANSCRIBER_PASSWORD": None}),
    Quiet("secret-weak", "dsn", {"JVB_SENTRY_DSN": "x"}),
    Quiet("secret-weak", "strong-jwt", {"JWT_APP_SECRET": "b1946ac92492d2347c6235b4d2611184"}),
    Quiet("secrets-file-mode", "0600", {}, {"secrets_file_mode": 0o600}),
    Quiet("secrets-file-mode", "0400", {}, {"secrets_file_mode": 0o400}),
    Quiet("secrets-file-mode", "no-file", {}, {"secrets_file_mode": None}),
    Quiet(
        "removed-variable", "legacy-colibri", {"ENABLE_COLIBRI_WEBSOCKET": "1", IMG: "stable-11031"}
    ),
    Quiet(
        "removed-variable",
        "legacy-sctp",
        {"ENABLE_SCTP": "1", "JVB_WS_DOMAIN": "x", IMG: "stable-10888"},
    ),
    Quiet(
        "renamed-variable",
        "before-rename",
        {"XMPP_RECORDER_DOMAIN": "recorder.meet.jitsi", IMG: "stable-9753"},
    ),
    Quiet("renamed-variable", "new-names", {"XMPP_HIDDEN_DOMAIN": "hidden.meet.jitsi"}),
    Quiet("unknown-key", "removed-elsewhere", {"ENABLE_COLIBRI_WEBSOCKET": "1", "JVB_WS_TLS": "1"}),
    Quiet(
        "unknown-key",
        "renamed-elsewhere",
        {"XMPP_RECORDER_DOMAIN": "r.meet.jitsi", "DOCKER_HOST_ADDRESS": "198.51.100.7"},
    ),
    Quiet("unknown-key", "whiteboard-enabled-elsewhere", {"WHITEBOARD_ENABLED": "1"}),
    Quiet("unknown-key", "component-secret-elsewhere", {"JICOFO_COMPONENT_SECRET": "x" * 32}),
    Quiet(
        "unknown-key",
        "own-variables",
        {"PUBLISH_ADDRESS": "127.0.0.1", "ETHERPAD_IMAGE": "e:1", "WHITEBOARD_IMAGE": "w:1"},
    ),
    Quiet("config-dir", "home", {"CONFIG": "~/.jitsi-meet-cfg"}),
    Quiet("port-range", "high", {"JVB_PORT": "65535", "HTTP_PORT": "1"}),
    Quiet("port-conflict", "unset", {"HTTP_PORT": None}),
    Quiet("guests-without-auth", "guests-off", {"ENABLE_AUTH": "0", "ENABLE_GUESTS": "0"}),
    Quiet("auth-type", "matrix-token", {"AUTH_TYPE": "hybrid_matrix_token"}),
    Quiet(
        "auth-jwt-settings",
        "secret",
        {"AUTH_TYPE": "jwt", "JWT_APP_ID": "meet", "JWT_APP_SECRET": "9" * 8 + "a" * 24},
    ),
    Quiet(
        "auth-jwt-settings",
        "asap",
        {
            "AUTH_TYPE": "jwt",
            "JWT_APP_ID": "meet",
            "JWT_ASAP_KEYSERVER": "https://keys.example.com/",
        },
    ),
    Quiet("auth-jwt-settings", "auth-off", {"AUTH_TYPE": "jwt", "ENABLE_AUTH": "0"}),
    Quiet(
        "auth-ldap-settings", "ldaps", {"AUTH_TYPE": "ldap", "LDAP_URL": "ldaps://ldap.example.com"}
    ),
    Quiet("letsencrypt-domain", "case", {"LETSENCRYPT_DOMAIN": "Meet.Example.com"}),
    Quiet("letsencrypt-domain", "le-off", {"ENABLE_LETSENCRYPT": "0", "LETSENCRYPT_DOMAIN": None}),
    Quiet("letsencrypt-email", "le-off", {"ENABLE_LETSENCRYPT": "0", "LETSENCRYPT_EMAIL": None}),
    Quiet(
        "letsencrypt-ports",
        "le-off",
        {"ENABLE_LETSENCRYPT": "0", "HTTP_PORT": "8000", "HTTPS_PORT": "8443"},
    ),
    Quiet("letsencrypt-ports", "proxy-https", {"HTTPS_PORT": "8443"}, PROXY),
    Quiet(
        "letsencrypt-acme-server",
        "le-off",
        {"ENABLE_LETSENCRYPT": "0", "LETSENCRYPT_ACME_SERVER": None},
    ),
    Quiet("letsencrypt-staging", "test-env", {"LETSENCRYPT_USE_STAGING": "1"}, TEST_ENV),
    Quiet("disable-https-without-proxy", "proxy", {"DISABLE_HTTPS": "1"}, PROXY),
    Quiet(
        "http-redirect-loop",
        "no-redirect",
        {"DISABLE_HTTPS": "1", "ENABLE_HTTP_REDIRECT": "0"},
        PROXY,
    ),
    Quiet(
        "xmpp-domain-changed",
        "defaults",
        {"XMPP_DOMAIN": "meet.jitsi", "XMPP_MUC_DOMAIN": "muc.meet.jitsi"},
    ),
    Quiet("timezone", "utc", {"TZ": "UTC"}),
    Quiet("timezone", "deep", {"TZ": "America/Argentina/Buenos_Aires"}),
    Quiet("timezone", "etc", {"TZ": "Etc/GMT+5"}),
    Quiet("restart-policy", "on-failure", {"RESTART_POLICY": "on-failure:5"}),
    Quiet("restart-policy", "unset", {"RESTART_POLICY": None}),
    Quiet("recording-jibri", "neither", {"ENABLE_RECORDING": "0"}, {"components": ()}),
]


def _findings(
    rule_id: str, overrides: Mapping[str, str | None], options: Mapping[str, Any]
) -> list[Finding]:
    return run_checks(make_ctx(overrides, **options), only=[rule_id])


def _show(findings: list[Finding]) -> str:
    return "\n".join(f"{f.severity} {f.key} {f.rule}: {f.message} | {f.hint}" for f in findings)


@pytest.mark.parametrize("case", FIRES, ids=lambda c: f"{c.rule}:{c.name}")
def test_rule_fires(case: Fires) -> None:
    findings = _findings(case.rule, case.overrides, case.options)
    assert findings, f"{case.rule} stayed quiet on {dict(case.overrides)}"
    assert {f.rule for f in findings} == {case.rule}, _show(findings)
    matching = [f for f in findings if f.key == case.key and f.severity == case.severity]
    assert matching, f"expected {case.severity} on {case.key}, got:\n{_show(findings)}"
    assert any(case.observed in f.message for f in matching), (
        f"no message quotes {case.observed!r}:\n{_show(matching)}"
    )
    assert all(f.hint.strip() for f in findings), _show(findings)


@pytest.mark.parametrize("case", QUIET, ids=lambda c: f"{c.rule}:{c.name}")
def test_rule_quiet(case: Quiet) -> None:
    findings = _findings(case.rule, case.overrides, case.options)
    assert not findings, _show(findings)


def test_every_rule_has_firing_and_quiet_cases() -> None:
    fires = {case.rule for case in FIRES}
    quiet = {case.rule for case in QUIET}
    assert fires == set(RULES), (
        f"missing firing cases: {set(RULES) - fires}, stale: {fires - set(RULES)}"
    )
    assert quiet == set(RULES), (
        f"missing quiet cases: {set(RULES) - quiet}, stale: {quiet - set(RULES)}"
    )
    assert len(RULES) >= 24


def test_rule_ids_and_summaries() -> None:
    for rule_id, registered in RULES.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule_id), rule_id
        assert registered.id == rule_id
        assert registered.summary and "\n" not in registered.summary, rule_id


def test_good_baseline_has_no_findings_at_all() -> None:
    findings = run_checks(make_ctx())
    assert findings == [], _show(findings)


def test_good_baseline_keys_are_known_to_compose() -> None:
    ctx = make_ctx()
    assert set(GOOD) <= ctx.known, sorted(set(GOOD) - ctx.known)


# --- acceptance scenarios of issue 2 --------------------------------------------------------


def test_ip_public_url_with_port_is_reported() -> None:
    findings = run_checks(make_ctx({U: "https://192.0.2.7:8443", "HTTPS_PORT": "8443"}))
    assert has_errors(findings)
    assert any(f.key == U and f.rule == "public-url-ip-host" for f in findings), _show(findings)


def test_whiteboard_socket_io_path_is_an_error() -> None:
    findings = run_checks(make_ctx({WB: "https://meet.example.com:8443/socket.io/"}))
    errors = [f for f in findings if f.severity == "error"]
    assert [f.key for f in errors] == [WB], _show(findings)


def test_release_rules_hint_at_the_way_forward() -> None:
    (older,) = run_checks(make_ctx({IMG: "stable-7882"}), only=["release-before-compose-sets"])
    assert "pin stable-10978 or later" in older.hint, older.hint
    assert "upgrades in one step" in older.hint, older.hint
    (newer,) = run_checks(make_ctx({IMG: "stable-11300"}), only=["release-unknown"])
    for unknown in ("compose files", "migrations", "variables"):
        assert unknown in newer.message, newer.message
    assert "--allow-unknown-release" in newer.hint, newer.hint


@pytest.mark.parametrize("release", ["stable-11031", "stable-11146-2"])
def test_transcriber_variables_are_known_in_both_layouts(release: str) -> None:
    # upstream's transcriber.yml consumes them (env.example lists the GC_* ones)
    keys = {
        "GC_PROJECT_ID": "my-project",
        "GC_CLIENT_EMAIL": "t@example.iam.gserviceaccount.com",
        "JIGASI_TRANSCRIBER_WHISPER_URL": "wss://whisper.example.com/ws",
        "JIGASI_TRANSCRIBER_VOSK_URL": "ws://vosk:2700",
        "JIGASI_TRANSCRIBER_ENABLE_TRANSLATION": "1",
        "JIGASI_TRANSCRIBER_REMOTE_CONFIG_URL_AUD": "jitsi",
    }
    findings = run_checks(make_ctx({IMG: release, **keys}), only=["unknown-key"])
    assert findings == [], _show(findings)


def test_unknown_key_suggests_the_close_name() -> None:
    (finding,) = run_checks(
        make_ctx({"PUBLIC_ULR": "https://meet.example.com"}), only=["unknown-key"]
    )
    assert "did you mean PUBLIC_URL" in finding.hint


@pytest.mark.parametrize(
    ("key", "value", "rule_id"),
    [
        ("ENABLE_COLIBRI_WEBSOCKET", "1", "removed-variable"),
        ("ENABLE_SCTP", "true", "removed-variable"),
        ("COLIBRI_WEBSOCKET_REGEX", "jvb", "removed-variable"),
        ("JVB_WS_SERVER_ID", "jvb1", "removed-variable"),
        ("JICOFO_AUTH_USER", "focus", "removed-variable"),
        ("XMPP_RECORDER_DOMAIN", "recorder.meet.jitsi", "renamed-variable"),
        ("DOCKER_HOST_ADDRESS", "198.51.100.7", "renamed-variable"),
        ("WHITEBOARD_ENABLED", "true", "whiteboard-enabled-ignored"),
        ("JICOFO_COMPONENT_SECRET", "c" * 8 + "d" * 24, "unused-legacy-variable"),
    ],
)
def test_migrated_variables_have_one_specific_finding(key: str, value: str, rule_id: str) -> None:
    findings = [f for f in run_checks(make_ctx({key: value})) if f.key == key]
    assert [f.rule for f in findings] == [rule_id], _show(findings)


def test_colibri_websocket_is_valid_in_the_legacy_layout() -> None:
    ctx = make_ctx(
        {"ENABLE_COLIBRI_WEBSOCKET": "1", "COLIBRI_WEBSOCKET_REGEX": "jvb", IMG: "stable-11031"}
    )
    findings = [f for f in run_checks(ctx) if f.key and "COLIBRI" in f.key]
    assert findings == [], _show(findings)


@pytest.mark.parametrize(
    ("passed_by_compose", "severity"),
    [(True, "warning"), (False, "error")],
    ids=["fallback", "dropped"],
)
def test_docker_host_address_severity_follows_the_compose_set(
    passed_by_compose: bool, severity: str
) -> None:
    ctx = make_ctx({ADV: None, "DOCKER_HOST_ADDRESS": "198.51.100.7"})
    known = (
        ctx.known | {"DOCKER_HOST_ADDRESS"}
        if passed_by_compose
        else ctx.known - {"DOCKER_HOST_ADDRESS"}
    )
    ctx = dataclasses.replace(ctx, known=frozenset(known))
    (finding,) = run_checks(ctx, only=["renamed-variable"])
    assert (finding.severity, finding.key) == (severity, "DOCKER_HOST_ADDRESS")
    assert "JVB_ADVERTISE_IPS=198.51.100.7" in finding.hint


# --- secrets never leak -----------------------------------------------------------------------

LEAKY = {
    **SECRETS,
    "JVB_AUTH_PASSWORD": "passw0rd",
    "JICOFO_AUTH_PASSWORD": "zzzzzzzzzzzzzzzzzzzzzzzz",
    "JIBRI_XMPP_PASSWORD": "Sh0rtOne",
    "JWT_APP_SECRET": "jwtS3cretValue",
    "LDAP_BINDPW": "Ldap-Bind-Secret-42",
    "JICOFO_COMPONENT_SECRET": "ComponentSecret-0042",
    "JIGASI_SIP_PASSWORD": "SipSecret7",
    # a secret pasted where a URL belongs, and one in a misspelt key
    "PUBLIC_URL": "https://admin:UrlPassw0rd-99@meet.example.com/jitsi?x#y",
    "JVB_AUTH_PASSWROD": "TypoSecret-1234567",
}


def test_no_secret_value_in_any_finding() -> None:
    overrides: dict[str, str | None] = {
        **LEAKY,
        "AUTH_TYPE": "jwt",
        "ENABLE_TRANSCRIPTIONS": "1",
        "JIGASI_TRANSCRIBER_PASSWORD": None,
        "ENABLE_LETSENCRYPT": "true",
        WB: "https://u:WbPassw0rd-77@meet.example.com/socket.io/",
    }
    ctx = make_ctx(overrides, secrets_file_mode=0o644)
    findings = run_checks(ctx)
    assert len({f.rule for f in findings}) >= 8, _show(findings)
    secret_values = [v for k, v in ctx.values.items() if is_secret_key(k) and v]
    secret_values += ["UrlPassw0rd-99", "WbPassw0rd-77", "TypoSecret-1234567"]
    for finding in findings:
        for value in secret_values:
            assert value not in finding.message, f"{finding.rule} leaks a secret in its message"
            assert value not in finding.hint, f"{finding.rule} leaks a secret in its hint"


# --- operator fixtures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "release"),
    [("operator-11146.env", "stable-11146-2"), ("operator-11031.env", "stable-11031")],
)
def test_operator_env_has_no_errors_and_no_unknown_keys(fixture: str, release: str) -> None:
    values = parse_env((FIXTURES / fixture).read_text(encoding="utf-8"), fixture)
    values.setdefault("JITSI_IMAGE_VERSION", release)
    findings = run_checks(LintContext.for_test(values, root=REPO_ROOT))
    bad = [f for f in findings if f.severity == "error" or f.rule == "unknown-key"]
    assert bad == [], _show(bad)


def test_shipped_example_environment_has_no_errors() -> None:
    # `invoke check --env example` must exit 0 on a clean clone (no secrets.env yet).
    env = load_environment("example", REPO_ROOT, environ={})
    findings = run_checks(context_for(env))
    assert not has_errors(findings), _show(findings)


def test_readme_documents_every_rule() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [rule_id for rule_id in RULES if f"| `{rule_id}` |" not in readme]
    assert not missing, f"README check-rules table lacks: {missing}"
