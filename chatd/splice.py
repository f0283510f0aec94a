"""Echo in the kernel: socket -> pipe -> the same socket with splice(2), no copy through Python.

Echoing through Python costs a ``recv()`` into a new bytes object and a ``send()`` of it for
every read, and a read may be at most 32 KiB if a peer that sends and does not read is to
cost us at most 64 KiB (chatd/echo.py). ``splice()`` moves the bytes from the socket's
receive queue into a pipe and from the pipe into the socket's send queue as page
references, and the pipe itself is the bound: it holds at most its size, 64 KiB, whatever
the peer does. One pipe (two descriptors) per connection, closed when the connection goes.

How it takes over the connection: ``SplicePump.install`` shadows the transport's ``doRead``
and ``doWrite`` with its own, as instance attributes. That is what Twisted itself does to
stop an aborted connection (``_AbortingMixin.abortConnection`` sets both to no-ops), and
the reactor calls exactly those two on the transport for readiness; everything else stays
Twisted's: the descriptor's registration with the reactor, ``loseConnection`` and
``abortConnection``, errors and ``connectionLost``, the protocol's callbacks. A subclass
of ``tcp.Server`` would need a port class of our own for every endpoint type (tcp, tcp6,
unix, systemd's adopted sockets); shadowing works for whichever of them made the
connection, and the protocol decides per connection (``splice_pump``). A transport that is
not a plain socket (TLS, a wrapper, a test's ``StringTransport``) keeps the ordinary path.

The pump reads only while the pipe is empty, and after each read sends what the kernel
takes. What it cannot send stays in the pipe: reading stops (the peer gets TCP
backpressure), the owner is told (``pipe_stalled``; the echo factory counts what stalled
connections hold in all, and may cut this one off instead), and the socket's writability
drains the pipe; once it is empty, the owner is told (``pipe_drained``) and reading
resumes. Twisted's own ``doWrite`` runs after the pipe is empty, for whatever is in its
buffer and to close the connection when ``loseConnection`` asked for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from typing import Any, Protocol

from twisted.internet import main, tcp

# What one connection's pipe may hold: the bound on what a peer that does not read costs.
PIPE_SIZE = 64 * 1024
# Reads (of up to PIPE_SIZE) one readiness call may make while the peer has more: each turn
# of the reactor costs about as much CPU as moving 64 KiB, and 256 KiB is what the asyncio
# peer reads at once; more would keep the other connections waiting longer.
READS_PER_TURN = 4
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_STREAM_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6, socket.AF_UNIX})
# Errors that mean "not now": the socket is empty (reading) or full (sending).
_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})


class SpliceOwner(Protocol):
    """What the echo protocol gives its pump."""

    def spliced(self, size: int) -> None:
        """``size`` bytes were read from the peer (and are in the pipe)."""

    def pipe_stalled(self) -> bool:
        """The peer does not take its echo: the pipe holds unsent bytes. False if the owner
        cut the connection off instead (then the pump does nothing more)."""

    def pipe_drained(self) -> None:
        """The pipe is empty again."""


def can_splice(transport: Any) -> bool:
    """Whether ``transport`` is a plain stream socket the kernel can splice: Twisted's own
    TCP or UNIX server connection, not TLS, on Linux with ``os.splice``."""
    if not hasattr(os, "splice") or not isinstance(transport, tcp.Server):
        return False
    if getattr(transport, "TLS", False):  # startTLS on the transport itself
        return False
    sock = transport.socket
    return sock.family in _STREAM_FAMILIES and sock.type == socket.SOCK_STREAM


def make_pipe() -> tuple[int, int]:
    """A non-blocking pipe that holds at most PIPE_SIZE bytes; OSError if none can be made
    (out of descriptors, say) or it would hold more."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # Over the user's pipe-user-pages-soft the kernel gives new pipes fewer pages and
        # refuses to grow them: smaller is within the bound.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        if size > PIPE_SIZE:
            raise OSError(errno.EINVAL, f"a pipe of {size} bytes is over {PIPE_SIZE}")
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    return read_end, write_end


class SplicePump:
    """Echoes one connection through one pipe; ``close`` frees the pipe, once."""

    __slots__ = ("_base", "_read_end", "_sock", "_write_end", "held", "owner", "sent",
                 "transport")

    def __init__(self, transport: Any, owner: SpliceOwner) -> None:
        self.transport = transport
        self.owner = owner
        self._sock = transport.socket.fileno()
        self._read_end, self._write_end = make_pipe()
        self._base = type(transport)  # Twisted's doWrite, for its buffer and for closing
        self.held = 0  # bytes in the pipe: read from the peer, not yet sent back
        self.sent = 0  # bytes echoed, ever

    def install(self) -> None:
        """From now on the reactor's readiness calls come here (see the module's doc)."""
        self.transport.doRead = self.doRead
        self.transport.doWrite = self.doWrite

    @property
    def pipe(self) -> tuple[int, int]:
        """The pipe's read and write ends; (-1, -1) once closed."""
        return self._read_end, self._write_end

    def close(self) -> None:
        """Closes the pipe and gives the transport its own methods back (connection lost)."""
        if self._read_end < 0:
            return
        read_end, write_end = self._read_end, self._write_end
        self._read_end = self._write_end = -1
        self.held = 0
        os.close(read_end)
        os.close(write_end)
        overrides = vars(self.transport)
        for name, ours in (("doRead", self.doRead), ("doWrite", self.doWrite)):
            if overrides.get(name) == ours:
                del overrides[name]

    # --- the reactor's calls ---------------------------------------------------------------

    def doRead(self) -> Exception | None:
        """Reads into the pipe and sends it on, up to READS_PER_TURN times while the peer
        has more and takes it all; stalls if the pipe holds what the peer did not take."""
        received = 0
        why: Exception | None = None
        for _ in range(READS_PER_TURN):
            try:
                size = os.splice(self._sock, self._write_end, PIPE_SIZE, flags=_FLAGS)
            except OSError as e:
                if e.errno not in _AGAIN:
                    why = main.CONNECTION_LOST
                break
            if not size:
                why = main.CONNECTION_DONE  # end of stream: as for a recv() of b""
                break
            received += size
            self.held += size
            why = self._send()
            if why is not None or self.held or size < PIPE_SIZE:
                break  # a short read: the socket is most likely empty
        if received:
            self.owner.spliced(received)
        if self.held and why is None:
            if not self.owner.pipe_stalled():
                return None  # cut off: the transport is aborting
            self.transport.stopReading()  # the peer's sends now wait in TCP
            self.transport.startWriting()
        return why

    def doWrite(self) -> Exception | None:
        """Drains the pipe first; once it is empty, reading resumes and Twisted's own
        ``doWrite`` sends its buffer (empty) and closes if ``loseConnection`` asked."""
        if self.held:
            why = self._send()
            if why is not None or self.held:
                return why
            self.owner.pipe_drained()
            if not self.transport.disconnecting:
                self.transport.startReading()
        return self._base.doWrite(self.transport)  # type: ignore[no-any-return]

    def _send(self) -> Exception | None:
        """Sends from the pipe what the kernel takes."""
        while self.held:
            try:
                size = os.splice(self._read_end, self._sock, self.held, flags=_FLAGS)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                return None if e.errno in _AGAIN else main.CONNECTION_LOST
            self.held -= size
            self.sent += size
        return None
