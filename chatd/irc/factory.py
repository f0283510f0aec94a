"""The IRC front-end's factory: the shared place that holds the connected IRC clients.

A ``FrontEndFactory`` (chatd/frontend.py) like the line front-end's: it builds an
``IRCProtocol`` per connection (or refuses one over the connection limits with IRC's
``ERROR``), keeps the set of connected clients, counts them for the limits, and hands them
the bytes of each event, rendered once for all of them by ``IRCFormatter``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol

from chatd.frontend import FrontEndFactory
from chatd.idle import Deadlines
from chatd.irc.message import Message, serialize
from chatd.irc.protocol import PING_INTERVAL, PING_TIMEOUT, REGISTRATION_TIMEOUT, IRCProtocol
from chatd.irc.render import IRCFormatter
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


class IRCFactory(FrontEndFactory):
    """The IRC front-end: every IRCProtocol, and the one formatter they share."""

    protocol = IRCProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable

    def __init__(
        self,
        service: ChatService,
        *args: Any,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        registration_timeout: float = REGISTRATION_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        """Takes FrontEndFactory's arguments; the timeouts are for tests to shorten."""
        super().__init__(service, *args, **kwargs)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.registration_timeout = registration_timeout
        # Every connection's PING and registration deadlines on two shared timers, as the
        # idle timeouts are: a DelayedCall each cost about 600 bytes per connection.
        self.ping_timers = Deadlines(self.clock, IRCProtocol.ping_due)
        self.registration_timers = Deadlines(self.clock, IRCProtocol.registration_due)
        self.created = self.clock.seconds()
        self.formatter: IRCFormatter = IRCFormatter(lambda: service.server_name)

    def refused(self, reason: str) -> RefusedIRCProtocol:
        return RefusedIRCProtocol(reason)
