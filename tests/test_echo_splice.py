"""TCP echo through splice(2) (chatd/splice.py), over real loopback sockets: byte for byte,
at most a pipe's 64 KiB held for a peer that does not read, the total backlog, the idle
timeout and the traffic count as on the Python path, no descriptor outliving its
connection, and the Python path wherever the kernel's cannot be had (TLS, no pipe)."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import resource
import select
import socket
import struct
import termios
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, endpoints, protocol, reactor, ssl, task
from twisted.internet.interfaces import IListeningPort

from chatd import splice
from chatd.echo import ECHO_MAX_BACKLOG, EchoFactory, EchoProtocol
from chatd.output import queued_in_transport
from chatd.policy import EdgePolicy
from tests.support import WAIT_SECONDS, Twistd, make_certificates, sleep, until, within
from tests.test_limits import logged as logged  # a fixture

CUT_OFF = "echo connection cut off: total echo backlog reached"
PROMISE = 64 * 1024  # README, Limits and safety: held at most per TCP echo client


class RecordingEchoFactory(EchoFactory):
    """The echo factory, keeping every protocol it made so a test can look inside."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocols: list[EchoProtocol] = []

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        if proto is not None:
            self.protocols.append(proto)
        return proto


def held_by(proto: EchoProtocol) -> int:
    """What chatd holds for this connection, measured, not as the pump counts it: the bytes
    in its pipe (FIONREAD on the read end) and in Twisted's buffer."""
    in_buffer = queued_in_transport(proto.transport) or 0
    if proto.pump is None:
        return in_buffer
    read_end, _ = proto.pump.pipe
    raw = fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0]) + in_buffer


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def listen_tcp() -> Generator[Callable[[EchoFactory], int], None, None]:
    """Listens with the factory on 127.0.0.1, port 0; every port is closed after the test."""
    ports: list[IListeningPort] = []

    def listen(factory: EchoFactory) -> int:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        ports.append(port)
        return int(port.getHost().port)

    yield listen
    for port in ports:
        port.stopListening()


