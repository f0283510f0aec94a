"""What every front-end's factory is: the shared place that holds its connected clients.

The line, IRC and web front-ends each have a factory built on ``FrontEndFactory``. It
builds the front-end's protocols (or, over the connection limits, a protocol that says why
in the front-end's wire format), keeps the set of connected clients, starts each one's
``Edge``, counts them for the limits, and implements the broadcast: the chat service picks
the recipients of an event and renders it once per front-end; the factory hands those same
bytes to each of its clients. The service stays free of sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from chatd.commands import CommandTable, build_command_table
from chatd.edge import Edge, admit
from chatd.idle import IdleTimers
from chatd.limits import ConnectionLimits
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.service import ChatService, EventFormatter
from chatd.stats import Traffic


class Client(Protocol):
    """What every front-end's protocol has for its factory."""

    edge: Edge

    def policy_changed(self) -> None:
        """A reload changed the limits: a live connection takes them too."""


class Connection(Client, Protocol):
    """A protocol of a factory that counts its own connections (``admit``)."""

    counted_key: str | None  # what the limits counted it under: released once, when it goes


class FrontEndClients:
    """The shape every front-end's factory shares: the connected clients, each one's edge
    started and ended here, the broadcast to them, and reloads reaching them. Mixed into a
    Twisted factory: ``FrontEndFactory`` for the line and IRC front-ends, autobahn's
    WebSocket factory for the web's (chatd/web/socket.py)."""

    formatter: EventFormatter

    def __init__(
        self,
        service: ChatService,
        policy: EdgePolicy | None = None,
        *,
        commands: CommandTable | None = None,
        rejections: RateLimitedLog | None = None,
        clock: IReactorTime | None = None,
        limits: ConnectionLimits | None = None,
        output_batch: OutputBatch | None = None,
    ) -> None:
        """``limits``: counts shared with another front-end's factory, so that
        --max-clients and --max-per-ip hold for both together. ``output_batch``: the chat
        side's one batch (made in ``makeService``), shared with every other front-end and
        the Redis bus; a factory built alone makes its own."""
        self.service = service
        self.policy = policy if policy is not None else EdgePolicy()
        self.commands = commands if commands is not None else build_command_table(service)
        self.clock: IReactorTime = clock if clock is not None else service.reactor
        self.rejections = rejections if rejections is not None else RateLimitedLog(self.clock)
        self.limits = limits if limits is not None else self.policy.connection_limits(
            self.clock)
        self.clients: set[Any] = set()  # connected, admitted, not yet lost
        self.traffic = Traffic()  # bytes, for /stats and the metrics
        # Every connection's output joined per read (chatd/output.py), the speaker's lines
        # held with it (chatd/fanout.py). makeService hands every front-end of the service
        # the same one, so that a read on any of them is one write to each recipient on all.
        self.output_batch = output_batch if output_batch is not None else OutputBatch(
            service.chat_lines)
        # One timer for every connection's idle timeout, not a DelayedCall each.
        self.idle_timers = IdleTimers(self.clock)

    def start(self, proto: Any, release: Callable[[], None] | None = None) -> Edge:
        """The edge of a connection just made, every guard running; the client is held
        until ``lost``. ``proto`` is its edge's owner (and line owner). ``release``: what
        frees a count taken elsewhere (the web site's) when the connection goes."""
        edge = Edge(
            proto, proto.transport, self.policy, self.clock, self.rejections,
            self.output_batch, release=release, lines=proto, traffic=self.traffic,
            idle=self.idle_timers,
        )
        edge.start_send_buffer_guard()
        edge.activity()
        self.clients.add(proto)
        return edge

    def lost(self, proto: Client, reason: Failure) -> None:
        self.clients.discard(proto)
        proto.edge.connection_lost(reason)

    def broadcast(self, data: bytes, clients: Sequence[Any]) -> None:
        """The same bytes to each of ``clients`` (this front-end's, picked by the service)."""
        for client in clients:
            client.edge.write(data)

    def policy_changed(self) -> None:
        """After a reload: new bounds for newcomers, and the new limits for live clients."""
        self.policy.reconfigure_limits(self.limits)
        for client in list(self.clients):
            client.policy_changed()


class FrontEndFactory(FrontEndClients, protocol.ServerFactory):
    """Builds one front-end's protocols, holds the connected ones, counts them for the
    limits and broadcasts to them. Every limit is off unless asked for (0)."""

    noisy = False  # one log line per connection comes from the chat service instead

    def refused(self, reason: str) -> protocol.Protocol:
        """A protocol that tells a newcomer over the limits why, and closes."""
        raise NotImplementedError

    def buildProtocol(self, addr: Any) -> protocol.Protocol | None:
        refusal = admit(self.limits, addr, self.rejections, "connection refused")
        if refusal is not None:
            return self.refused(refusal)
        proto = cast(Connection, super().buildProtocol(addr))
        # The count's key, not the address: the limits keep nothing per connection, and
        # the IPv4Address object (96 bytes) is not kept alive for it.
        proto.counted_key = self.limits.counted_as(addr)
        return cast(protocol.Protocol, proto)

    def lost(self, proto: Client, reason: Failure) -> None:
        # The admission count is released here, once, rather than by a closure per edge.
        self.limits.release_counted(cast(Connection, proto).counted_key)
        super().lost(proto, reason)
