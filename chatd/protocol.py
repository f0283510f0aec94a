"""The line protocol front-end: what ``nc`` and ``telnet`` users connect to.

A thin adapter: it frames bytes into lines, turns each line into clean text once, hands it
to the chat service (or to a slash command), and writes whatever the service sends back.
The limits that protect everyone else from one connection live here, at the edge: line
length, the flood gate, the send-buffer guard, the idle timeout and the connection counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import interfaces, protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chatd import commands, wire
from chatd.backpressure import DEFAULT_SEND_GRACE, SendBufferGuard
from chatd.flood import DEFAULT_FLOOD_QUEUE, FloodGate
from chatd.limits import ConnectionLimits, describe_peer
from chatd.output import ConnectionOutput, OutputBatch
from chatd.ratelog import RateLimitedLog
from chatd.service import ChatError, ChatService, EventFormatter, User
from chatd.text import TelnetFilter, decode_line

if TYPE_CHECKING:
    from chatd.moderator import Moderator

DEFAULT_MAX_LINE = 4096


class ChatProtocol(LineOnlyReceiver, TimeoutMixin):
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
        self._guard: SendBufferGuard | None = None
        self._gate: FloodGate | None = None
        self._cut_off = False  # aborted: nothing more is written
        self._close_deadline: IDelayedCall | None = None
        self.counted_address: object = None  # set by the factory when limits counted us
        self.user: User | None = None

    @property
    def service(self) -> ChatService:
        return self.factory.service

    # --- Connection life -------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.output = ConnectionOutput(self.transport, factory.output_batch)
        self.MAX_LENGTH = factory.max_line
        if interfaces.ITCPTransport.providedBy(self.transport):
            self.transport.setTcpKeepAlive(True)  # so dead peers are noticed eventually
            # chatd coalesces its own output per read (chatd/output.py); Nagle would only hold
            # a line back behind the peer's delayed ACK of the previous one.
            self.transport.setTcpNoDelay(True)
        if factory.send_buffer:
            self._guard = SendBufferGuard(
                factory.clock, factory.send_buffer, factory.send_grace,
                self._send_buffer_overrun,
            )
            self.transport.registerProducer(self._guard, True)
        if factory.flood_rate:
            self._gate = FloodGate(
                factory.clock, factory.flood_rate, factory.flood_burst, factory.flood_queue,
                self._line_released, self._flood_overflow, self._flood_persistent,
            )
        if factory.idle_timeout:
            self.setTimeout(factory.idle_timeout)
        try:
            self.user = self.service.connect(self, describe_peer(self.transport.getPeer()))
        except ChatError as e:  # refused (banned): one line saying why, then goodbye
            self.error(str(e))
            self._close()
            return
        self.notice(
            f"Welcome to {self.service.server_name}! You are {self.user.nick}. "
            "Type /help for a list of commands."
        )
        commands.welcome(self, self.user)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.setTimeout(None)
        if self._close_deadline is not None and self._close_deadline.active():
            self._close_deadline.cancel()
        if self._gate is not None:
            self._gate.stop()
        if self._guard is not None:
            self._guard.stop()
        if self.counted_address is not None and self.factory.limits is not None:
            self.factory.limits.release(self.counted_address)
            self.counted_address = None
        if self.user is not None:
            self.service.disconnect(self.user, self._quit_reason or "connection lost")
            self.user = None

    # --- Input -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        # Everything this read makes anyone receive goes out as one write per recipient.
        with self.factory.output_batch:
            self._handle_data(data)

    def _handle_data(self, data: bytes) -> None:
        for clean, reply in self._telnet.feed(data):
            self._handle_input(clean)
            if reply:  # a telnet answer, due once the input before it is handled
                self.send(reply)

    def _handle_input(self, data: bytes) -> None:
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
                if self._gate is not None:
                    self._gate.offer(line)
                else:
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
        if not text.strip() or user is None or self.transport.disconnecting:
            return
        if text.startswith("/") and not text.startswith("//"):
            commands.dispatch(self, user, text)
            return
        try:
            self.service.say(user, text[1:] if text.startswith("//") else text)
        except ChatError as e:
            self.error(str(e))

    # --- Limits ----------------------------------------------------------------------------

    def _line_released(self, line: bytes) -> None:
        """A line the flood gate held back is now due (from a timer, outside any read)."""
        with self.factory.output_batch:
            self.lineReceived(line)

    def _flood_overflow(self) -> None:
        gate = self._gate
        assert gate is not None
        self._log_cause("flooding: lines dropped", f"{gate.queue_limit} lines queued")
        self.error(
            f"you are sending faster than {self.factory.flood_rate:g} lines a second and "
            f"{gate.queue_limit} lines are waiting; further lines are dropped until they "
            "have gone out"
        )

    def _flood_persistent(self) -> None:
        self._log_cause("disconnected for flooding")
        self.error("disconnected for flooding")
        self._quit_reason = "flooding"
        self._close()

    def _send_buffer_overrun(self) -> None:
        self._log_cause(
            "disconnected: not reading its output",
            f"over {self.factory.send_buffer} bytes pending",
        )
        self._quit_reason = "not reading"
        self.abort()

    def timeoutConnection(self) -> None:
        self._log_cause("disconnected: idle", f"{self.factory.idle_timeout:g} s")
        self.notice(f"Idle for {self.factory.idle_timeout:g} seconds; disconnecting.")
        self._quit_reason = "idle timeout"
        self._close()

    def callLater(self, period: float, func: Any) -> IDelayedCall:
        """TimeoutMixin's clock: the factory's, so tests can use a fake one."""
        return self.factory.clock.callLater(period, func)

    def _log_cause(self, reason: str, detail: str = "") -> None:
        nick = self.user.nick if self.user is not None else "?"
        self.factory.rejections.event(
            reason, describe_peer(self.transport.getPeer()), f"{nick}; {detail}" if detail
            else nick,
        )

    def _close(self) -> None:
        """Closes after what is queued has been sent, or aborts if that takes too long.

        A registered producer can keep a transport open forever, so it goes first; nothing
        more is written once closing (see ``send``), so the backlog cannot grow meanwhile.
        """
        if self.transport.disconnecting or self._cut_off:
            return
        self.setTimeout(None)
        if self._gate is not None:
            self._gate.stop()
        if self._guard is not None:
            self._guard.stop()
            self._guard = None
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._close_deadline = self.factory.clock.callLater(
            self.factory.send_grace or DEFAULT_SEND_GRACE, self.abort
        )

    # --- Output: the ChatClient side -------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._cut_off or self.transport.disconnecting:
            return
        self.output.send(data)
        if self._guard is not None:
            self._guard.wrote(len(data))

    def notice(self, text: str) -> None:
        self.send(wire.notice(text, self.service.stamp_for(self.user)))

    def error(self, text: str) -> None:
        self.send(wire.error(text, self.service.stamp_for(self.user)))

    def quit(self, reason: str) -> None:
        self._quit_reason = reason
        self.notice("Goodbye.")
        self._close()

    def disconnect(self) -> None:
        self._close()

    def abort(self) -> None:
        self._cut_off = True
        if self._gate is not None:
            self._gate.stop()
        if self._guard is not None:
            self._guard.stop()
        self.transport.abortConnection()


class RefusedProtocol(protocol.Protocol):
    """Tells a newcomer over a connection limit why, in one line, and closes."""

    transport: Any

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def connectionMade(self) -> None:
        self.transport.write(wire.error(f"{self.reason}; try again later"))
        self.transport.loseConnection()


class ChatFactory(protocol.ServerFactory):
    """Builds a ChatProtocol per connection, all sharing one chat service.

    Every limit is off unless asked for (0 or None); the daemon's defaults are in tap.py.
    """

    protocol = ChatProtocol  # type: ignore[assignment]  # Twisted's stub wants a callable
    noisy = False  # one log line per connection comes from the chat service instead

    def __init__(
        self,
        service: ChatService,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        flood_rate: float = 0,
        flood_burst: int = 0,
        flood_queue: int = DEFAULT_FLOOD_QUEUE,
        send_buffer: int = 0,
        send_grace: float = DEFAULT_SEND_GRACE,
        idle_timeout: float = 0,
        limits: ConnectionLimits | None = None,
        rejections: RateLimitedLog | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.service = service
        self.max_line = max_line
        self.flood_rate = flood_rate
        self.flood_burst = flood_burst
        self.flood_queue = flood_queue
        self.send_buffer = send_buffer
        self.send_grace = send_grace
        self.idle_timeout = idle_timeout
        self.limits = limits
        self.clock: IReactorTime = clock if clock is not None else service.reactor
        self.rejections = rejections if rejections is not None else RateLimitedLog(self.clock)
        # Shared, so one read coalesces output across recipients.
        self.output_batch: OutputBatch = OutputBatch()
        self.moderator: Moderator | None = None  # operators and bans, when configured

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if self.limits is not None:
            refusal = self.limits.admit(addr)
            if refusal is not None:
                self.rejections.event("connection refused", describe_peer(addr), refusal)
                return RefusedProtocol(refusal)
        proto = super().buildProtocol(addr)
        assert isinstance(proto, ChatProtocol)
        if self.limits is not None:
            proto.counted_address = addr
        return proto

    # max-line applies at once to every connection; the other limits to connections made
    # after the reload (a live connection keeps the flood gate and guard it started with).
    reloadable_options = frozenset({
        "max-line", "flood-rate", "flood-burst", "flood-queue", "send-buffer", "send-grace",
        "idle-timeout", "max-clients", "max-per-ip",
    })

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.max_line = options["max-line"]
        self.flood_rate = options["flood-rate"]
        self.flood_burst = options["flood-burst"]
        self.flood_queue = options["flood-queue"]
        self.send_buffer = options["send-buffer"]
        self.send_grace = options["send-grace"]
        self.idle_timeout = options["idle-timeout"]
        if self.limits is not None:
            self.limits.reconfigure(options)
