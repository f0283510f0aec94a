"""The edge: the one guard every connection passes through, whatever its front-end.

A front-end protocol (line, echo; IRC and WebSocket to come) frames bytes and renders
events; everything that protects the daemon from one connection is here, used by
composition: one ``Edge`` per connection.

- admission: ``admit`` counts a newcomer against the connection limits (and logs a
  refusal), ``Edge.connection_lost`` releases the count, exactly once;
- the flood gate: lines go through ``offer``; the gate releases them at the flood rate and
  keeps them strictly in order, also while an asynchronous step runs (``hold_until``) or
  while the peer has not read its output;
- bad input: over-long lines and swallowed garbage are counted (``strike``), and a peer
  that keeps sending them is disconnected;
- output: ``write`` batches per read (chatd/output.py) and counts every byte queued for the
  peer, in the batch and in the transport, against ``--send-buffer``;
- the idle timeout, a graceful ``close`` with a deadline, and ``abort``;
- one rate-limited log line for every refusal and every disconnection for cause.

Every limit is read from the front-end family's ``EdgePolicy`` (chatd/policy.py), so a
reload reaches live connections: ``policy_changed`` applies what a guard holds a copy of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer, interfaces
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from chatd.addresses import describe_peer
from chatd.backpressure import DEFAULT_SEND_GRACE, SendBufferGuard
from chatd.bucket import TokenBucket
from chatd.flood import FloodGate
from chatd.idle import IdleTimers
from chatd.limits import ConnectionLimits
from chatd.output import ConnectionOutput, OutputBatch, queued_in_transport, unsent_in_kernel
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.stats import Traffic

# A peer may send this many over-long lines (or STRIKE_BYTES of swallowed garbage each) at
# once, and one more every BAD_INPUT_INTERVAL seconds; past that it is disconnected.
BAD_INPUT_BURST = 20
BAD_INPUT_INTERVAL = 5.0
STRIKE_BYTES = 64 * 1024
KERNEL_REFRESH = 64 * 1024


class ConnectionOwner(Protocol):
    """What every front-end protocol gives its edge."""

    def tell_error(self, text: str) -> None:
        """Tells the peer why something happened to it, in its wire format (if it can)."""

    def timed_out(self) -> None:
        """The peer was silent for the idle timeout."""

    def finished(self, reason: str) -> None:
        """The connection is over and its queued lines are done with: forget it."""


class LineOwner(ConnectionOwner, Protocol):
    """What a front-end that receives lines (or messages) gives its edge besides."""

    def handle_line(self, line: bytes) -> defer.Deferred[Any] | None:
        """Handles one line released by the flood gate; a Deferred holds the next ones."""

    def line_too_long(self) -> None:
        """Tells the peer its line was over --max-line and was not sent."""

    def pause_input(self) -> None:
        """Stops handing lines to the edge (and reading from the peer)."""

    def resume_input(self) -> None:
        """Hands lines to the edge again."""

    def input_pending(self) -> bool:
        """Whether the front-end still holds input it has not offered."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes for the peer, kept in line with its input (a telnet answer, say)."""

    data: bytes


class _TooLong:
    """The place of an over-long line in the queue: it costs a line of the flood limit."""


TOO_LONG = _TooLong()
Item = bytes | Reply | _TooLong


def admit(
    limits: ConnectionLimits, address: object, log: RateLimitedLog, kind: str
) -> str | None:
    """Counts a newcomer, or logs and returns why it is refused."""
    refusal = limits.admit(address)
    if refusal is not None:
        log.event(kind, describe_peer(address), refusal)
    return refusal


_NO_HOLDS: frozenset[object] = frozenset()  # an edge's holds until its first (most never)


class _EdgeGuard(SendBufferGuard):
    """An edge's send-buffer guard: it asks the edge itself (for the backlog, the overrun
    and the drain) instead of holding three closures over it, 330 bytes per connection."""

    __slots__ = ("edge",)

    def __init__(self, edge: Edge) -> None:
        super().__init__(edge.clock, edge.policy.send_buffer, edge.policy.send_grace, _unused)
        self.edge = edge

    def measure(self, exact: bool = False) -> int:
        return self.edge._backlog(exact)

    def _overrun(self) -> None:
        self.stop()
        self.edge._send_buffer_overrun()

    def _drained(self) -> None:
        self.edge.release("drain")


