"""Shared test helpers: an in-memory chat for unit tests, and real loopback clients."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from chatd.listening import ListeningService
from chatd.policy import EdgePolicy
from chatd.protocol import ChatFactory, ChatProtocol
from chatd.service import ChatService
from chatd.tap import Options, makeService

WAIT_SECONDS = 10.0


# --- Unit level: protocols over StringTransport -------------------------------------------


class MemoryChat:
    """A chat service and factory with a fake clock, and clients on StringTransports."""

    def __init__(self, service_args: dict[str, Any] | None = None, **limits: Any) -> None:
        """``limits`` are EdgePolicy fields (max_line=10, flood_rate=5, ...)."""
        self.clock = Clock()
        self.service = ChatService(self.clock, **(service_args or {}))
        self.policy = EdgePolicy(**limits)
        self.factory = ChatFactory(self.service, self.policy)
        self._next_port = 40000

    def connect(self) -> tuple[ChatProtocol, StringTransport]:
        proto, transport = self.connect_to(self.factory)
        assert isinstance(proto, ChatProtocol)
        return proto, transport

    def connect_to(self, factory: ServerFactory) -> tuple[Any, StringTransport]:
        """A connection from a fresh port on 127.0.0.1 to ``factory`` (any front-end's)."""
        self._next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._next_port)
        proto = factory.buildProtocol(peer)
        assert proto is not None
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport


def take_lines(transport: StringTransport) -> list[str]:
    """Everything written to ``transport`` since the last call, as decoded lines."""
    data = transport.value()
    transport.clear()
    assert data == b"" or data.endswith(b"\r\n"), data
    return [line.decode("utf-8") for line in data.split(b"\r\n")[:-1]]


# --- Integration level: a real daemon on loopback ------------------------------------------


class RunningDaemon:
    """makeService() started in this process, listening on 127.0.0.1 with port 0."""

    def __init__(self, args: list[str]) -> None:
        self.options = Options()
        self.options.parseOptions(args)
        self.top: service.MultiService = makeService(self.options)
        self.top.startService()

    def listeners(self) -> Iterator[ListeningService]:
        for child in self.top:
            if isinstance(child, ListeningService):
                yield child

    def _port(self, index: int) -> int:
        port = list(self.listeners())[index].port
        assert port is not None
        return int(port.getHost().port)

    @property
    def chat_port(self) -> int:
        """The port of the first --listen."""
        return self._port(0)

    @property
    def echo_port(self) -> int:
        """The port of the first --echo."""
        return self._port(len(self.options["listen"]))

    @property
    def udp_port(self) -> int:
        """The port of the first --echo-udp."""
        return self._port(len(self.options["listen"]) + len(self.options["echo"]))

    @property
    def chat(self) -> ChatService:
        chat = self.top.getServiceNamed("chat")
        assert isinstance(chat, ChatService)
        return chat

    def stop(self) -> defer.Deferred[Any]:
        return defer.maybeDeferred(self.top.stopService)


LOCAL = "interface=127.0.0.1"


def local_args(*extra: str) -> list[str]:
    return [
        "--listen", f"tcp:0:{LOCAL}",
        "--echo", f"tcp:0:{LOCAL}",
        "--echo-udp", "udp:0:interface=127.0.0.1",
        *(extra if "--state" in extra else ("--state", "none", *extra)),
    ]


class LineClient(protocol.Protocol):
    """A test client that records every line the server sends."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = b""
        self._waiters: list[tuple[re.Pattern[str], defer.Deferred[str]]] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._consumed: set[int] = set()

    def dataReceived(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\r\n")
        for raw in complete:
            self.lines.append(raw.decode("utf-8"))
        self._check()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)
        for _, waiter in self._waiters:
            if not waiter.called:
                waiter.errback(AssertionError(f"connection closed; lines: {self.lines}"))
        self._waiters = []

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def wait_for(self, pattern: str) -> defer.Deferred[str]:
        """Fires with the first not-yet-consumed line matching ``pattern`` (re.search).

        Lines that arrive from different senders may interleave in any order; a line that
        does not match is left for a later wait_for.
        """
        d: defer.Deferred[str] = defer.Deferred()
        self._waiters.append((re.compile(pattern), d))
        self._check()
        timeout = reactor.callLater(  # type: ignore[attr-defined]
            WAIT_SECONDS, self._timeout, d, pattern
        )
        d.addBoth(lambda r: (timeout.active() and timeout.cancel(), r)[1])
        return d

    def _timeout(self, d: defer.Deferred[str], pattern: str) -> None:
        self._waiters = [(p, w) for p, w in self._waiters if w is not d]
        d.errback(AssertionError(f"no line matching {pattern!r}; lines: {self.lines}"))

    def _check(self) -> None:
        for pattern, waiter in list(self._waiters):
            for index, line in enumerate(self.lines):
                if index not in self._consumed and pattern.search(line):
                    self._consumed.add(index)
                    self._waiters.remove((pattern, waiter))
                    waiter.callback(line)
                    break


@defer.inlineCallbacks
def connect_client(port: int, greeting: bool = True) -> Any:
    """A LineClient connected to 127.0.0.1:port, after its greeting when ``greeting``."""
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = yield endpoints.connectProtocol(endpoint, LineClient())
    if greeting:
        yield client.wait_for(r"^\*\*\* Welcome")
    return client


def make_certificate(directory: Any, hostname: str = "localhost") -> tuple[str, str]:
    """Writes a fresh self-signed key and certificate for ``hostname``; returns their paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


# --- Blocking sockets, for tests that drive a daemon in another process -------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in {data!r}")
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before {needle!r}; got {data!r}")
        data += chunk
    return data


def connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
