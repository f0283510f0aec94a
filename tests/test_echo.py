"""Echo guards: no loops between our own UDP ports, bounded memory for TCP clients that do
not read, and slots that come back when a connection closes."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.echo import (
    DEFAULT_ECHO_PORT,
    ECHO_MAX_BACKLOG,
    EchoDatagramProtocol,
    EchoFactory,
    EchoProtocol,
)
from chatd.limits import ConnectionLimits
from tests.support import WAIT_SECONDS, RunningDaemon, local_args
from tests.test_echo_splice import held_by, send_until_stuck


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


# --- UDP: our own ports are loop ports --------------------------------------------------------


class RecordingUDPTransport:
    def __init__(self, port: int = 7007) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.port = port

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.port)


def started_echo(bound_port: int, own_ports: set[int] | None = None) -> EchoDatagramProtocol:
    echo = EchoDatagramProtocol(task.Clock(), own_ports=own_ports)
    echo.transport = RecordingUDPTransport(bound_port)
    echo.startProtocol()
    return echo


@pytest.mark.parametrize("source_port", [DEFAULT_ECHO_PORT, 9000, 9001, 5555])
def test_datagrams_from_any_of_our_echo_ports_are_not_answered(source_port: int) -> None:
    # Listening on 5555 and configured with 9000 and 9001: chatd's default port and all of
    # those are echo ports another chatd (or this one) may send from.
    echo = started_echo(5555, own_ports={9000, 9001})
    echo.datagramReceived(b"ping", ("192.0.2.1", source_port))
    assert echo.transport.sent == []


def test_datagrams_from_other_ports_are_answered() -> None:
    echo = started_echo(5555, own_ports={9000})
    echo.datagramReceived(b"ping", ("192.0.2.1", 40000))
    assert echo.transport.sent == [(b"ping", ("192.0.2.1", 40000))]


class CountingEcho(EchoDatagramProtocol):
    def __init__(self, own_ports: set[int]) -> None:
        super().__init__(rate=0, total_rate=0, own_ports=own_ports)
        self.received = 0

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        super().datagramReceived(datagram, addr)


@pytest_twisted.inlineCallbacks
def test_two_of_our_udp_echo_ports_do_not_echo_at_each_other() -> Any:
    """Over the wire, unprivileged: one datagram from echo port B to echo port A.

    Without the guard A answers B, B answers A, and so on forever. A plain client's datagram,
    sent after it and answered, shows A has read everything before it.
    """
    own_ports: set[int] = set()
    a, b = CountingEcho(own_ports), CountingEcho(own_ports)
    port_a = reactor.listenUDP(0, a, interface="127.0.0.1")  # type: ignore[attr-defined]
    port_b = reactor.listenUDP(0, b, interface="127.0.0.1")  # type: ignore[attr-defined]
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        address_a = ("127.0.0.1", port_a.getHost().port)
        b.transport.write(b"loop?", address_a)
        client.sendto(b"control", address_a)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                assert client.recv(100) == b"control"
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the control datagram was never echoed"
                yield sleep(0.01)
        yield sleep(0.05)  # time for a loop, were there one, to go round a few times
        assert (a.received, b.received) == (2, 0)
    finally:
        client.close()
        yield port_a.stopListening()
        yield port_b.stopListening()


# --- TCP: memory per connection and in total --------------------------------------------------


def echo_connection(factory: EchoFactory, port: int) -> tuple[EchoProtocol, StringTransport]:
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", port))
    assert isinstance(proto, EchoProtocol)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_stalled_connections_past_the_total_are_cut_off() -> None:
    factory = EchoFactory(total_backlog=2 * ECHO_MAX_BACKLOG)
    (p1, t1), (p2, t2), (p3, t3) = (echo_connection(factory, n) for n in (1, 2, 3))
    assert t1.producer is p1  # the transport pauses and resumes the protocol itself
    p1.pauseProducing()  # as the transport does when the peer stops reading
    p2.pauseProducing()
    assert t1.producerState == t2.producerState == "paused"  # no more reads from them
    p3.pauseProducing()  # a third would pass the total: cut off, not paused
    assert t3.disconnecting and t3.producerState == "producing"
    p1.resumeProducing()  # p1's peer read its echo: its share is free again
    assert t1.producerState == "producing"
    p4, t4 = echo_connection(factory, 4)
    p4.pauseProducing()
    assert t4.producerState == "paused" and not t4.disconnecting
    p2.connectionLost()
    p5, t5 = echo_connection(factory, 5)
    p5.pauseProducing()
    assert t5.producerState == "paused" and not t5.disconnecting


@pytest_twisted.inlineCallbacks
def test_a_client_that_sends_and_never_reads_costs_at_most_64_kib() -> Any:
    daemon = RunningDaemon(local_args())
    factory = list(daemon.listeners())[1].port.factory  # type: ignore[union-attr]
    assert isinstance(factory, EchoFactory)
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", daemon.echo_port))
        sock.setblocking(False)
        sent = yield send_until_stuck(sock, lambda: bool(factory.stalled))
        assert len(factory.stalled) == 1, "the connection was never paused"
        (proto,) = factory.stalled
        assert proto.pump is not None  # the daemon echoes through a pipe (chatd/splice.py)
        held = held_by(proto)  # in the pipe and in Twisted's buffer
        assert 0 < held <= 64 * 1024, held  # README's promise
        assert sent > 4 * ECHO_MAX_BACKLOG  # the rest waits in the kernels, not in chatd
    finally:
        sock.close()
        yield daemon.stop()


class Echoed(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


@defer.inlineCallbacks
def echo_round_trip(port: int) -> Any:
    """An echo client that got "ping" back, or None if the server closed on it first."""
    client = Echoed()
    yield endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), client
    )
    client.transport.write(b"ping")
    deadline = time.monotonic() + WAIT_SECONDS
    while client.data != b"ping" and not client.closed.called:
        assert time.monotonic() < deadline, "neither echoed nor closed"
        yield sleep(0.01)
    return client if client.data == b"ping" else None


@pytest_twisted.inlineCallbacks
def test_closing_an_echo_connection_frees_its_slot() -> Any:
    daemon = RunningDaemon(local_args("--max-per-ip", "3"))
    try:
        clients = []
        for _ in range(3):
            clients.append((yield echo_round_trip(daemon.echo_port)))
        assert all(clients)
        assert (yield echo_round_trip(daemon.echo_port)) is None  # a fourth is refused
        for client in clients:
            client.transport.loseConnection()
            yield client.closed.addTimeout(WAIT_SECONDS, reactor)
        # The server sees the closes a moment later; by the deadline a fourth must get in.
        deadline = time.monotonic() + WAIT_SECONDS
        fourth = None
        while fourth is None:
            assert time.monotonic() < deadline, "closed echo connections kept their slots"
            fourth = yield echo_round_trip(daemon.echo_port)
        fourth.transport.loseConnection()
        yield fourth.closed.addTimeout(WAIT_SECONDS, reactor)
    finally:
        yield daemon.stop()


def test_limits_are_released_once_per_connection() -> None:
    limits = ConnectionLimits(0, 1)
    factory = EchoFactory(limits=limits)
    proto, _ = echo_connection(factory, 1)
    assert factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 2)) is None
    proto.connectionLost()
    proto.connectionLost()  # a second call must not free someone else's slot
    assert limits.total == 0
    echo_connection(factory, 3)
    assert factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4)) is None