def _unused() -> None:
    raise AssertionError("an edge's guard calls the edge")


class Edge:
    """One connection's guard.

    Slotted, and what most connections never use is made on first use: the flood gate
    (the first line offered), the bad-input bucket (the first strike), the hold set (the
    first hold). An idle connection costs the edge, its output and its guard (issue 16).
    """

    __slots__ = (
        "_bad_input", "_close_deadline", "_cut_off", "_finished", "_garbage", "_gate",
        "_gate_stopped", "_gone", "_holds", "_idle", "_input_over", "_kernel",
        "_kernel_handed", "_release", "_silent", "batch", "clock", "lines", "log",
        "nick", "output", "owner", "peer", "policy", "reason", "traffic", "transport",
    )

    def __init__(
        self,
        owner: ConnectionOwner,
        transport: Any,
        policy: EdgePolicy,
        clock: IReactorTime,
        log: RateLimitedLog,
        batch: OutputBatch,
        release: Callable[[], None] | None = None,
        lines: LineOwner | None = None,
        traffic: Traffic | None = None,
        idle: IdleTimers | None = None,
    ) -> None:
        """``idle``: the front-end's idle timers, shared by its connections (chatd/idle.py);
        without, the edge has its own."""
        self.owner = owner
        self.traffic = traffic  # the front-end's byte counters (chatd/stats.py)
        self.lines = lines  # None for a front-end without lines (echo)
        self.transport = transport
        self.policy = policy
        self.clock = clock
        self.log = log
        self.batch = batch
        self.peer = describe_peer(transport.getPeer())  # the front-end's too: one string
        self.reason: str | None = None  # why the connection ended, when the edge ended it
        self.nick = "?"  # for log lines; the front-end keeps it current
        self._release = release  # undoes the admission count, once
        self._cut_off = False  # aborted: nothing more is written
        self._gone = False  # the transport is closed
        self._silent = False  # closing, cut off or gone: nothing more is written
        self._finished = False
        self._input_over = False  # the peer half-closed: close once its lines are done
        self._holds: set[object] | frozenset[object] = _NO_HOLDS  # a set from the first hold
        self._close_deadline: IDelayedCall | None = None
        self._idle = idle if idle is not None else IdleTimers(clock)
        self._bad_input: TokenBucket | None = None  # from the first strike
        self._garbage = 0  # swallowed bytes not yet counted as a strike
        self._kernel = 0  # the kernel's send queue, as last asked
        self._kernel_handed = 0  # output.handed when it was asked
        self.output = ConnectionOutput(transport, batch)
        self._gate: FloodGate[Item] | None = None  # from the first line (see ``gate``)
        self._gate_stopped = False
        if interfaces.ITCPTransport.providedBy(transport):
            transport.setTcpKeepAlive(True)  # so dead peers are noticed eventually
            # Output is coalesced per read (chatd/output.py); Nagle would only hold a line
            # back behind the peer's delayed ACK of the previous one.
            transport.setTcpNoDelay(True)

    @property
    def gate(self) -> FloodGate[Item]:
        """The flood gate, made when first needed: a gate made at connect time and left
        unused until now would be in the same state (a full bucket, nothing queued)."""
        gate = self._gate
        if gate is None:
            policy = self.policy
            gate = self._gate = FloodGate(
                self.clock, policy.flood_rate, policy.flood_burst, policy.flood_queue,
                self._deliver, self._flood_overflow, self._flood_persistent,
            )
            gate.on_empty = self.settle
            gate.batch = self.batch
            if self._gate_stopped:
                gate.stop()
        return gate

    def _stop_gate(self) -> None:
        self._gate_stopped = True
        if self._gate is not None:
            self._gate.stop()

    def start_send_buffer_guard(self) -> None:
        """Registers the send-buffer guard as the transport's producer."""
        guard = self.output.guard = _EdgeGuard(self)
        self.transport.registerProducer(guard, True)

    @property
    def guard(self) -> SendBufferGuard | None:
        """The send-buffer guard, from ``start_send_buffer_guard`` until closing; the
        output holds it, since it tells it of every write."""
        return self.output.guard

    def policy_changed(self) -> None:
        """A reload changed the policy: apply it to the parts that keep their own copy."""
        policy = self.policy
        if self._gate is not None:
            self._gate.configure(policy.flood_rate, policy.flood_burst, policy.flood_queue)
        if self.guard is not None:
            self.guard.limit, self.guard.grace = policy.send_buffer, policy.send_grace
        self._idle.forget(self)  # the timeout counts from the reload, whatever it was
        self.activity()

    # --- Output ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        # The fan-out's hot path: one call per recipient of every block. The output tells
        # the send-buffer guard what it must know (chatd/output.py).
        if not self._silent:
            self.output.send(data)

    @property
    def handed(self) -> int:
        """Bytes handed to the transport since the connection was made."""
        return self.output.handed

    def _backlog(self, exact: bool = False) -> int:
        """Every byte queued for the peer: the batch, the transport's buffer and the kernel's
        send queue (for TCP; for others, what was written since the transport said it was
        full). The kernel's share costs a system call, so while the peer falls behind it is
        asked again only every KERNEL_REFRESH bytes written, or when a decision is due."""
        queued = queued_in_transport(self.transport)
        if queued is None:
            guard = self.guard
            written = guard.written if guard is not None and guard.paused else 0
            return self.output.pending_bytes + written
        handed = self.output.handed
        if exact or handed - self._kernel_handed >= KERNEL_REFRESH:
            self._kernel = unsent_in_kernel(self.transport)
            self._kernel_handed = handed
        return self.output.pending_bytes + queued + self._kernel

    # --- Input -----------------------------------------------------------------------------

    def activity(self) -> None:
        """The peer sent something: the idle timeout starts again."""
        timeout = self.policy.idle_timeout
        if not timeout or self._gone:
            return
        self._idle.touch(self, timeout)

    def offer(self, item: Item) -> None:
        """A line (or an over-long line's place, or a reply) for the flood gate."""
        if not self._gate_stopped:
            self.gate.offer(item)

    def strike(self) -> None:
        """One over-long line: a peer that keeps sending them is disconnected."""
        now = self.clock.seconds()
        if self._bad_input is None:  # made full, as one made at connect time would be now
            self._bad_input = TokenBucket(1 / BAD_INPUT_INTERVAL, BAD_INPUT_BURST, now)
        if not self._bad_input.take(now) and not self._cut_off:
            self.log_cause("disconnected for bad input", "over-long lines or garbage")
            self.owner.tell_error("disconnected for sending over-long lines or garbage")
            self.reason = "bad input"
            self.close()

    def swallowed(self, size: int) -> None:
        """``size`` bytes of garbage were dropped (telnet negotiation, an endless line)."""
        self._garbage += size
        while self._garbage >= STRIKE_BYTES and not self.closing:
            self._garbage -= STRIKE_BYTES
            self.strike()

    def hold_until(self, done: defer.Deferred[Any]) -> None:
        """Later lines wait until ``done`` fires: the connection's lines stay in order."""
        token = object()
        self.hold(token)

        def over(result: object) -> object:
            self.release(token)
            return result

        done.addBoth(over)

    def hold(self, token: object) -> None:
        if not self._holds:
            self.gate.hold()
            if self.lines is not None:
                self.lines.pause_input()
        if not isinstance(self._holds, set):
            self._holds = set()
        self._holds.add(token)

    def release(self, token: object) -> None:
        if token not in self._holds or not isinstance(self._holds, set):
            return
        self._holds.discard(token)
        if self._holds:
            return
        with self.batch:
            if self._gate is not None:
                self._gate.resume()
            if not self._holds and not self._gone and self.lines is not None:
                self.lines.resume_input()
        self.settle()

    def _deliver(self, item: Item) -> None:
        lines = self.lines
        assert lines is not None, "only a front-end with lines offers them"
        with self.batch:
            if isinstance(item, bytes):
                done = lines.handle_line(item)
                if done is not None:
                    self.hold_until(done)
            elif isinstance(item, Reply):
                self.write(item.data)
            else:
                self.log.count("line too long")
                lines.line_too_long()
            self._after_line()

    def _after_line(self) -> None:
        """A line that made a lot of output waits for the peer to read it before the next
        line is handled: the batch goes to the transport now, and if the transport is full
        the next lines wait (``release("drain")`` comes from the guard's resume)."""
        guard = self.guard
        if guard is None or self._cut_off:
            return
        if self.output.pending_bytes > guard.limit:
            self.output.flush()
        if guard.paused and not self._gone:
            self.hold("drain")

    def input_ended(self) -> None:
        """The peer half-closed: its queued lines still go out, then the connection closes."""
        self._input_over = True
        self.settle()

    def settle(self) -> None:
        if self._gate is not None and not self._gate.idle:
            return
        if self._gone:
            self._finish()
        elif self._input_over and not (self.lines is not None and self.lines.input_pending()):
            self.close()

    # --- Limits tripped --------------------------------------------------------------------

    def _flood_overflow(self) -> None:
        self.log_cause("flooding: lines dropped", f"{self.gate.queue_limit} lines queued")
        self.owner.tell_error(
            f"you are sending faster than {self.gate.rate:g} lines a second and "
            f"{self.gate.queue_limit} lines are waiting; further lines are dropped until "
            "they have gone out"
        )

    def _flood_persistent(self) -> None:
        self.log_cause("disconnected for flooding")
        self.owner.tell_error("disconnected for flooding")
        self.reason = "flooding"
        self.close()

    def _send_buffer_overrun(self) -> None:
        self.log_cause(
            "disconnected: not reading its output",
            f"over {self.policy.send_buffer} bytes pending",
        )
        self.reason = "not reading"
        self.abort()

    def idle_timeout_reached(self) -> None:
        self.log_cause("disconnected: idle", f"{self.policy.idle_timeout:g} s")
        self.reason = "idle timeout"
        self.owner.timed_out()

    def log_cause(self, reason: str, detail: str = "") -> None:
        """One rate-limited log line: this peer was refused or cut off, and why."""
        self.log.event(reason, self.peer, f"{self.nick}; {detail}" if detail else self.nick)

    # --- Closing ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._cut_off or self._gone or bool(self.transport.disconnecting)

    def close(self) -> None:
        """Closes after what is queued has been sent, or aborts if that takes too long.

        A registered producer can keep a transport open forever, so it goes first; nothing
        more is written once closing (see ``write``), so the backlog cannot grow meanwhile.
        """
        if self.closing:
            return
        self._silent = True
        self._stop_timers()
        self._stop_gate()
        if self.guard is not None:
            self.guard.stop()
            self.output.guard = None
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._close_deadline = self.clock.callLater(
            self.policy.send_grace or DEFAULT_SEND_GRACE, self.abort
        )

    def abort(self) -> None:
        self._cut_off = self._silent = True
        self._stop_gate()
        if self.guard is not None:
            self.guard.stop()
        self.output.discard()
        self.transport.abortConnection()

    def connection_lost(self, reason: Failure | None = None) -> None:
        """The transport is gone. Lines already accepted still go out at the flood rate
        (unless the edge cut the peer off); then the owner is told it is over."""
        self._gone = self._silent = True
        if self.traffic is not None:  # the front-end counts live connections' bytes itself
            self.traffic.bytes_sent += self.output.handed
        self._stop_timers()
        if self._close_deadline is not None and self._close_deadline.active():
            self._close_deadline.cancel()
        if self.guard is not None:
            self.guard.stop()
        if self._release is not None:
            release, self._release = self._release, None
            release()
        if self._cut_off or self.reason is not None:
            self._stop_gate()  # cut off for cause: what it queued goes nowhere
        if isinstance(self._holds, set):
            self._holds.discard("drain")  # nothing more will drain
        if self._holds:
            return  # an asynchronous step is running; its release settles
        if self._gate is not None:
            self._gate.resume()
        self.settle()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._stop_gate()
            self.owner.finished(self.reason or "connection lost")

    def _stop_timers(self) -> None:
        self._idle.forget(self)
