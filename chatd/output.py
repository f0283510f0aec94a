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
``_tempDataLen``; and ``socket``). That is the only reach past Twisted's public API in
chatd; the tests in ``tests/test_output.py`` pin the behaviour it
relies on, so a Twisted upgrade that changes it fails there first. Any other transport
(TLS, in-memory test transports) takes the ordinary ``transport.write`` path.
"""

from __future__ import annotations

import fcntl
import struct
import termios
from contextlib import AbstractContextManager
from typing import Any, Protocol

from twisted.internet import tcp


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

    Reentrant: a nested ``with`` (a command that itself triggers input handling) flushes
    only when the outermost one ends. ``first`` (the chat service's held lines,
    chatd/fanout.py) is entered and left with it, and delivers what it holds into the
    connections' output before that output is flushed.
    """

    __slots__ = ("_depth", "_dirty", "_first")

    def __init__(self, first: AbstractContextManager[object] | None = None) -> None:
        self._depth = 0
        self._dirty: list[ConnectionOutput] = []
        self._first = first

    @property
    def active(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> OutputBatch:
        if self._first is not None:
            self._first.__enter__()
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._first is not None:
            self._first.__exit__(None, None, None)
        self._depth -= 1
        if self._depth == 0:
            dirty, self._dirty = self._dirty, []
            for output in dirty:
                output.flush()

    def mark_dirty(self, output: ConnectionOutput) -> None:
        self._dirty.append(output)


class WriteCounter(Protocol):
    """Told the size of every write handed to the transport (the edge, chatd/edge.py)."""

    def wrote(self, size: int) -> None: ...


class ConnectionOutput:
    """One connection's outgoing bytes; ``pending_bytes`` counts what the batch holds.

    ``counter`` (the edge, for its send-buffer guard) is told the size of every write
    handed to the transport, after the transport took it. The list of pending bytes is
    made when a batch first holds some: an idle connection does without it.
    """

    __slots__ = ("_batch", "_counter", "_pending", "pending_bytes", "transport")

    def __init__(
        self, transport: Any, batch: OutputBatch, counter: WriteCounter | None = None
    ) -> None:
        self.transport = transport
        self._batch = batch
        self._pending: list[bytes] | None = None
        self._counter = counter
        self.pending_bytes = 0

    def send(self, data: bytes) -> None:
        if not self._batch._depth:
            write_now(self.transport, data)
            if self._counter is not None:
                self._counter.wrote(len(data))
            return
        pending = self._pending
        if pending is None:
            self._batch.mark_dirty(self)
            self._pending = [data]
        else:
            pending.append(data)
        self.pending_bytes += len(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            size, self.pending_bytes = self.pending_bytes, 0
            write_now(self.transport, pending[0] if len(pending) == 1 else b"".join(pending))
            if self._counter is not None:
                self._counter.wrote(size)

    def discard(self) -> None:
        """Forgets what the batch holds (the connection was cut off)."""
        self._pending, self.pending_bytes = None, 0
