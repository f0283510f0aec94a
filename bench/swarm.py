"""The load generator's core: many non-blocking client sockets driven by one epoll.

Built so that the generator is not the bottleneck: reads are 256 KiB at a time, lines
are counted with ``bytes.count`` (no per-line Python work unless latencies are asked
for), TCP_NODELAY is set, and output is written straight away with ``send`` and only
queued (EPOLLOUT) when the kernel buffer is full.  It speaks chatd's line protocol
(wait for the first line) and plain IRC (NICK/USER, wait for 001, JOIN, wait for 366)
and answers PING.  It only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import time
from collections.abc import Callable

CHAT = "chat"
IRC = "irc"
CHANNEL = b"#bench"
HOST = "127.0.0.1"
RECV_SIZE = 1 << 18
TS_RE = re.compile(rb"@@(\d+)")

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_ERR = select.EPOLLERR | select.EPOLLHUP

# Connection states.
CONNECTING, REGISTERING, JOINING, READY, CLOSED = range(5)


class GenTimeout(Exception):
    """A bounded load loop ran out of time."""


class Conn:
    __slots__ = ("buf", "fd", "lines", "mark_ns", "nick", "out", "sock", "state")

    def __init__(self, sock: socket.socket, nick: bytes) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.nick = nick
        self.state = CONNECTING
        self.buf = b""
        self.out = b""
        self.lines = 0
        self.mark_ns = 0


Handler = Callable[[Conn, bytes, int], None]


class Swarm:
    """A set of client connections to one server, all on one epoll."""

    def __init__(self, proto: str, port: int, join: bool = True) -> None:
        if proto not in (CHAT, IRC):
            raise ValueError(proto)
        self.proto = proto
        self.port = port
        self.join = join
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.failed = 0
        self.closed = 0
        self._handler: Handler = self._discard

    # ---------------------------------------------------------------- output
    def send(self, c: Conn, data: bytes) -> None:
        """Write now; queue what the kernel does not take and wait for EPOLLOUT."""
        if c.state == CLOSED:
            return
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self._close(c)
            return
        if n < len(data):
            c.out = data[n:]
            self.ep.modify(c.fd, _IN | _OUT)

    def say(self, c: Conn, text: bytes) -> None:
        """Send one chat line (a PRIVMSG to #bench on IRC)."""
        if self.proto == IRC:
            self.send(c, b"PRIVMSG " + CHANNEL + b" :" + text + b"\r\n")
        else:
            self.send(c, text + b"\r\n")

    def say_many(self, c: Conn, texts: list[bytes]) -> None:
        if self.proto == IRC:
            pre = b"PRIVMSG " + CHANNEL + b" :"
            self.send(c, b"".join(pre + t + b"\r\n" for t in texts))
        else:
            self.send(c, b"".join(t + b"\r\n" for t in texts))

    def pending_output(self) -> int:
        return sum(len(c.out) for c in self.conns.values())

    # ---------------------------------------------------------------- connect
    def open(self, n: int, prefix: str, timeout: float, inflight: int = 256) -> list[Conn]:
        """Open and register ``n`` clients (at most ``inflight`` handshakes at once)."""
        deadline = time.monotonic() + timeout
        made: list[Conn] = []
        started = 0
        waiting: set[int] = set()
        self._handler = self._register
        self._waiting = waiting
        while started < n or waiting:
            while started < n and len(waiting) < inflight:
                c = self._connect(f"{prefix}{started}".encode())
                started += 1
                if c is not None:
                    waiting.add(c.fd)
                    made.append(c)
            if time.monotonic() > deadline:
                raise GenTimeout(
                    f"{len(made) - len(waiting)} of {n} clients registered in {timeout:.0f}s"
                )
            self.poll(0.05)
            for fd in [fd for fd in waiting if self.conns[fd].state in (READY, CLOSED)]:
                waiting.discard(fd)
        self._handler = self._discard
        return [c for c in made if c.state == READY]

    def _connect(self, nick: bytes) -> Conn | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex((HOST, self.port))
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            self.failed += 1
            return None
        c = Conn(s, nick)
        self.conns[c.fd] = c
        self.ep.register(c.fd, _IN | _OUT)
        return c

    def _connected(self, c: Conn) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.failed += 1
            self._close(c)
            return
        c.state = REGISTERING
        self.ep.modify(c.fd, _IN)
        if self.proto == IRC:
            self.send(c, b"NICK " + c.nick + b"\r\nUSER " + c.nick + b" 0 * :bench\r\n")

    def _register(self, c: Conn, data: bytes, now: int) -> None:
        c.buf += data
        if self.proto == CHAT:
            if b"\n" in c.buf:
                c.state = READY
                c.buf = b""
            return
        if c.state == REGISTERING and b" 001 " in c.buf:
            c.state = JOINING if self.join else READY
            c.buf = c.buf[c.buf.index(b" 001 ") :]
            if self.join:
                self.send(c, b"JOIN " + CHANNEL + b"\r\n")
        if c.state == JOINING and b" 366 " in c.buf:
            c.state = READY
        if c.state == READY:
            c.buf = b""
        elif len(c.buf) > 65536:
            c.buf = c.buf[-512:]

    # ---------------------------------------------------------------- input loop
    def poll(self, timeout: float) -> int:
        """One epoll round; hands every chunk read to the current handler."""
        events = self.ep.poll(timeout, 4096)
        if not events:
            return 0
        now = time.monotonic_ns()
        conns = self.conns
        handler = self._handler
        irc = self.proto == IRC
        for fd, ev in events:
            c = conns.get(fd)
            if c is None:
                continue
            if ev & _OUT:
                if c.state == CONNECTING:
                    self._connected(c)
                    continue
                if c.out:
                    self._flush(c)
            if ev & (_IN | _ERR):
                try:
                    data = c.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    if c.state == CONNECTING:
                        self.failed += 1
                    self._close(c)
                    continue
                if irc and b"PING" in data:
                    data = self._pong(c, data)
                handler(c, data, now)
        return len(events)

    def _flush(self, c: Conn) -> None:
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(c)
            return
        c.out = c.out[n:]
        if not c.out:
            self.ep.modify(c.fd, _IN)

    def _pong(self, c: Conn, data: bytes) -> bytes:
        """Answer PINGs and drop those lines (chunks are line-aligned often enough)."""
        keep = []
        for line in data.split(b"\n"):
            if line.startswith(b"PING"):
                self.send(c, b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")
            else:
                keep.append(line)
        return b"\n".join(keep)

    def _close(self, c: Conn) -> None:
        if c.state == CLOSED:
            return
        c.state = CLOSED
        self.closed += 1
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(c.fd)
        c.sock.close()

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._close(c)
        self.conns.clear()
        self.ep.close()

    # ---------------------------------------------------------------- handlers
    @staticmethod
    def _discard(c: Conn, data: bytes, now: int) -> None:
        pass

    @staticmethod
    def _count(c: Conn, data: bytes, now: int) -> None:
        c.lines += data.count(b"\n")
        c.mark_ns = now

    # ---------------------------------------------------------------- phases
    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise GenTimeout(f"{what}: not done after {timeout:.0f}s")
            self.poll(0.02)

    def drain(self, seconds: float) -> None:
        """Read and discard everything for a while."""
        self._handler = self._discard
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(0.01)

    def expect_marker(self, conns: list[Conn], marker: bytes, timeout: float) -> int:
        """Read until every conn in ``conns`` has seen ``marker``; return the last arrival (ns)."""
        want = {c.fd for c in conns if c.state != CLOSED}
        keep = len(marker)
        last = 0

        def handler(c: Conn, data: bytes, now: int) -> None:
            nonlocal last
            if c.fd in want:
                if marker in c.buf + data:
                    want.discard(c.fd)
                    c.buf = b""
                    last = now
                else:
                    c.buf = data[-keep:]

        self._handler = handler
        try:
            self.run_until(lambda: not want, timeout, f"marker {marker.decode()!r}")
        finally:
            self._handler = self._discard
        return last

    def start_counting(self, conns: list[Conn]) -> None:
        for c in conns:
            c.lines = 0
            c.mark_ns = 0
        self._handler = self._count

    def start_latency(self, sink: list[int]) -> None:
        """Parse ``@@<monotonic ns>`` stamps and append each line's latency to ``sink``."""

        def handler(c: Conn, data: bytes, now: int) -> None:
            buf = c.buf + data
            cut = buf.rfind(b"\n") + 1
            c.buf = buf[cut:]
            for ts in TS_RE.findall(buf, 0, cut):
                sink.append(now - int(ts))
            c.lines += buf.count(b"\n", 0, cut)

        self._handler = handler

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    def stop_handler(self) -> None:
        self._handler = self._discard
