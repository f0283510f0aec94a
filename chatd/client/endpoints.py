"""Build the client endpoint: TCP, or TLS with a chosen trust root."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)

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
        creator = optionsForClientTLS(host, trustRoot=trust)
    endpoint: Endpoint = wrapClientTLS(creator, tcp)  # type: ignore[arg-type]
    return endpoint
