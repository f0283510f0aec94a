"""The line protocol front-end: what ``nc`` and ``telnet`` users connect to.

A thin adapter: it frames bytes into lines, turns each line into clean text once, hands it
to the chat service (or to a slash command), and writes whatever the service sends back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import interfaces, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from chatd import commands, wire
from chatd.output import ConnectionOutput, OutputBatch
from chatd.service import ChatError, ChatService, EventFormatter, User
from chatd.text import TelnetFilter, decode_line

if TYPE_CHECKING:
    from chatd.moderator import Moderator

DEFAULT_MAX_LINE = 4096


def describe_peer(address: object) -> str:
    """A peer address for logs: ``host:port`` for IP, the class name for anything else."""
    if isinstance(address, IPv4Address | IPv6Address):
        return f"{address.host}:{address.port}"
    return type(address).__name__


class ChatProtocol(LineOnlyReceiver):
    """One chat connection.

    Twisted's line receivers split on one fixed delimiter; chat clients end lines with LF
    (``nc``), CRLF (telnet) or a lone CR (some raw clients), so ``dataReceived`` does its
    own splitting. A CRLF that arrives split across two reads becomes a line and an empty
    line, and empty lines are ignored, so no state is needed for it.
    """

    delimiter = wire.EOL.encode()
    formatter: EventFormatter = wire.LINE_FORMATTER
    factory: ChatFactory
    # TCP, TLS or UNIX: ITCPTransport plus IConsumer, which no single interface names.
    transport: Any

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False  # dropping the rest of an over-long line
        self._telnet = TelnetFilter()
        self._quit_reason: str | None = None
        self.user: User | None = None

    @property
    def service(self) -> ChatService:
        return self.factory.service

    # --- Connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.output = ConnectionOutput(self.transport, self.factory.output_batch)
        self.MAX_LENGTH = self.factory.max_line
        if interfaces.ITCPTransport.providedBy(self.transport):
            self.transport.setTcpKeepAlive(True)  # so dead peers are noticed eventually
        try:
            self.user = self.service.connect(self, describe_peer(self.transport.getPeer()))
        except ChatError as e:  # refused (banned): one line saying why, then goodbye
            self.error(str(e))
            self.transport.loseConnection()
            return
        self.notice(
            f"Welcome to {self.service.server_name}! You are {self.user.nick}. "
            "Type /help for a list of commands."
        )

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.user is not None:
            self.service.disconnect(self.user, self._quit_reason or "connection lost")
            self.user = None

    # --- Input -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        # Everything this read makes anyone receive goes out as one write per recipient.
        with self.factory.output_batch:
            self._handle_data(data)

    def _handle_data(self, data: bytes) -> None:
        data = self._telnet.feed(data)
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._buffer:
            data = self._buffer + data
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        limit = self.MAX_LENGTH = self.factory.max_line  # a SIGHUP may have changed it
        for line in lines:
            if self.transport.disconnecting or self.user is None:
                return
            if self._discarding:  # the end of a line already reported as too long
                self._discarding = False
            elif limit and len(line) > limit:
                self.lineLengthExceeded(line)
            elif line:
                self.lineReceived(line)
        if limit and len(self._buffer) > limit:
            # Never hold more than about max-line bytes while waiting for a newline.
            self._buffer = b""
            if not self._discarding:
                self._discarding = True
                self.lineLengthExceeded(b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        """Drops the line and tells the sender; unlike Twisted's default, stays connected."""
        self.error(f"line too long (the limit is {self.MAX_LENGTH} bytes); it was not sent")

    def lineReceived(self, line: bytes) -> None:
        text = decode_line(line)
        user = self.user
        if not text.strip() or user is None:
            return
        if text.startswith("/") and not text.startswith("//"):
            commands.dispatch(self, user, text)
            return
        try:
            self.service.say(user, text[1:] if text.startswith("//") else text)
        except ChatError as e:
            self.error(str(e))

    # --- Output: the ChatClient side -------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.output.send(data)

    def notice(self, text: str) -> None:
        self.send(wire.notice(text))

    def error(self, text: str) -> None:
        self.send(wire.error(text))

    def quit(self, reason: str) -> None:
        self._quit_reason = reason
        self.notice("Goodbye.")
        self.transport.loseConnection()

    def disconnect(self) -> None:
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()


class ChatFactory(protocol.ServerFactory):
    """Builds a ChatProtocol per connection, all sharing one chat service."""

    protocol = ChatProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    noisy = False  # one log line per connection comes from the chat service instead

    def __init__(self, service: ChatService, max_line: int = DEFAULT_MAX_LINE) -> None:
        self.service = service
        self.max_line = max_line
        self.output_batch = OutputBatch()  # shared, so one read coalesces across recipients
        self.moderator: Moderator | None = None  # operators and bans, when configured

    reloadable_options = frozenset({"max-line"})

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.max_line = options["max-line"]
