"""Explicit TLS trust for the operator-side probes: a CA file, a pinned host certificate, or the
public CA bundle. Never `verify=False`.

The environment chooses (deploy.toml [verify]): `ca_file` trusts that CA with full host-name
checks; `trust_host_certificate` pins the certificate the web container serves by its SHA-256
fingerprint, read over SSH from CONFIG on the host (self-signed sandboxes and first deploys);
otherwise the certifi bundle that requests ships. Process variables (REQUESTS_CA_BUNDLE, proxies)
are ignored on purpose: the answer must not depend on the operator's shell.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import certifi
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from jitsi_ops.verify.derive import Origin

TrustMode = Literal["ca_file", "pinned", "system"]


class PinMismatch(ssl.SSLError):
    """The peer's certificate is not the pinned one."""


def sha256_hex(der: bytes) -> str:
    """Lowercase hex SHA-256 of a DER certificate."""
    return hashlib.sha256(der).hexdigest()


def short_fingerprint(der: bytes) -> str:
    """`sha256:ab12cd34...` for reports (enough to recognise, short enough to read)."""
    return "sha256:" + sha256_hex(der)[:16]


class _PinnedAdapter(HTTPAdapter):
    """Connections that accept exactly one certificate.

    The pinned certificate is the only trust anchor of the SSLContext (so the chain is still
    verified, CERT_REQUIRED) and urllib3 also asserts its SHA-256 fingerprint; the host name is
    not what is trusted here, the exact certificate is.
    """

    def __init__(self, context: ssl.SSLContext, fingerprint: str) -> None:
        self._context = context
        self._fingerprint = fingerprint
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kwargs: Any
    ) -> None:
        """Give every pool of this adapter the pinned context and fingerprint."""
        super().init_poolmanager(
            connections,
            maxsize,
            block=block,
            ssl_context=self._context,
            assert_hostname=False,
            assert_fingerprint=self._fingerprint,
            **kwargs,
        )

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Chain verification on, against the pinned anchor only (no CA bundle merged in)."""
        kwargs["verify"] = True
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class Trust:
    """How the probes decide that PUBLIC_URL's server is the right one."""

    mode: TrustMode
    origin: Origin
    ca_file: Path | None = None
    pinned_der: bytes | None = None
    pinned_source: str = ""

    def describe(self) -> str:
        """One line for reports."""
        if self.mode == "pinned" and self.pinned_der is not None:
            return f"pinned host certificate {short_fingerprint(self.pinned_der)} ({self.pinned_source})"
        if self.mode == "ca_file":
            return f"CA file {self.ca_file}"
        return "public CA bundle (certifi)"

    def url_prefixes(self) -> list[str]:
        """URL prefixes of PUBLIC_URL's origin (with and without an explicit default port)."""
        prefixes = [f"https://{self.origin.netloc}/"]
        if self.origin.port == 443:
            host = f"[{self.origin.host}]" if ":" in self.origin.host else self.origin.host
            prefixes.append(f"https://{host}/")
        return prefixes

    def _applies(self, origin: Origin) -> bool:
        return origin == self.origin

    def session(self) -> requests.Session:
        """A requests session with this trust for PUBLIC_URL's origin and certifi elsewhere."""
        session = requests.Session()
        session.trust_env = False  # no REQUESTS_CA_BUNDLE, no proxies from the shell
        session.headers["User-Agent"] = "jitsi-ops-verify"
        adapter: HTTPAdapter | None = None
        if self.mode == "ca_file" and self.ca_file is not None:
            adapter = _CaAdapter(str(self.ca_file))
        elif self.mode == "pinned" and self.pinned_der is not None:
            adapter = _PinnedAdapter(self.ssl_context(), sha256_hex(self.pinned_der))
        if adapter is not None:
            for prefix in self.url_prefixes():
                session.mount(prefix, adapter)
        # Everything else (e.g. an external ETHERPAD_PUBLIC_URL): certifi, as requests ships it.
        session.verify = True
        return session

    def ssl_context(self, origin: Origin | None = None) -> ssl.SSLContext:
        """An SSLContext for raw TLS / websocket clients talking to `origin` (default PUBLIC_URL)."""
        target = origin or self.origin
        if not self._applies(target) or self.mode == "system":
            return ssl.create_default_context(cafile=certifi.where())
        if self.mode == "ca_file":
            return ssl.create_default_context(cafile=str(self.ca_file))
        assert self.pinned_der is not None  # mode "pinned" is only built with a certificate
        pem = ssl.DER_cert_to_PEM_cert(self.pinned_der)
        context = ssl.create_default_context(cadata=pem)
        # The pinned certificate itself is the trust anchor (self-signed, often CN=* with no
        # SAN): the name is not what is trusted, the exact certificate is (check_peer below).
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context

    def check_peer(self, der: bytes | None, origin: Origin | None = None) -> None:
        """Raise PinMismatch when pinning and the peer's certificate is another one."""
        target = origin or self.origin
        if self.mode != "pinned" or self.pinned_der is None or not self._applies(target):
            return
        if der is None or sha256_hex(der) != sha256_hex(self.pinned_der):
            shown = short_fingerprint(der) if der else "none"
            raise PinMismatch(
                f"served certificate {shown} is not the pinned "
                f"{short_fingerprint(self.pinned_der)} ({self.pinned_source})"
            )


class _CaAdapter(HTTPAdapter):
    """An adapter that verifies against one CA file, host names checked as usual."""

    def __init__(self, ca_file: str) -> None:
        self._ca_file = ca_file
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Verify against this adapter's CA file, whatever the session default is."""
        kwargs["verify"] = self._ca_file
        return super().send(request, **kwargs)


def pem_to_der(pem: str) -> bytes:
    """The first certificate of a PEM text as DER; ValueError when there is none."""
    marker = "-----BEGIN CERTIFICATE-----"
    start = pem.find(marker)
    if start < 0:
        raise ValueError("no PEM certificate found")
    end = pem.find("-----END CERTIFICATE-----", start)
    if end < 0:
        raise ValueError("truncated PEM certificate")
    return ssl.PEM_cert_to_DER_cert(pem[start : end + len("-----END CERTIFICATE-----")] + "\n")


def peer_certificate(
    origin: Origin, context: ssl.SSLContext, timeout: float, server_name: str | None = None
) -> bytes:
    """Handshake with `origin` and return the served certificate (DER)."""
    with (
        socket.create_connection((origin.host, origin.port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name or origin.host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


@dataclass(frozen=True)
class CertInfo:
    """The parts of a certificate the TLS check reports."""

    subject_cn: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: datetime

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until expiry (negative when expired)."""
        return (self.not_after - (now or datetime.now(UTC))).days

    def names(self) -> str:
        """Names the certificate is valid for, for reports."""
        listed = [*self.dns_names, *self.ip_addresses]
        return ", ".join(listed) if listed else f"CN={self.subject_cn} (no SAN)"


def cert_info(der: bytes) -> CertInfo:
    """Parse a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return CertInfo(cn, tuple(dns), tuple(ips), cert.not_valid_after_utc)
