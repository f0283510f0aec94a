"""The RFC 862 echo service, over TCP and UDP, with the guards an open echo port needs."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any, cast

from twisted.internet import abstract, interfaces, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.addresses import ip_address
from chatd.bucket import TokenBucket
from chatd.edge import Edge, admit
from chatd.idle import IdleTimers
from chatd.limits import ConnectionLimits
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.splice import PIPE_SIZE, SplicePump, can_splice
from chatd.stats import Traffic

# What a peer that sends and never reads makes us hold, at most. On a plain socket the
# echo goes through a pipe of that size (chatd/splice.py). Elsewhere (TLS) one read is at
# most ECHO_READ_SIZE bytes and reading pauses once more than that is unsent.
ECHO_MAX_BACKLOG = PIPE_SIZE
ECHO_READ_SIZE = ECHO_MAX_BACKLOG // 2
TLS_READ_SIZE = 16 * 1024  # the largest TLS record: see EchoProtocol.connectionMade
# Connections that stopped reading their echo may hold this much in all; past it, one more
# such connection is cut off instead of paused (1024 stalled connections at 64 KiB each).
DEFAULT_ECHO_TOTAL_BACKLOG = 1024 * ECHO_MAX_BACKLOG
# Connections echoed through a pipe at once; the rest echo through Python. A pipe is two
# descriptors more per connection: without a cap, idle echo connections could take three
# times their number from the descriptors the chat's connections need. 1,024 full-size
# pipes is also what the kernel gives one user before it shrinks new pipes to a page
# (/proc/sys/fs/pipe-user-pages-soft, 16,384 pages).
DEFAULT_MAX_PIPES = 1024
DEFAULT_ECHO_PORT = 7007
DEFAULT_ECHO_IDLE_TIMEOUT = 300.0
DEFAULT_UDP_RATE = 10.0  # datagrams per second from one source address
DEFAULT_UDP_TOTAL_RATE = 1000.0  # datagrams per second from everyone together
DEFAULT_UDP_MAX_SIZE = 1472  # the largest datagram one Ethernet frame carries unfragmented
MAX_TRACKED_SOURCES = 10_000

# Source ports of the classic small services (echo, discard, daytime, qotd, chargen, time),
# chatd's own default echo port, and 0, which no real client sends from. Answering them lets
# two such services ping-pong a datagram between each other forever. Every UDP echo port a
# daemon listens on is refused as a source too (EchoDatagramProtocol.own_ports).
LOOP_PORTS = frozenset({0, 7, 9, 13, 17, 19, 37, DEFAULT_ECHO_PORT})

# Sources no real client has: answering them could only reach many hosts at once or none.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_LIMITED_BROADCAST = ipaddress.ip_address("255.255.255.255")


@functools.lru_cache(maxsize=4096)  # parsing an address costs more than echoing a datagram
def is_bogus_source(host: str) -> bool:
    """True for broadcast, multicast, unspecified and 0.0.0.0/8 source addresses."""
    try:
        address = ip_address(host)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return (
            address in _THIS_NETWORK or address == _LIMITED_BROADCAST or address.is_multicast
        )
    return address.is_multicast or address.is_unspecified


@implementer(interfaces.IPushProducer)
class EchoProtocol(protocol.Protocol):
    """Sends back every byte received, unchanged, until the peer closes.

    On a plain TCP or UNIX socket the bytes never reach Python: a ``SplicePump`` moves them
    through a pipe of ECHO_MAX_BACKLOG bytes (chatd/splice.py), stops reading while the
    pipe holds what the peer has not taken, and tells us (``pipe_stalled``,
    ``pipe_drained``). Elsewhere (TLS), the protocol is the transport's producer: when the
    peer stops reading and more than ECHO_READ_SIZE bytes (beneath TLS, TLS_READ_SIZE
    bytes of ciphertext) are unsent, Twisted pauses us and we stop reading from the peer;
    once all is sent it resumes us. Either way a client that only sends gets TCP
    backpressure, we hold at most ECHO_MAX_BACKLOG bytes for it, and the factory bounds
    what all such stalled connections hold together. The connection counts, the idle
    timeout and closing are the edge's (chatd/edge.py), as for every front-end.
    """

    transport: Any  # ITCPTransport plus IConsumer and IPushProducer
    factory: EchoFactory
    edge: Edge
    counted_address: object = None  # the address the factory's limits counted
    pump: SplicePump | None = None  # the kernel's echo, on a plain socket

    def connectionMade(self) -> None:
        factory = self.factory
        self.edge = Edge(self, self.transport, factory.policy, factory.clock,
                         factory.rejections, factory.output_batch, release=self._release,
                         idle=factory.idle_timers)
        self.edge.activity()
        if factory.may_pipe() and can_splice(self.transport):
            try:
                self.pump = SplicePump(self.transport, self)
            except OSError:
                pass  # no descriptors for a pipe: this one echoes through Python
            else:
                factory.count_pipes(1)
                self.pump.install()
                return
        # Twisted reads at most bufferSize bytes per recv() and pauses its producer once more
        # than that is queued: one more read at most, so the backlog stays under twice it.
        self.transport.bufferSize = ECHO_READ_SIZE
        socket_transport = getattr(self.transport, "transport", None)
        if isinstance(socket_transport, abstract.FileDescriptor):
            # TLS: the socket's transport beneath reads and queues the ciphertext, and its
            # bufferSize is what counts. A read may also complete a record left over from
            # the last one, and records add their overhead: a third of the bound each.
            socket_transport.bufferSize = TLS_READ_SIZE
        self.transport.registerProducer(self, True)

    def _release(self) -> None:
        self.factory.limits.release(self.counted_address)

    def dataReceived(self, data: bytes) -> None:
        self.factory.traffic.bytes_received += len(data)
        self.edge.activity()
        self.edge.write(data)  # echo at once, not on the reactor's next turn

    def _stall(self) -> bool:
        """The peer does not read its echo: count what we hold for it against the total, or
        cut it off (False) if that would pass it."""
        if not self.factory.stall(self):
            self.edge.log_cause("echo connection cut off: total echo backlog reached")
            self.edge.abort()
            return False
        return True

    # --- SpliceOwner: the pump's reads, and its pipe stalled and drained -------------------

    def spliced(self, size: int) -> None:
        self.factory.traffic.bytes_received += size
        self.edge.activity()

    def pipe_stalled(self) -> bool:
        return self._stall()  # the pump stops reading itself

    def pipe_drained(self) -> None:
        self.factory.drained(self)

    # --- IPushProducer (TLS): the transport says when its buffer is full and when drained -

    def pauseProducing(self) -> None:
        if self._stall():
            self.transport.pauseProducing()  # stop reading: the peer's sends now wait in TCP

    def resumeProducing(self) -> None:
        self.factory.drained(self)
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.factory.drained(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.drained(self)
        if self.pump is not None:
            self.pump.close()  # every way a connection ends comes here: no pipe outlives it
            self.factory.count_pipes(-1)
        self.edge.connection_lost(reason)

    # --- ConnectionOwner -------------------------------------------------------------------

    def tell_error(self, text: str) -> None:
        pass  # whatever we sent would look like an echo

    def timed_out(self) -> None:
        self.edge.abort()

    def finished(self, reason: str) -> None:
        pass  # an echo connection leaves nothing behind


class EchoFactory(protocol.ServerFactory):
    protocol = EchoProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    noisy = False

    def __init__(
        self,
        policy: EdgePolicy | None = None,
        rejections: RateLimitedLog | None = None,
        clock: IReactorTime | None = None,
        total_backlog: int = DEFAULT_ECHO_TOTAL_BACKLOG,
        limits: ConnectionLimits | None = None,
        max_pipes: int = DEFAULT_MAX_PIPES,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock = clock
        self.policy = policy if policy is not None else EdgePolicy(
            max_line=0, idle_timeout=DEFAULT_ECHO_IDLE_TIMEOUT
        )
        self.rejections = rejections if rejections is not None else RateLimitedLog(clock)
        self.limits = limits if limits is not None else self.policy.connection_limits(clock)
        self.output_batch = OutputBatch()  # never active: every echo goes out at once
        self.total_backlog = total_backlog
        self.stalled: set[EchoProtocol] = set()  # paused: each holds up to ECHO_MAX_BACKLOG
        self.max_pipes = max_pipes
        self.pipes = 0  # connections with a pipe of their own (chatd/splice.py)
        self.traffic = Traffic()
        self.idle_timers = IdleTimers(clock)  # one timer for every connection's timeout

    def may_pipe(self) -> bool:
        """Whether one more connection may have a pipe: under max_pipes, and its two
        descriptors within the bound on connections (--max-clients), which counts pipes as
        it counts sockets: echo clients hold no more descriptors than without splice."""
        return self.pipes < self.max_pipes and self.limits.has_room(2)

    def count_pipes(self, change: int) -> None:
        """``change`` pipes made (or, negative, closed); the limits count their descriptors."""
        self.pipes += change
        self.limits.other_descriptors = 2 * self.pipes

    def stall(self, proto: EchoProtocol) -> bool:
        """Counts ``proto`` as holding a full backlog; False if that would pass the total."""
        if proto not in self.stalled:
            if (len(self.stalled) + 1) * ECHO_MAX_BACKLOG > self.total_backlog:
                return False
            self.stalled.add(proto)
        return True

    def drained(self, proto: EchoProtocol) -> None:
        self.stalled.discard(proto)

    def policy_changed(self) -> None:
        """New bounds for newcomers; live connections read the idle timeout from the policy
        each time they restart their timer (at their next read)."""
        policy = self.policy
        policy.reconfigure_limits(self.limits)

    def buildProtocol(self, addr: Any) -> Protocol | None:
        # Echo has no way to say why it refuses: whatever we sent would look like an echo.
        if admit(self.limits, addr, self.rejections, "echo connection refused") is not None:
            return None
        proto = cast(EchoProtocol, super().buildProtocol(addr))
        proto.counted_address = addr  # what admit counted: released once, when it goes
        return proto


class EchoDatagramProtocol(protocol.DatagramProtocol):
    """Sends datagrams back to where they came from, unless that could do harm.

    Dropped without an answer: datagrams larger than ``max_size``; those from a source port
    of a small service or of a chatd echo (a loop) or from a bogus source address (a
    reflection at a whole network); those over ``rate`` per second from one address or
    ``total_rate`` per second in all (0 turns either rate limit off). Each bucket allows one
    second's worth at once.

    ``own_ports`` is the daemon's set of UDP echo ports, shared by all its echo protocols:
    each adds the port it is bound to, so two of them cannot echo at each other either.
    """

    noisy = False
    transport: Any  # IUDPTransport once listening

    def __init__(
        self,
        clock: IReactorTime | None = None,
        rate: float = DEFAULT_UDP_RATE,
        total_rate: float = DEFAULT_UDP_TOTAL_RATE,
        max_size: int = DEFAULT_UDP_MAX_SIZE,
        rejections: RateLimitedLog | None = None,
        own_ports: set[int] | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        self.clock = clock
        self.rate = rate
        self.max_size = max_size
        self.rejections = rejections
        self.own_ports = own_ports if own_ports is not None else set()
        self.total = TokenBucket(total_rate, total_rate, clock.seconds()) if total_rate else None
        self.sources: dict[str, TokenBucket] = {}
        self._pruned_at = float("-inf")
        self.echoed = 0  # datagrams answered (the dropped ones are counted by rejections)

    def startProtocol(self) -> None:
        self.own_ports.add(self.transport.getHost().port)

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        host, port = addr[0], addr[1]
        if port in LOOP_PORTS or port in self.own_ports or is_bogus_source(host):
            self._dropped("udp echo: loop or bogus source", host, port)
            return
        if self.max_size and len(datagram) > self.max_size:
            self._dropped("udp echo: datagram too large", host, port)
            return
        now = self.clock.seconds()
        if self.rate and not self._source_allows(host, now):
            self._dropped("udp echo: source over its rate", host, port)
            return
        if self.total is not None and not self.total.take(now):
            self._dropped("udp echo: total rate reached", host, port)
            return
        self.transport.write(datagram, addr)
        self.echoed += 1

    def _source_allows(self, host: str, now: float) -> bool:
        bucket = self.sources.get(host)
        if bucket is None:
            if len(self.sources) >= MAX_TRACKED_SOURCES and not self._prune(now):
                return False  # too many sources at once: fail closed until some go quiet
            bucket = self.sources[host] = TokenBucket(self.rate, self.rate, now)
        return bucket.take(now)

    def _prune(self, now: float) -> bool:
        """Forgets sources whose buckets are full again (at most once a second)."""
        if now - self._pruned_at < 1.0:
            return False
        self._pruned_at = now
        self.sources = {h: b for h, b in self.sources.items() if not b.is_full(now)}
        return len(self.sources) < MAX_TRACKED_SOURCES

    def _dropped(self, kind: str, host: str, port: int) -> None:
        if self.rejections is not None:
            self.rejections.event(kind, f"{host}:{port}")