def client(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@defer.inlineCallbacks
def stream(sock: socket.socket, payload: bytes, recv_size: int = 1 << 20) -> Any:
    """Sends ``payload`` while reading its echo (the reactor runs in between); returns
    what came back, by the deadline or until the server closed."""
    sent, got = 0, bytearray()
    deadline = time.monotonic() + WAIT_SECONDS
    while len(got) < len(payload):
        assert time.monotonic() < deadline, f"{len(got)} of {len(payload)} bytes echoed"
        moved = False
        if sent < len(payload):
            try:
                sent += sock.send(payload[sent:sent + (1 << 20)])
                moved = True
            except BlockingIOError:
                pass
        try:
            data = sock.recv(recv_size)
        except BlockingIOError:
            data = None
        if data == b"":
            break
        if data:
            got += data
            moved = True
        yield sleep(0 if moved else 0.002)
    return bytes(got)


@defer.inlineCallbacks
def send_until_stuck(sock: socket.socket, stuck: Callable[[], bool]) -> Any:
    """Sends and never reads until ``stuck()`` holds and the kernel takes no more for
    0.2 s; returns how much was sent. Fails if the server never stops taking it."""
    chunk = b"s" * 65536
    sent = 0
    blocked_since: float | None = None
    deadline = time.monotonic() + WAIT_SECONDS
    while blocked_since is None or time.monotonic() - blocked_since < 0.2 or not stuck():
        assert time.monotonic() < deadline, f"still taking data after {sent} bytes"
        try:
            sent += sock.send(chunk)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            yield sleep(0.01)
        except OSError:
            break  # cut off
    return sent


class Drain:
    """Reads whatever has come on a non-blocking socket: counts it, and notes a close."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.count = 0
        self.closed = False

    def __call__(self) -> int:
        try:
            while chunk := self.sock.recv(1 << 20):
                self.count += len(chunk)
            self.closed = True
        except BlockingIOError:
            pass
        except ConnectionResetError:
            self.closed = True
        return self.count


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed or reset ``sock`` (whatever echo is left is read)."""
    drain = Drain(sock)
    drain()
    return drain.closed


# --- Byte for byte ----------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_large_stream_is_echoed_byte_for_byte_through_the_pipe(listen_tcp: Any) -> Any:
    factory = RecordingEchoFactory()
    sock = client(listen_tcp(factory))
    try:
        payload = random.Random(1).randbytes(8 << 20)
        echoed = yield stream(sock, payload, recv_size=100_003)
        assert echoed == payload
        (proto,) = factory.protocols
        assert proto.pump is not None and proto.pump.sent == len(payload)  # the kernel's path
        assert factory.traffic.bytes_received == len(payload)  # chatd_echo_bytes_total
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_unix_socket_echo_goes_through_the_pipe_too(tmp_path: Path) -> Any:
    factory = RecordingEchoFactory()
    path = str(tmp_path / "echo.sock")
    port = reactor.listenUNIX(path, factory)  # type: ignore[attr-defined]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.setblocking(False)
        payload = random.Random(2).randbytes(2 << 20)
        assert (yield stream(sock, payload)) == payload
        (proto,) = factory.protocols
        assert proto.pump is not None and proto.pump.sent == len(payload)
    finally:
        sock.close()
        yield port.stopListening()


def echo_property_daemon(twistd: Callable[..., Twistd]) -> int:
    daemon = twistd("chatd", "--state", "none", "--listen", "tcp:0:interface=127.0.0.1",
                    "--echo", "tcp:0:interface=127.0.0.1", "--echo-udp",
                    "udp:0:interface=127.0.0.1", "--max-per-ip", "0", "--connect-rate", "0")
    return daemon.wait_listening("echo")[0]


def drive(port: int, payload: bytes, sends: list[int], reads: list[int], lazy: bool,
          half_close: bool, rcvbuf: int | None) -> bytes:
    """One echo client over blocking-free sockets: ``payload`` sent in chunks of the sizes
    in ``sends`` (cycled), read with the sizes in ``reads``; a ``lazy`` client reads only
    when the kernel will not take more (so chatd's pipe stalls); ``half_close`` shuts the
    sending side after the last byte and reads until the server closes; ``rcvbuf`` (a
    small receive window) leaves little in the kernels, so chatd's pipe stalls sooner."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(WAIT_SECONDS)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    got = bytearray()
    sent = turn = 0
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        while len(got) < len(payload) or half_close:
            assert time.monotonic() < deadline, f"{len(got)} of {len(payload)} echoed"
            want_write = sent < len(payload)
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [],
                                                  0.5)
            blocked = not writable
            if writable:
                size = sends[turn % len(sends)]
                try:
                    sent += sock.send(payload[sent:sent + size])
                except BlockingIOError:
                    blocked = True
                if sent == len(payload) and half_close:
                    sock.shutdown(socket.SHUT_WR)
            if readable and (not lazy or blocked or sent == len(payload)):
                data = sock.recv(reads[turn % len(reads)])
                if not data:
                    break
                got += data
            turn += 1
    finally:
        sock.close()
    return bytes(got)


def test_any_chunking_is_echoed_byte_for_byte(twistd: Callable[..., Twistd]) -> None:
    """Hypothesis picks how the client cuts its sends and reads, whether it reads only when
    it must, its receive window, and whether it half-closes; a twistd echoes (blocking
    sockets need chatd in another process). Whatever the chunking, every byte comes back
    in order, and after a half-close all of it comes back before the server closes. A few
    MiB sent to a lazy reader fill the kernel's buffers, so chatd's pipe stalls and drains
    (the first example always does)."""
    port = echo_property_daemon(twistd)

    @settings(max_examples=25)
    @given(
        seed=st.integers(0, 2**32 - 1),
        size=st.integers(1, 8 << 20),
        sends=st.lists(st.integers(1, 1 << 18), min_size=1, max_size=6),
        reads=st.lists(st.integers(1, 1 << 18), min_size=1, max_size=6),
        lazy=st.booleans(),
        half_close=st.booleans(),
        rcvbuf=st.sampled_from([None, 4096]),
    )
    @example(seed=0, size=8 << 20, sends=[200_000, 65_536], reads=[150_000], lazy=True,
             half_close=True, rcvbuf=4096)
    def echoes(seed: int, size: int, sends: list[int], reads: list[int], lazy: bool,
               half_close: bool, rcvbuf: int | None) -> None:
        # Each turn moves one chunk at most: small chunks get a small payload.
        size = min(size, 512 * min(*sends, *reads))
        payload = random.Random(seed).randbytes(size)
        assert drive(port, payload, sends, reads, lazy, half_close, rcvbuf) == payload

    echoes()


# --- What a peer that does not read costs -----------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_peer_that_never_reads_makes_chatd_hold_at_most_the_pipe(listen_tcp: Any) -> Any:
    factory = RecordingEchoFactory()
    sock = client(listen_tcp(factory), rcvbuf=4096)
    try:
        sent = yield send_until_stuck(sock, lambda: bool(factory.stalled))
        (proto,) = factory.protocols
        assert factory.stalled == {proto}
        held = held_by(proto)
        assert 0 < held <= PROMISE, held
        assert proto.pump is not None and held == proto.pump.held
        assert sent > 4 * ECHO_MAX_BACKLOG  # the rest waits in the kernels, not in chatd
        # Backpressure: chatd does not even ask for the peer's bytes while the pipe is full.
        assert proto.transport not in reactor.getReaders()  # type: ignore[attr-defined]
        assert proto.transport in reactor.getWriters()  # type: ignore[attr-defined]
        # Once the peer reads, everything comes back, and the connection is not stalled.
        drain = Drain(sock)
        yield until(lambda: drain() >= sent, lambda: f"{drain.count} of {sent} read back")
        assert drain.count == sent and not drain.closed
        yield until(lambda: not factory.stalled, "the connection drained")
        assert proto.transport in reactor.getReaders()  # type: ignore[attr-defined]
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_stalled_pipes_past_the_total_backlog_are_cut_off(listen_tcp: Any,
                                                          logged: list[str]) -> Any:
    factory = RecordingEchoFactory(total_backlog=2 * ECHO_MAX_BACKLOG)
    port = listen_tcp(factory)
    socks = [client(port, rcvbuf=4096) for _ in range(3)]
    try:
        sent = []
        for n, sock in enumerate(socks[:2], 1):
            sent.append((yield send_until_stuck(sock, lambda n=n: len(factory.stalled) == n)))  # type: ignore[misc]
        assert len(factory.stalled) == 2
        third = socks[2]
        yield send_until_stuck(third, lambda: factory.rejections.counts[CUT_OFF] == 1)
        yield until(lambda: closed_by_server(third), "the third connection cut off")
        assert len(factory.stalled) == 2 and factory.protocols[2] not in factory.stalled
        assert any(CUT_OFF in line for line in logged)
        # The first peer reads all its echo: its share is free, and a newcomer may stall.
        drain = Drain(socks[0])
        yield until(lambda: drain() == sent[0] and len(factory.stalled) == 1,
                    lambda: f"{drain.count} of {sent[0]} read back")
        fourth = client(port, rcvbuf=4096)
        socks.append(fourth)
        yield send_until_stuck(fourth, lambda: len(factory.stalled) == 2)
        assert factory.rejections.counts[CUT_OFF] == 1
    finally:
        for sock in socks:
            sock.close()


# --- Idle timeout, and no descriptor outlives its connection ----------------------------------


@pytest_twisted.inlineCallbacks
def test_spliced_bytes_count_as_activity_for_the_idle_timeout(listen_tcp: Any) -> Any:
    clock = task.Clock()
    factory = RecordingEchoFactory(policy=EdgePolicy(max_line=0, idle_timeout=10.0),
                                   clock=clock)
    sock = client(listen_tcp(factory))
    try:
        assert (yield stream(sock, b"a" * 100_000)) == b"a" * 100_000
        clock.advance(9)
        assert (yield stream(sock, b"b" * 100_000)) == b"b" * 100_000  # at 9 s: 19 s now
        clock.advance(9)
        (proto,) = factory.protocols
        assert proto.edge.reason is None and not proto.transport.disconnecting
        clock.advance(1.5)
        assert proto.edge.reason == "idle timeout"
        yield until(lambda: closed_by_server(sock), "the idle connection closed")
        yield until(lambda: proto.pump is not None and proto.pump.pipe == (-1, -1),
                    "the pipe closed")
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_descriptors_stay_flat_over_many_connections_however_they_end(
    listen_tcp: Any,
) -> Any:
    """Closed by the peer after its echo, reset by the peer while stalled, timed out while
    stalled, cut off for the total backlog, timed out idle: chatd's socket and two pipe
    ends each while open, none once they are gone."""
    clock = task.Clock()
    factory = RecordingEchoFactory(policy=EdgePolicy(max_line=0, idle_timeout=60.0),
                                   clock=clock, total_backlog=3 * ECHO_MAX_BACKLOG)
    port = listen_tcp(factory)
    before = open_fds()
    for _ in range(3):
        for _ in range(20):  # a round of echo, then the peer closes (chatd reads the end)
            sock = client(port)
            assert (yield stream(sock, b"e" * 70_000)) == b"e" * 70_000
            sock.close()
        stalled = [client(port, rcvbuf=4096) for _ in range(4)]
        for n, sock in enumerate(stalled[:3], 1):
            yield send_until_stuck(sock, lambda n=n: len(factory.stalled) == n)  # type: ignore[misc]
        last = stalled[3]
        yield send_until_stuck(last, lambda last=last: closed_by_server(last))  # cut off
        idle = [client(port) for _ in range(5)]
        yield until(lambda: factory.limits.total == 8, lambda: f"{factory.limits.total} open")
        assert open_fds() == before + 8 + 3 * 8 + 1  # and the cut-off client's own socket
        for sock in stalled[:2]:  # a reset while chatd waits to write
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        yield until(lambda: factory.limits.total == 6, lambda: f"{factory.limits.total} open")
        clock.advance(61)  # the third stalled one and the idle ones time out
        yield until(lambda: factory.limits.total == 0, lambda: f"{factory.limits.total} open")
        for sock in stalled[2:] + idle:
            sock.close()
        assert not factory.stalled
        assert open_fds() == before
    assert all(p.pump is not None and p.pump.pipe == (-1, -1) for p in factory.protocols)


# --- The Python path where the kernel's cannot be had -----------------------------------------


@pytest_twisted.inlineCallbacks
def test_tls_echo_keeps_the_python_path_and_its_bound(tmp_path: Path) -> Any:
    ca, cert, key = make_certificates(tmp_path)
    factory = RecordingEchoFactory()
    server = endpoints.serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    port = yield within(server.listen(factory), "the TLS echo listening")
    options = ssl.optionsForClientTLS("localhost",
                                      trustRoot=ssl.Certificate.loadPEM(ca.read_bytes()))
    received = bytearray()

    class Client(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            received.extend(data)

    endpoint = endpoints.SSL4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port,
                                            options)
    tls_client = yield within(endpoints.connectProtocol(endpoint, Client()), "TLS connected")
    sampling: list[task.LoopingCall] = []
    try:
        payload = random.Random(3).randbytes(1 << 20)
        tls_client.transport.write(payload)
        yield until(lambda: len(received) >= len(payload), lambda: f"{len(received)} echoed")
        assert bytes(received) == payload
        (proto,) = factory.protocols
        assert proto.pump is None
        # The Python path's guard: a peer that stops reading stalls the protocol (the
        # transport pauses it as its producer), and its reading again drains it.
        tls_client.transport.pauseProducing()
        peak = [0]  # the most it held at any turn of the reactor from here on

        def sample() -> None:
            peak[0] = max(peak[0], queued_in_transport(proto.transport.transport) or 0)

        sampler = task.LoopingCall(sample)
        sampling.append(sampler)
        sampler.start(0.001)
        more = random.Random(5).randbytes(8 << 20)
        tls_client.transport.write(more)

        def holding() -> int:
            """What the echo holds (ciphertext, beneath TLS) once paused; 0 while it is not.
            A first pause can pass: the kernel's send buffer grows as the peer's receive
            window fills, takes what was held, and the echo reads on until the kernel is
            full too. Only then is the pause for good."""
            if factory.stalled != {proto}:
                return 0
            return queued_in_transport(proto.transport.transport) or 0

        yield until(holding, lambda: f"the TLS echo paused holding what its peer has not read "
                                     f"(stalled: {factory.stalled == {proto}})")
        yield sleep(0.2)  # time for a read past the pause, were there one
        held = yield until(holding, "the TLS echo still paused, holding")
        assert 0 < held <= PROMISE, held
        sampler.stop()
        assert peak[0] <= PROMISE, peak[0]  # and at no moment more, paused or not
        tls_client.transport.resumeProducing()
        everything = payload + more
        yield until(lambda: len(received) >= len(everything), lambda: f"{len(received)} echoed")
        assert bytes(received) == everything
        yield until(lambda: not factory.stalled, "the TLS echo resumed")
    finally:
        for sampler in sampling:
            if sampler.running:
                sampler.stop()
        tls_client.transport.loseConnection()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_without_a_pipe_the_connection_echoes_through_python(
    listen_tcp: Any, monkeypatch: pytest.MonkeyPatch,
) -> Any:
    def no_pipe(flags: int) -> tuple[int, int]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(splice.os, "pipe2", no_pipe)
    factory = RecordingEchoFactory()
    sock = client(listen_tcp(factory))
    try:
        payload = random.Random(4).randbytes(1 << 20)
        assert (yield stream(sock, payload)) == payload
        (proto,) = factory.protocols
        assert proto.pump is None and proto.transport.producer is proto
        assert factory.traffic.bytes_received == len(payload)
    finally:
        sock.close()


@pytest_twisted.inlineCallbacks
def test_past_the_pipe_cap_connections_echo_through_python(listen_tcp: Any) -> Any:
    """At most ``max_pipes`` connections hold a pipe (two descriptors each) at once: more
    idle echo connections cost one descriptor each, as before splice."""
    factory = RecordingEchoFactory(max_pipes=2)
    port = listen_tcp(factory)
    socks = [client(port) for _ in range(3)]
    try:
        yield until(lambda: len(factory.protocols) == 3, "three connections made")
        assert [proto.pump is not None for proto in factory.protocols] == [True, True, False]
        assert factory.pipes == 2
        payload = random.Random(5).randbytes(1 << 18)
        assert (yield stream(socks[2], payload)) == payload  # the third echoes through Python
        socks[0].close()
        yield until(lambda: factory.pipes == 1, "the first connection's pipe given back")
        fourth = client(port)
        socks.append(fourth)
        yield until(lambda: len(factory.protocols) == 4, "a fourth connection made")
        assert factory.protocols[3].pump is not None and factory.pipes == 2
        assert (yield stream(fourth, payload)) == payload
    finally:
        for sock in socks:
            sock.close()
    yield until(lambda: factory.pipes == 0, "every pipe given back")


def test_only_plain_stream_sockets_are_spliced() -> None:
    from twisted.internet.testing import StringTransport

    assert not splice.can_splice(StringTransport())


def test_echo_pipes_count_against_the_echos_bound_so_chat_keeps_its_descriptors(
    twistd: Callable[..., Twistd],
) -> None:
    """A pipe is two descriptors besides its connection's socket: they count against the
    echo's --max-clients as connections do, so echo clients can hold no more descriptors
    than they could before splice, and chat keeps what it had. Here the daemon may open 256
    descriptors and --max-clients is 156 (the default with that limit): echo clients open
    connections until refused, and chat newcomers still get in. (Before, 82 spliced echo
    connections took all 256, and every chat newcomer was closed unanswered by Twisted's
    EMFILE recovery.)"""
    limit, max_clients = 256, 156
    daemon = twistd("chatd", "--state", "none", "--listen", "tcp:0:interface=127.0.0.1",
                    "--echo", "tcp:0:interface=127.0.0.1", "--echo-udp",
                    "udp:0:interface=127.0.0.1", "--max-per-ip", "0", "--connect-rate", "0",
                    "--max-clients", str(max_clients))
    chat_port, echo_port = daemon.wait_listening("chat", "echo")
    assert daemon.process is not None
    pid = daemon.process.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    echoes: list[socket.socket] = []
    chats: list[socket.socket] = []
    try:
        for _ in range(max_clients + 10):  # past the echo's bound
            sock = socket.create_connection(("127.0.0.1", echo_port), timeout=WAIT_SECONDS)
            echoes.append(sock)
            try:
                sock.sendall(b"x")
                echoed = sock.recv(1)
            except ConnectionResetError:  # closed with our byte unread
                echoed = b""
            if echoed != b"x":
                break  # refused
        else:
            raise AssertionError("the echo never refused a connection")
        assert len(os.listdir(f"/proc/{pid}/fd")) < limit
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", chat_port), timeout=WAIT_SECONDS)
            chats.append(sock)
            assert sock.recv(64).startswith(b"*** Welcome to chatd")
    finally:
        for sock in echoes + chats:
            sock.close()
