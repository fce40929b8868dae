"""verify.tlstrust against a throw-away HTTPS server on 127.0.0.1: pinning accepts exactly the
pinned certificate, a CA file checks names, and nothing falls back to verify=False."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitsi_ops.verify.derive import Origin
from jitsi_ops.verify.tlstrust import (
    PinMismatch,
    Trust,
    cert_info,
    peer_certificate,
    pem_to_der,
    short_fingerprint,
)


@dataclass(frozen=True)
class Served:
    origin: Origin
    pem: str
    ca_file: Path


def self_signed(common_name: str, san_ip: str | None, days: int = 30) -> tuple[str, str]:
    """(certificate PEM, key PEM); CN=* without SAN mimics the web image's self-signed pair."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        del format, args


def serve(directory: Path, common_name: str, san_ip: str | None) -> Iterator[Served]:
    directory.mkdir()
    tmp_path = directory
    cert_pem, key_pem = self_signed(common_name, san_ip)
    (tmp_path / "cert.pem").write_text(cert_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = HTTPServer(("127.0.0.1", 0), Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Served(
            Origin("https", "127.0.0.1", server.server_address[1]), cert_pem, tmp_path / "cert.pem"
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def star_cert(tmp_path: Path) -> Iterator[Served]:
    """Like the web container's own pair: CN=*, no SAN."""
    yield from serve(tmp_path / "star", "*", None)


@pytest.fixture
def ip_cert(tmp_path: Path) -> Iterator[Served]:
    """A certificate valid for 127.0.0.1 (SAN IP)."""
    yield from serve(tmp_path / "ip", "meet", "127.0.0.1")


def test_pinned_trust_accepts_exactly_the_pinned_certificate(star_cert: Served) -> None:
    der = pem_to_der(star_cert.pem)
    trust = Trust("pinned", star_cert.origin, pinned_der=der, pinned_source="host:/keys/cert.crt")
    response = trust.session().get(f"{star_cert.origin.base}/", timeout=5)
    assert (response.status_code, response.text) == (200, "hello"), response
    served = peer_certificate(star_cert.origin, trust.ssl_context(), 5)
    trust.check_peer(served)
    info = cert_info(served)
    assert (info.subject_cn, info.names()) == ("*", "CN=* (no SAN)"), info
    assert 28 <= info.days_left() <= 30, info.not_after
    assert short_fingerprint(der) in trust.describe(), trust.describe()


def test_pinning_another_certificate_is_refused(star_cert: Served) -> None:
    other, _ = self_signed("*", None)
    trust = Trust("pinned", star_cert.origin, pinned_der=pem_to_der(other))
    with pytest.raises(requests.exceptions.SSLError):
        trust.session().get(f"{star_cert.origin.base}/", timeout=5)
    with pytest.raises(ssl.SSLError):
        peer_certificate(star_cert.origin, trust.ssl_context(), 5)
    with pytest.raises(PinMismatch, match="is not the pinned"):
        trust.check_peer(pem_to_der(star_cert.pem))


def test_ca_file_checks_the_host_name(ip_cert: Served, star_cert: Served) -> None:
    trust = Trust("ca_file", ip_cert.origin, ca_file=ip_cert.ca_file)
    assert trust.session().get(f"{ip_cert.origin.base}/", timeout=5).status_code == 200
    peer_certificate(ip_cert.origin, trust.ssl_context(), 5)
    # The CN=* certificate as CA: trusted issuer, but not valid for 127.0.0.1.
    star = Trust("ca_file", star_cert.origin, ca_file=star_cert.ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|not valid"):
        peer_certificate(star_cert.origin, star.ssl_context(), 5)


def test_without_explicit_trust_a_self_signed_server_fails(
    star_cert: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shell's bundle must not matter (this machine sets REQUESTS_CA_BUNDLE).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(star_cert.ca_file))
    trust = Trust("system", star_cert.origin)
    with pytest.raises(requests.exceptions.SSLError):
        trust.session().get(f"{star_cert.origin.base}/", timeout=5)


def test_pinning_covers_both_spellings_of_port_443() -> None:
    trust = Trust("pinned", Origin("https", "meet.example.com", 443), pinned_der=b"x")
    assert trust.url_prefixes() == ["https://meet.example.com:443/", "https://meet.example.com/"]
    assert Trust("system", Origin("https", "::1", 8443)).url_prefixes() == ["https://[::1]:8443/"]


def test_pem_to_der_finds_the_certificate() -> None:
    pem, _ = self_signed("*", None)
    assert pem_to_der("junk before\n" + pem) == ssl.PEM_cert_to_DER_cert(pem)
    with pytest.raises(ValueError, match="no PEM certificate"):
        pem_to_der("nothing here")
