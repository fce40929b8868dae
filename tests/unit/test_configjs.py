"""configjs: reading the values the web container rendered."""

from __future__ import annotations

from jitsi_ops.configjs import lookup, parse_config_js

ASSIGNMENTS = """
// generated at container start
var config = {};
var subdir = '<!--# echo var="subdir" default="" -->';
config.hosts = {};
config.hosts.domain = 'meet.jitsi';
config.hosts.muc = 'muc.' + subdir + 'meet.jitsi';
config.bosh = 'https://meet.example.com:8443/' + subdir + 'http-bind';
config.websocket = "wss://meet.example.com:8443/xmpp-websocket";
config.whiteboard = {
    enabled: true,
    collabServerBaseUrl: 'https://meet.example.com:8443'
};
config.etherpad_base = 'https://meet.example.com:8443/etherpad/p/';
config.p2p = { enabled: false, stunServers: [{ urls: 'stun:a:443' }] };
if (typeof x !== 'undefined') { config.ignored = 1; }
config.flags = { sourceNameSignaling: true, n: 3 };
"""

OBJECT = """
var config = {
    hosts: { domain: 'meet.jitsi', muc: 'muc.meet.jitsi' },
    'bosh': 'https://m.example/http-bind',  /* comment */
    testing: { x: null },
};
config.websocket = 'wss://m.example/xmpp-websocket';
"""


def test_assignment_style() -> None:
    cfg = parse_config_js(ASSIGNMENTS)
    assert lookup(cfg, "hosts.domain") == "meet.jitsi"
    assert lookup(cfg, "hosts.muc") == "muc.meet.jitsi"
    assert cfg["bosh"] == "https://meet.example.com:8443/http-bind"
    assert cfg["websocket"] == "wss://meet.example.com:8443/xmpp-websocket"
    assert lookup(cfg, "whiteboard.enabled") is True
    assert lookup(cfg, "whiteboard.collabServerBaseUrl") == "https://meet.example.com:8443"
    assert cfg["etherpad_base"] == "https://meet.example.com:8443/etherpad/p/"
    assert lookup(cfg, "p2p.enabled") is False
    assert lookup(cfg, "flags.n") == 3


def test_object_style_and_missing() -> None:
    cfg = parse_config_js(OBJECT)
    assert lookup(cfg, "hosts.muc") == "muc.meet.jitsi"
    assert cfg["bosh"] == "https://m.example/http-bind"
    assert cfg["websocket"] == "wss://m.example/xmpp-websocket"
    assert lookup(cfg, "whiteboard.collabServerBaseUrl") is None
    assert lookup(cfg, "testing.x") is None
