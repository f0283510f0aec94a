"""The IRC front-end's factory: the shared place that holds the connected IRC clients.

It builds an ``IRCProtocol`` per connection (or refuses one over the connection limits with
IRC's ``ERROR``), keeps the set of connected clients, counts them for the limits, and hands
them the bytes of each event, rendered once for all of them by ``IRCFormatter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol

from chatd.commands import CommandTable, build_command_table
from chatd.edge import admit
from chatd.irc.message import Message, serialize
from chatd.irc.protocol import (
    PING_INTERVAL,
    PING_TIMEOUT,
    REGISTRATION_TIMEOUT,
    IRCProtocol,
)
from chatd.irc.render import IRCFormatter, irc_server_name
from chatd.limits import ConnectionLimits
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.service import ChatService


class RefusedIRCProtocol(protocol.Protocol):
    """Tells a newcomer over a connection limit why, as IRC's ERROR, and closes."""

    transport: Any

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        self.transport.write(serialize(Message(
            "ERROR", (f"Closing Link: {self.reason}; try again later",))))
        self.transport.loseConnection()


class IRCFactory(protocol.ServerFactory):
    """The IRC front-end: builds an IRCProtocol per connection, holds the connected ones,
    counts them for the limits and broadcasts to them."""

    protocol = IRCProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    noisy = False

    def __init__(
        self,
        service: ChatService,
        policy: EdgePolicy | None = None,
        *,
        commands: CommandTable | None = None,
        rejections: RateLimitedLog | None = None,
        clock: IReactorTime | None = None,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        registration_timeout: float = REGISTRATION_TIMEOUT,
        limits: ConnectionLimits | None = None,
    ) -> None:
        """``limits``: counts shared with another front-end, so that --max-clients and
        --max-per-ip hold for line and IRC connections together."""
        self.service = service
        self.policy = policy if policy is not None else EdgePolicy()
        self.commands = commands if commands is not None else build_command_table(service)
        self.clock: IReactorTime = clock if clock is not None else service.reactor
        self.rejections = rejections if rejections is not None else RateLimitedLog(self.clock)
        self.limits = limits if limits is not None else ConnectionLimits(
            self.policy.max_clients, self.policy.max_per_ip, self.policy.ipv6_prefix
        )
        self.clients: set[IRCProtocol] = set()
        self.output_batch = OutputBatch()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.registration_timeout = registration_timeout
        self.created = self.clock.seconds()
        self._formatter = IRCFormatter(service.server_name)

    @property
    def formatter(self) -> IRCFormatter:
        """Follows --server-name through a reload."""
        if self._formatter.server != irc_server_name(self.service.server_name):
            self._formatter = IRCFormatter(self.service.server_name)
        return self._formatter

    def buildProtocol(self, addr: Any) -> Protocol | None:
        refusal = admit(self.limits, addr, self.rejections, "connection refused")
        if refusal is not None:
            return RefusedIRCProtocol(refusal)
        return cast(Protocol, super().buildProtocol(addr))

    def broadcast(self, data: bytes, clients: Sequence[Any]) -> None:
        """The same bytes to each of ``clients`` (IRCProtocols the service picked)."""
        for client in clients:
            client.edge.write(data)

    def policy_changed(self) -> None:
        policy = self.policy
        self.limits.reconfigure(policy.max_clients, policy.max_per_ip, policy.ipv6_prefix)
        for client in list(self.clients):
            client.edge.policy_changed()
