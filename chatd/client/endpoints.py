"""Build the client endpoint: TCP, or TLS with a chosen trust root."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from OpenSSL.crypto import X509
from OpenSSL.SSL import VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_PEER, Connection
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.client._types import Endpoint

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def load_ca_file(path: str) -> list[Certificate]:
    """Every certificate in a PEM file (a CA bundle may hold several)."""
    data = Path(path).read_bytes()
    certs = [Certificate.loadPEM(block) for block in _PEM_CERT.findall(data)]
    if not certs:
        raise ValueError(f"no PEM certificate found in {path}")
    return certs


def make_endpoint(
    reactor: Any,
    host: str,
    port: int,
    tls: bool = False,
    cafile: str | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
) -> Endpoint:
    tcp: Endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if not tls:
        return tcp
    creator: Any
    if insecure:
        creator = CertificateOptions(verify=False)
    else:
        trust = (
            trustRootFromCertificates(load_ca_file(cafile))
            if cafile
            else platformTrust()
        )
        creator = NameChecked(host, optionsForClientTLS(host, trustRoot=trust))
    endpoint: Endpoint = wrapClientTLS(creator, tcp)  # type: ignore[arg-type]
    return endpoint


@implementer(IOpenSSLClientConnectionCreator)
class NameChecked:
    """Twisted's client TLS options, with the server's name checked here too.

    For a certificate without a subjectAltName, service_identity raises CertificateError,
    which Twisted's verify callback (26.10) logs as a traceback and then ignores: the
    connection would go on with the name unchecked. This callback replaces Twisted's and
    refuses on either error; the chain is still verified by OpenSSL (``ok``).
    """

    def __init__(self, host: str, options: Any) -> None:
        self.options = options
        self.service: ServiceID
        try:
            self.service = IPAddress_ID(str(ipaddress.ip_address(host)))
        except ValueError:
            self.service = DNS_ID(host)

    def clientConnectionForTLS(self, tls_protocol: Any) -> Connection:
        connection: Connection = self.options.clientConnectionForTLS(tls_protocol)
        service = self.service

        def verify(conn: Connection, cert: X509, error: int, depth: int, ok: int) -> bool:
            if not ok or depth != 0:  # a failed chain, or a CA's certificate
                return bool(ok)
            try:
                verify_service_identity(extract_patterns(cert), [service], [])
            except (VerificationError, CertificateError):
                tls_protocol.failVerification(Failure())
                return False
            return True

        connection.set_verify(VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection
