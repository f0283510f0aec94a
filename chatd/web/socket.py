"""The web front-end's socket: a WebSocket whose text messages are lines in, JSON out.

``ChatSocketProtocol`` is autobahn's WebSocket server protocol; autobahn does the
handshake, the frame parsing, ping/pong, the close handshake and the UTF-8 check of what
comes in. Everything else is chatd's, exactly as for an nc user: one ``Edge`` per connection
(flood gate, send buffer, idle timeout, counting), the daemon's one command table, and the
chat service. Each incoming text message is one line.

Outgoing messages are written by chatd, not by autobahn's ``sendMessage``: an event is
rendered as JSON and framed once (``FramedJsonFormatter``), and the same frame bytes go to
every web recipient through their edges, which count every byte against --send-buffer.
Server frames are never masked or compressed, so a frame is the same for every peer.

``ChatSocketFactory`` is this front-end's shared place, as ``ChatFactory`` is the line
front-end's: it builds the protocols, holds the connected ones and broadcasts to them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer, interfaces
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from chatd.addresses import describe_peer
from chatd.commands import CommandTable, greet, run_line
from chatd.edge import TOO_LONG, Edge
from chatd.errors import ChatError
from chatd.events import Event
from chatd.frontend import FrontEndClients
from chatd.history import HistoryEntry
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.service import ChatService, EventFormatter, User
from chatd.session import OneRoomSession, Replies
from chatd.text import decode_line
from chatd.web import json_wire
from chatd.web.origin import Origin, origin_allowed

# A message over --max-line is refused with an error and the connection stays, as for an
# nc user; one this many times over it (and at least HARD_MINIMUM) is never read whole:
# autobahn closes the connection with 1009 (too big) once that much has arrived.
HARD_FACTOR = 4
HARD_MINIMUM = 64 * 1024
HANDSHAKE_TIMEOUT = 10.0  # seconds from connect to a finished WebSocket handshake

_TEXT_FRAME = 0x81  # FIN, opcode 1 (text)
_CLOSE_FRAME = 0x88  # FIN, opcode 8 (close)
CLOSE_NORMAL = 1000  # RFC 6455 section 7.4.1: the purpose is fulfilled
QUIT_REASON = "quit"  # the close frame's reason after /quit (the page shows it)


def frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _TEXT_FRAME, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _TEXT_FRAME, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FRAME, 127, size)
    return header + payload


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked close frame (RFC 6455 section 5.5.1): the status code, then the reason
    in UTF-8 (a control frame's payload is at most 125 bytes)."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")
    assert len(payload) <= 125, reason
    return struct.pack("!BB", _CLOSE_FRAME, len(payload)) + payload


class FramedJsonFormatter:
    """The socket's ``EventFormatter``: an event as a JSON text frame, ready for the wire."""

    __slots__ = ()

    def format(self, event: Event, at: float | None = None) -> bytes:
        return frame(json_wire.JSON_FORMATTER.format(event, at))


FRAMED_JSON_FORMATTER = FramedJsonFormatter()


def hard_limit(max_line: int) -> int:
    """The size past which autobahn drops a message (and the connection) unread."""
    return max(max_line * HARD_FACTOR, HARD_MINIMUM) if max_line else 0


class FramedReplies:
    """The socket's ``Replies``: json_wire's messages, each as a text frame."""

    __slots__ = ()

    def notice(self, text: str, at: float | None = None) -> bytes:
        return frame(json_wire.notice(text, at))

    def error(self, text: str, at: float | None = None) -> bytes:
        return frame(json_wire.error(text, at))

    def history_line(self, entry: HistoryEntry) -> bytes:
        return frame(json_wire.history_line(entry))

    def private_sent(self, nick: str, text: str, at: float | None = None) -> bytes:
        return frame(json_wire.private_sent(nick, text, at))


# (misc: autobahn's own two base classes disagree on two private attributes' types)
class ChatSocketProtocol(OneRoomSession, WebSocketServerProtocol):  # type: ignore[misc]
    """One browser tab (or bot): a ``ChatClient`` and a command ``Session`` (both from
    ``OneRoomSession``), and the owner of its edge."""

    replies: ClassVar[Replies] = FramedReplies()

    factory: ChatSocketFactory
    transport: Any
    edge: Edge  # from connectionMade on
    frontend: ChatSocketFactory  # for the service: who broadcasts to this client

    def __init__(self) -> None:
        super().__init__()
        self.user: User | None = None
        self.release: Callable[[], None] | None = None  # the web site's count, handed over
        self._quit_reason: str | None = None
        self._shown: tuple[str, str] | None = None  # the (nick, room) the page was last told

    # --- Connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.frontend = self.factory  # read for every recipient of every line: a plain attribute
        # Counted by the web site per HTTP connection, which handed its release over.
        self.edge = self.factory.start(self, release=self.release)

    def onConnect(self, request: ConnectionRequest) -> None:
        """The handshake: a foreign page's socket is refused before it opens."""
        origin = request.headers.get("origin")
        secure = interfaces.ISSLTransport.providedBy(self.transport)
        host = request.headers.get("host", "")  # as sent: request.host drops the port
        if not origin_allowed(origin, host, secure, self.factory.origins):
            self.edge.log_cause("web socket refused", f"origin {origin!r}")
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")

    def onOpen(self) -> None:
        edge = self.edge
        edge.activity()
        try:
            self.user = self.service.register(self, describe_peer(self.transport.getPeer()))
        except ChatError as e:  # refused (banned): one message saying why, then goodbye
            self.error(str(e))
            edge.close()
            return
        edge.nick = self.user.nick
        with self.factory.output_batch:
            self.service.join(self.user, self.service.default_room)
            greet(self.factory.commands, self, self.user)
            self._show_state(rooms=True)

    def dataReceived(self, data: bytes) -> None:
        self.factory.traffic.bytes_received += len(data)
        # Everything this read makes anyone receive goes out as one write per recipient.
        with self.factory.output_batch:
            super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.lost(self, reason)

    def quit(self, reason: str) -> None:
        """/quit: the goodbye, then a close frame saying 1000 (normal) queued behind it on
        the edge, then the edge closes once both are sent: the page sees a clean close,
        not a dropped connection (1006)."""
        self._quit_reason = reason
        self.notice("Goodbye.")
        self.edge.write(close_frame(CLOSE_NORMAL, QUIT_REASON))
        # autobahn takes the page's answering close frame as the end of the handshake we
        # started, instead of answering it with a close frame of its own.
        autobahn: Any = self  # (its annotations have these two as None for ever)
        autobahn.state, autobahn.closedByMe = self.STATE_CLOSING, True
        autobahn.localCloseCode, autobahn.localCloseReason = CLOSE_NORMAL, QUIT_REASON.encode()
        self.edge.close()

    def policy_changed(self) -> None:
        """A reload changed the limits: a live connection takes them too."""
        self.maxMessagePayloadSize = self.maxFramePayloadSize = hard_limit(
            self.factory.policy.max_line)
        self.edge.policy_changed()

    # --- Input -----------------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        edge = self.edge
        if self.user is None:
            return
        edge.activity()
        max_line = self.factory.policy.max_line
        if isBinary:
            edge.strike()
            self.error("binary messages are not accepted; send each line as a text message")
        elif max_line and len(payload) > max_line:
            edge.strike()
            edge.offer(TOO_LONG)
        else:
            edge.offer(payload)

    def handle_line(self, line: bytes) -> defer.Deferred[Any] | None:
        """A line the flood gate let through: a command, or chat for the current room."""
        text = decode_line(line)
        user = self.user
        if not text.strip() or user is None:
            return None
        done = run_line(self.factory.commands, self, user, text)
        if text.startswith("/") and not text.startswith("//"):
            name = text[1:].partition(" ")[0].lower()
            self._show_state(rooms=name in ("join", "rooms"), members=name == "who")
        return done

    def _show_state(self, rooms: bool = False, members: bool = False) -> None:
        """Tells the page who and where it is when that changed (and the lists it asked
        for): the page needs no parsing of notices to draw its room and people lists."""
        user = self.user
        if user is None or not user.rooms or self.edge.closing:
            return
        room = user.room
        shown = (user.nick, room.name)
        moved = self._shown is None or self._shown[1] != room.name
        if shown != self._shown:
            self._shown = shown
            self.edge.write(frame(json_wire.state(user.nick, room.name,
                                                  self.service.server_name)))
        if moved or members:
            people = self.service.who(room)
            self.edge.write(frame(json_wire.members(
                room.name, [(u.nick, u.away is not None) for u in people])))
        if moved or rooms:
            self.edge.write(frame(json_wire.rooms(
                (r.name, r.size, r.topic or None) for r in self.service.rooms_by_name())))

    # --- Edge owner ------------------------------------------------------------------------

    def line_too_long(self) -> None:
        self.error(f"message too long (the limit is {self.factory.policy.max_line} bytes); "
                   "it was not sent")

    def pause_input(self) -> None:
        self.transport.pauseProducing()

    def resume_input(self) -> None:
        if not self.edge.closing:
            self.transport.resumeProducing()

    def input_pending(self) -> bool:
        return False  # autobahn hands over whole messages; a socket never half-closes

class ChatSocketFactory(FrontEndClients, WebSocketServerFactory):
    """The web front-end: builds a ChatSocketProtocol per socket; holds the connected ones
    and broadcasts to them as every front-end does (``FrontEndClients``). Connections are
    counted by the web site, which hands each socket its count (``pending_release``) as
    the HTTP connection becomes a socket."""

    protocol = ChatSocketProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    formatter: EventFormatter = FRAMED_JSON_FORMATTER

    def __init__(
        self,
        service: ChatService,
        policy: EdgePolicy | None = None,
        *,
        commands: CommandTable | None = None,
        origins: Iterable[Origin] = (),
        rejections: RateLimitedLog | None = None,
        clock: IReactorTime | None = None,
        output_batch: OutputBatch | None = None,
    ) -> None:
        WebSocketServerFactory.__init__(self, server="chatd")
        # Its limits are counted by the web site, per HTTP connection (chatd/web/site.py).
        FrontEndClients.__init__(self, service, policy, commands=commands,
                                 rejections=rejections, clock=clock,
                                 output_batch=output_batch)
        self.origins = frozenset(origins)
        self.pending_release: Callable[[], None] | None = None
        self._set_options()

    def _set_options(self) -> None:
        size = hard_limit(self.policy.max_line)
        self.setProtocolOptions(
            maxMessagePayloadSize=size, maxFramePayloadSize=size,
            openHandshakeTimeout=HANDSHAKE_TIMEOUT,
            # A GET of /ws without an upgrade gets a plain refusal, not a status page.
            webStatus=False,
            # A message over the hard limit is answered with a close frame saying 1009
            # (too big), so a bot learns why; the peer gets a second to close in turn.
            failByDrop=False, closeHandshakeTimeout=1.0,
        )

    def buildProtocol(self, addr: Any) -> Protocol | None:
        proto = super().buildProtocol(addr)
        assert isinstance(proto, ChatSocketProtocol)
        proto.release, self.pending_release = self.pending_release, None
        return proto

    def policy_changed(self) -> None:
        """After a reload: autobahn's size bounds for newcomers too."""
        self._set_options()
        super().policy_changed()


class ChatSocketResource(WebSocketResource):
    """``/ws``: autobahn's resource, which turns the HTTP connection into a socket, plus
    what that connection must hand over first: its producer (the edge's send-buffer guard
    replaces the HTTP channel) and its count against the connection limits (the socket
    releases it when it closes). The channel's idle timeout needs nothing: Twisted stops
    it while a request is handled, and this request never finishes."""

    def __init__(self, factory: ChatSocketFactory) -> None:
        super().__init__(factory)
        self.factory = factory

    def render(self, request: Any) -> Any:
        channel = request.channel
        if channel.transport is not None:
            channel.transport.unregisterProducer()
            take = getattr(channel, "take_release", None)
            self.factory.pending_release = take() if take is not None else None
        try:
            return super().render(request)
        finally:
            self.factory.pending_release = None
