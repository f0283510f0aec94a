"""How bytes leave chatd: coalesced per burst of input, and sent at once when possible.

Fan-out is the hot path: one line read from one client becomes one write to each of N
others. Two costs dominate it in stock Twisted, and this module removes both.

1. A client that pastes 500 lines makes 500 x N writes. While chatd handles one read
   (``OutputBatch`` is active), each connection's output is collected and joined, so every
   recipient gets one write per read instead of one per line. Nothing waits for a later
   reactor turn: the batch is flushed before ``dataReceived`` returns.

2. ``transport.write`` never sends: it queues the bytes and registers the socket for
   writability with epoll, and the reactor sends on its next turn and unregisters again:
   two ``epoll_ctl`` calls and a turn of latency for every recipient of every line.
   ``write_now`` calls ``send()`` itself when Twisted has nothing queued for that socket,
   and hands only what the kernel would not take to ``transport.write``.

``write_now`` and ``queued_in_transport`` read private attributes of
``twisted.internet.tcp.Connection`` (its queue: ``dataBuffer``, ``offset``,
``_tempDataLen``; and ``socket``). That and the echo's splice pump (chatd/splice.py: the
transport's ``socket``, and ``doRead``/``doWrite`` shadowed) are chatd's only reaches past
Twisted's public API; the tests in ``tests/test_output.py`` and
``tests/test_echo_splice.py`` pin the behaviour they rely on, so a Twisted upgrade that
changes it fails there first. Any other transport
(TLS, in-memory test transports) takes the ordinary ``transport.write`` path.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from twisted.internet import tcp

if TYPE_CHECKING:
    from chatd.backpressure import SendBufferGuard


def write_now(transport: Any, data: bytes) -> None:
    """Writes ``data`` to ``transport``, calling send() directly when nothing is queued."""
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # Full (EAGAIN), or broken: either way Twisted's own write path queues the
            # bytes or finds and reports the error exactly as it would have without us.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def queued_in_transport(transport: Any) -> int | None:
    """Bytes a TCP transport holds for its peer in its own buffer; None for transports it
    cannot tell. (What the kernel holds is ``unsent_in_kernel``: a system call.)"""
    if isinstance(transport, tcp.Connection):
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return None


def unsent_in_kernel(transport: Any) -> int:
    """What the kernel still holds for the peer (SIOCOUTQ): bytes a peer that does not
    read leaves there count against it like the rest. 0 where the call is missing."""
    if _OUTQ is None or not transport.connected:
        return 0
    try:
        raw = fcntl.ioctl(transport.socket.fileno(), _OUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ on Linux


class OutputBatch:
    """While active, connections collect their output and are flushed together at the end.

    The chat side has one (made in ``makeService``), shared by every chat front-end and
    the Redis bus: a read on any front-end, a flood-gate release or a run of messages
    from Redis is one write to each recipient, whatever front-end it is on.

    Reentrant: a nested ``with`` (a command that itself triggers input handling, a
    resume inside a read) flushes only when the outermost one ends; with one batch there
    is one outermost. ``first`` (the chat service's held lines, chatd/fanout.py) is
    entered and left with it, and delivers what it holds into the connections' output
    before that output is flushed.

    The held lines are delivered as the outermost batch closes (``closing``): they are
    the last output of the read, so a recipient with nothing pending gets them at once,
    one ``send()`` with no queueing, and one with earlier output has them appended
    behind it and flushed with it.
    """

    __slots__ = ("_depth", "_dirty", "_first", "closing")

    def __init__(self, first: AbstractContextManager[object] | None = None) -> None:
        self._depth = 0
        self._dirty: list[ConnectionOutput] = []
        self._first = first
        self.closing = False

    @property
    def active(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> OutputBatch:
        if self._first is not None:
            self._first.__enter__()
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        first = self._first
        if self._depth:
            if first is not None:
                first.__exit__(None, None, None)
            return
        if first is not None:
            self.closing = True
            try:
                first.__exit__(None, None, None)
            finally:
                self.closing = False
        dirty, self._dirty = self._dirty, []
        for output in dirty:
            output.flush()

    def mark_dirty(self, output: ConnectionOutput) -> None:
        self._dirty.append(output)


class ConnectionOutput:
    """One connection's outgoing bytes; ``pending_bytes`` counts what the batch holds,
    ``handed`` what was handed to the transport, ever.

    ``guard`` (the edge's send-buffer guard, once it runs) decides on every byte before
    it is handed over while the peer is behind (the guard is paused) or when one write is
    over its limit: such a write waits in the batch, is counted, and is handed over only
    if the guard did not cut the peer off. A peer that keeps up gets its write at once,
    with no call to the guard: the fan-out's hot path. The list of pending bytes is made
    when the batch first holds some: an idle connection does without it.
    """

    __slots__ = ("_batch", "_pending", "guard", "handed", "pending_bytes", "transport")

    def __init__(self, transport: Any, batch: OutputBatch) -> None:
        self.transport = transport
        self._batch = batch
        self._pending: list[bytes] | None = None
        self.guard: SendBufferGuard | None = None
        self.pending_bytes = 0
        self.handed = 0

    def send(self, data: bytes) -> None:
        if not self._batch._depth and not self._pending:
            guard = self.guard
            if guard is None:
                write_now(self.transport, data)
                self.handed += len(data)
                return
            if not guard.paused and len(data) <= guard.limit:
                write_now(self.transport, data)
                self.handed += len(data)
                if guard.paused:  # this write filled the transport: it counts
                    guard.wrote(len(data))
                return
        self._queue(data)

    def _queue(self, data: bytes) -> None:
        batch = self._batch
        pending = self._pending
        if pending is None:
            batch.mark_dirty(self)
            self._pending = [data]
        else:
            pending.append(data)
        self.pending_bytes += len(data)
        guard = self.guard
        if guard is not None and (guard.paused or self.pending_bytes > guard.limit):
            guard.check()  # may cut the peer off, which discards what is pending
        if not batch._depth and not batch.closing:
            self.flush()  # no batch: what the guard let through goes out now

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            size, self.pending_bytes = self.pending_bytes, 0
            write_now(self.transport, pending[0] if len(pending) == 1 else b"".join(pending))
            self.handed += size
            guard = self.guard
            if guard is not None and (guard.paused or size > guard.limit):
                guard.wrote(size)

    def discard(self) -> None:
        """Forgets what the batch holds (the connection was cut off)."""
        self._pending, self.pending_bytes = None, 0
