"""The RFC 862 echo service, over TCP and UDP."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

DEFAULT_ECHO_IDLE_TIMEOUT = 300.0

# Source ports of the classic small services (echo, discard, daytime, qotd, chargen, time),
# and 0, which no real client sends from. Answering them lets two such services
# ping-pong a datagram between each other forever.
LOOP_PORTS = frozenset({0, 7, 9, 13, 17, 19, 37})


class EchoProtocol(protocol.Protocol, TimeoutMixin):
    """Sends back every byte received, unchanged, until the peer closes.

    The transport is registered as its own producer: when the peer stops reading and our
    send buffer fills, Twisted pauses the transport, which stops reading from the peer. So
    a client that only sends gets TCP backpressure instead of growing our memory.
    """

    transport: Any  # ITCPTransport plus IConsumer and IPushProducer
    factory: EchoFactory

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.transport, True)
        self.setTimeout(self.factory.idle_timeout or None)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.transport.write(data)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)


class EchoFactory(protocol.ServerFactory):
    protocol = EchoProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    noisy = False

    def __init__(self, idle_timeout: float = DEFAULT_ECHO_IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout


class EchoDatagramProtocol(protocol.DatagramProtocol):
    """Sends every datagram back to where it came from, unless that could start a loop."""

    noisy = False
    transport: Any  # IUDPTransport once listening

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if addr[1] in LOOP_PORTS:
            return
        self.transport.write(datagram, addr)
