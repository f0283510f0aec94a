"""The line front-end: what ``nc`` and ``telnet`` users connect to.

``ChatProtocol`` is a ``LineReceiver``: Twisted's machinery splits lines (``delimiter``,
``MAX_LENGTH`` from --max-line, ``lineLengthExceeded``) and holds later lines back while
the connection is paused (``pauseProducing``/``resumeProducing``). In front of it sits a
small pre-filter (chatd/framing.py: telnet negotiation out, every line ending made LF) that
feeds it in bounded slices, so a big paste costs linear time. Every guard (flood gate,
send buffer, idle timeout, connection counts, close and abort) is the connection's
``Edge`` (chatd/edge.py); commands come from the daemon's one ``CommandTable``.

``ChatFactory`` is the shared place that holds the connected line clients: it builds the
protocols, keeps the set of them, counts them for the connection limits, and implements the
broadcast to them (the chat service picks the recipients and renders each event once;
the factory hands those bytes to its clients). An IRC or WebSocket front-end copies this
pattern with its own protocol, factory and formatter (docs/architecture.md).
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, ClassVar

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd import wire
from chatd.commands import greet, run_line
from chatd.edge import TOO_LONG, Edge, Reply
from chatd.errors import ChatError
from chatd.framing import SLICE, LineInput
from chatd.frontend import FrontEndFactory
from chatd.policy import DEFAULT_MAX_LINE
from chatd.service import EventFormatter, User
from chatd.session import OneRoomSession, Replies
from chatd.text import decode_line

__all__ = ["DEFAULT_MAX_LINE", "ChatFactory", "ChatProtocol", "RefusedProtocol"]

_NO_LIMIT = sys.maxsize


@implementer(IHalfCloseableProtocol)
class ChatProtocol(OneRoomSession, LineReceiver):
    """One chat connection: a ``ChatClient`` for the service, a ``Session`` for commands
    (both from ``OneRoomSession``), and the ``EdgeOwner`` of its edge."""

    delimiter = b"\n"  # the pre-filter turns CRLF and a lone CR into LF
    replies: ClassVar[Replies] = wire
    factory: ChatFactory
    transport: Any  # TCP, TLS or UNIX: ITCPTransport plus IConsumer, which no interface names
    edge: Edge
    counted_key: str | None = None  # the key the factory's limits counted it under
    frontend: ChatFactory  # for the service: who broadcasts to this client

    def __init__(self) -> None:
        self._input: LineInput | None = None  # from the first read (see ``input``)
        # Filtered input not yet fed to LineReceiver; a deque from the first read on (an
        # idle connection does without its 760 bytes).
        self._held: deque[bytes | Reply] | tuple[()] = ()
        self._offset = 0  # how much of _held[0] has been fed
        self._discarding = False  # dropping the rest of an over-long line
        self._reparse = False  # lineLengthExceeded put the rest of the buffer back
        self._pumping = False
        self._swallowed = 0  # the telnet filter's discarded count, as last seen
        self._quit_reason: str | None = None
        self.user: User | None = None

    @property
    def input(self) -> LineInput:
        """The pre-filter, made on the first read: an idle connection does without its
        telnet state (320 bytes)."""
        if self._input is None:
            self._input = LineInput()
        return self._input

    # --- Connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.frontend = factory  # read for every recipient of every line: a plain attribute
        self.MAX_LENGTH = factory.policy.max_line or _NO_LIMIT
        self.edge = factory.start(self)
        try:
            self.user = self.service.register(self, self.edge.peer)
        except ChatError as e:  # refused (banned): one line saying why, then goodbye
            factory.rejections.event("connection refused: banned", self.edge.peer)
            self.error(str(e))
            self.edge.close()
            return
        self.edge.nick = self.user.nick
        # The greeting (and the join notice the newcomer gets) as one write, not one a line.
        with factory.output_batch:
            self.service.join(self.user, self.service.default_room)
            greet(factory.commands, self, self.user)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.lost(self, reason)

    def readConnectionLost(self) -> None:
        """The peer half-closed (``nc -N``): what it sent still goes out, then we close."""
        self.edge.input_ended()

    def writeConnectionLost(self) -> None:
        pass

    def policy_changed(self) -> None:
        """A reload changed the limits: a live connection takes them too."""
        self.MAX_LENGTH = self.factory.policy.max_line or _NO_LIMIT
        self.edge.policy_changed()

    # --- Input: pre-filter, then LineReceiver ----------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if data:
            self.factory.traffic.bytes_received += len(data)
            self.edge.activity()
            held = self._held
            if not isinstance(held, deque):
                held = self._held = deque()
            pre = self.input
            for clean, reply in pre.feed(data):
                if clean:
                    held.append(clean)
                if reply:
                    held.append(Reply(reply))
            discarded = pre.discarded
            if discarded != self._swallowed:
                self.edge.swallowed(discarded - self._swallowed)
                self._swallowed = discarded
        # Everything this read makes anyone receive goes out as one write per recipient.
        with self.factory.output_batch:
            self._pump()

    def _pump(self) -> None:
        """Feeds held input to LineReceiver a slice at a time, until paused or done."""
        if self._pumping:
            return  # a resume from inside a line: the running loop carries on
        self._pumping = True
        try:
            if self._buffer and not self.paused:
                self._feed(b"")  # lines LineReceiver kept while the connection was paused
            held = self._held
            while held and not self.paused and not self.edge.closing:
                head = held[0]
                if isinstance(head, Reply):
                    held.popleft()
                    self.edge.offer(head)
                    continue
                if self._offset == 0 and len(head) <= SLICE:
                    chunk = head
                    held.popleft()
                else:
                    chunk = head[self._offset:self._offset + SLICE]
                    self._offset += SLICE
                    if self._offset >= len(head):
                        held.popleft()
                        self._offset = 0
                if self._discarding:
                    end = chunk.find(self.delimiter)
                    self.edge.swallowed(len(chunk) if end < 0 else end)
                    if end < 0:
                        continue
                    chunk, self._discarding = chunk[end + 1:], False
                self._feed(chunk)
        finally:
            self._pumping = False
        self.edge.settle()

    def _feed(self, chunk: bytes) -> None:
        LineReceiver.dataReceived(self, chunk)
        while self._reparse and not self.paused:
            self._reparse = False
            LineReceiver.dataReceived(self, b"")

    def lineLengthExceeded(self, line: bytes) -> None:
        """Twisted's default closes the connection and throws away the rest of the buffer;
        a chat peer that pasted one line too long keeps both: the line is refused (it counts
        against the flood limit), and whatever follows its end is parsed as usual."""
        self.edge.strike()
        self.edge.offer(TOO_LONG)
        end = line.find(self.delimiter)
        if end >= 0:
            self._buffer, self._reparse = line[end + 1:], True
        else:  # the line goes on: drop it up to its end, which a later read will bring
            self._discarding = True
            self.edge.swallowed(len(line))

    def lineReceived(self, line: bytes) -> None:
        if line:  # an empty line, or the second half of a CRLF split across reads
            self.edge.offer(line)

    # --- EdgeOwner -------------------------------------------------------------------------

    def handle_line(self, line: bytes) -> defer.Deferred[Any] | None:
        """A line the flood gate let through: a command, or chat for the current room."""
        text = decode_line(line)
        user = self.user
        if not text.strip() or user is None:
            return None
        return run_line(self.factory.commands, self, user, text)

    def line_too_long(self) -> None:
        self.error(f"line too long (the limit is {self.MAX_LENGTH} bytes); it was not sent")

    def pause_input(self) -> None:
        self.pauseProducing()

    def resume_input(self) -> None:
        self.resumeProducing()  # LineReceiver's: calls dataReceived(b""), which pumps

    def input_pending(self) -> bool:
        return bool(self._held) or self.delimiter in self._buffer

class RefusedProtocol(protocol.Protocol):
    """Tells a newcomer over a connection limit why, in one line, and closes."""

    transport: Any

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        self.transport.write(wire.error(f"{self.reason}; try again later"))
        self.transport.loseConnection()


class ChatFactory(FrontEndFactory):
    """The line front-end: builds a ChatProtocol per connection, holds the connected ones,
    counts them for the limits and broadcasts to them (chatd/frontend.py).

    Every limit is off unless asked for (0); the daemon's defaults are in tap.py.
    """

    protocol = ChatProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    formatter: EventFormatter = wire.LINE_FORMATTER

    def refused(self, reason: str) -> RefusedProtocol:
        return RefusedProtocol(reason)
