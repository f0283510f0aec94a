"""The client's TLS endpoint against a real TLS server on loopback: the server's name is
checked, whatever its certificate holds."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from service_identity import CertificateError, VerificationError
from twisted.internet import defer, endpoints, protocol, reactor, ssl
from twisted.python.failure import Failure

from chatd.client.endpoints import make_endpoint
from tests.support import within


def self_signed(directory: Path, alt_name: str | None) -> tuple[Path, bytes]:
    """A certificate for CN=localhost with ``alt_name`` as its subjectAltName, or none (as
    `openssl req -subj /CN=localhost` makes): (cert.pem, cert and key PEM for the server)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if alt_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(alt_name)]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    path = directory / "cert.pem"
    path.write_bytes(cert_pem)
    return path, key_pem + cert_pem


class Greeter(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"*** Welcome\r\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class Recorder(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[BaseException] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.lost.callback(reason.value)  # the exception: a Failure would errback


@pytest.mark.parametrize("alt_name", [None, "chat.example.org"])
@pytest_twisted.inlineCallbacks
def test_a_trusted_certificate_for_another_name_is_refused(
    tmp_path: Path, alt_name: str | None
) -> Any:
    # Without a subjectAltName service_identity cannot match the name at all; Twisted's own
    # check logs that and lets the connection through, so the client refuses it itself.
    cert_path, server_pem = self_signed(tmp_path, alt_name)
    server = ssl.PrivateCertificate.loadPEM(server_pem).options()
    factory = protocol.Factory.forProtocol(Greeter)
    port = yield endpoints.SSL4ServerEndpoint(reactor, 0, server, interface="127.0.0.1"
                                              ).listen(factory)
    try:
        client = Recorder()
        endpoint = make_endpoint(reactor, "localhost", port.getHost().port, tls=True,
                                 cafile=str(cert_path))
        yield within(endpoints.connectProtocol(endpoint, client), "the TCP connection")
        reason = yield within(client.lost, "the refused handshake")
        assert client.received == b""
        assert isinstance(reason, VerificationError | CertificateError), reason
    finally:
        yield port.stopListening()
