"""Hostile clients against the real daemon on loopback: long lines, pastes, stalled readers,
connection floods, resets mid-broadcast, and the echo guards."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.logger import LogEvent, globalLogPublisher

from chatd.protocol import ChatProtocol
from tests.support import (
    LineClient,
    RunningDaemon,
    connect_client,
    local_args,
    sleep,
    until,
    waiting_datagrams,
    within,
)


@pytest.fixture
def errors_logged() -> Generator[list[LogEvent], None, None]:
    """Log events that carry a failure or an error level: there must be none."""
    from twisted.logger import LogLevel

    errors: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if "log_failure" in event or event.get("log_level") in (LogLevel.error,
                                                                LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observer)
    yield errors
    globalLogPublisher.removeObserver(observer)


@defer.inlineCallbacks
def connect_many(port: int, count: int) -> Any:
    clients = []
    for _ in range(count):
        clients.append((yield connect_client(port)))
    return clients


def server_protocol(daemon: RunningDaemon, nick: str) -> ChatProtocol:
    client = daemon.chat.users[nick].client
    assert isinstance(client, ChatProtocol)
    return client


@pytest_twisted.inlineCallbacks
def test_300_kb_line_without_newline_is_refused_and_not_buffered() -> Any:
    daemon = RunningDaemon(local_args())
    try:
        sender = yield connect_client(daemon.chat_port)
        other = yield connect_client(daemon.chat_port)
        yield sender.wait_for("guest2 has joined")
        server_side = server_protocol(daemon, "guest1")
        largest = 0
        for _ in range(30):  # 30 x 10 kB, no newline, read by the server as it arrives
            sender.send(b"A" * 10_000)
            yield sleep(0.005)
            largest = max(largest, len(server_side._buffer))
        error = yield sender.wait_for(r"^\*\*\* Error: line too long")
        assert error == "*** Error: line too long (the limit is 4096 bytes); it was not sent"
        assert largest <= 4096 + 65536  # at most the limit plus one read
        sender.send(b"tail of the long line\nstill here\n")
        assert (yield other.wait_for("^<guest1>")) == "<guest1> still here"
        assert sum("line too long" in line for line in sender.lines) == 1
        for client in (sender, other):
            client.transport.loseConnection()
    finally:
        yield daemon.stop()


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_10000_line_paste_arrives_in_order_at_the_flood_rate() -> Any:
    rate = 5000
    daemon = RunningDaemon(local_args(
        "--flood-rate", str(rate), "--flood-burst", "10", "--flood-queue", "10000"))
    try:
        sender = yield connect_client(daemon.chat_port)
        other = yield connect_client(daemon.chat_port)
        yield sender.wait_for("guest2 has joined")
        started = time.monotonic()
        sender.send(b"".join(b"paste %d\n" % i for i in range(10_000)))
        yield other.wait_for(r"^<guest1> paste 9999$")
        elapsed = time.monotonic() - started
        pasted = [line for line in other.lines if line.startswith("<guest1>")]
        assert pasted == [f"<guest1> paste {i}" for i in range(10_000)]
        assert elapsed >= (10_000 - 10) / rate * 0.95  # released at the rate, not at once
        assert not any("Error" in line for line in sender.lines)
        for client in (sender, other):
            client.transport.loseConnection()
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_paste_past_the_queue_bound_loses_only_what_is_past_it() -> Any:
    daemon = RunningDaemon(local_args(
        "--flood-rate", "1000", "--flood-burst", "10", "--flood-queue", "100"))
    try:
        sender = yield connect_client(daemon.chat_port)
        other = yield connect_client(daemon.chat_port)
        yield sender.wait_for("guest2 has joined")
        sender.send(b"".join(b"paste %d\n" % i for i in range(3000)))
        yield sender.wait_for(r"^\*\*\* Error: you are sending faster than 1000 lines")
        yield other.wait_for(r"^<guest1> paste 109$")  # the burst and the queue have drained
        numbers = [int(line.rsplit(" ", 1)[1]) for line in other.lines
                   if line.startswith("<guest1>")]
        assert numbers == sorted(numbers)  # in order
        assert numbers[:110] == list(range(110))  # the burst and the queue: nothing lost
        assert len(numbers) < 3000  # some were past the bound
        assert sum("sending faster" in line for line in sender.lines) == 1
        for client in (sender, other):
            client.transport.loseConnection()
    finally:
        yield daemon.stop()


def _pending_output(transport: Any) -> int:
    """What a TCP transport still has to send (test-only peek at Twisted's internals)."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_stalled_reader_is_cut_off_while_20_mb_flows(errors_logged: list[LogEvent]) -> Any:
    send_buffer = 1024 * 1024
    daemon = RunningDaemon(local_args("--flood-rate", "0", "--send-grace", "1"))
    try:
        sender = yield connect_client(daemon.chat_port)
        readers = (yield connect_many(daemon.chat_port, 2))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", daemon.chat_port))  # and never reads
        yield readers[-1].wait_for("guest4 has joined")
        stalled_transport = server_protocol(daemon, "guest4").transport
        largest = 0

        def watch() -> None:
            nonlocal largest
            if stalled_transport.connected:
                largest = max(largest, _pending_output(stalled_transport))

        watcher = task.LoopingCall(watch)
        watcher.start(0.002)
        line = b"x" * 4000
        count = 5000  # 20 MB of chat
        for start in range(0, count, 250):
            sender.send(b"".join(b"%05d %s\n" % (i, line) for i in range(start, start + 250)))
            yield sleep(0.01)
        for reader in readers:
            yield reader.wait_for(rf"^<guest1> {count - 1:05d} ")
            said = [x for x in reader.lines if x.startswith("<guest1>")]
            assert len(said) == count
            assert [int(x.split()[1]) for x in said] == list(range(count))
        watcher.stop()
        assert "*** guest4 has left #lobby (not reading)" in readers[0].lines
        assert "guest4" not in daemon.chat.users
        assert largest <= 2 * send_buffer + 2 * 65536  # the hard bound, plus one write
        stalled.close()
        for client in (sender, *readers):
            client.transport.loseConnection()
    finally:
        yield daemon.stop()
    assert errors_logged == []


@pytest_twisted.inlineCallbacks
def test_per_address_limit_refuses_the_newcomer_with_a_reason() -> Any:
    daemon = RunningDaemon(local_args("--max-per-ip", "3"))
    try:
        clients = (yield connect_many(daemon.chat_port, 3))
        extra = yield connect_client(daemon.chat_port, greeting=False)
        yield extra.wait_closed()
        assert extra.lines == [
            "*** Error: too many connections from your address (the limit is 3); "
            "try again later"
        ]
        assert len(daemon.chat.users) == 3
        clients[0].transport.loseConnection()
        yield clients[1].wait_for("guest1 has left")
        again = yield connect_client(daemon.chat_port)  # a slot is free again
        for client in (*clients[1:], again):
            client.transport.loseConnection()
        # TCP echo has its own count with the same bound; an echo client cannot be told why.
        echo = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.echo_port)
        echoes = []
        for _ in range(4):
            echoes.append((yield endpoints.connectProtocol(echo, LineClient())))
        yield within(echoes[3].closed, "the fourth echo connection from one address is open")
        assert not echoes[3].lines
        for client in echoes[:3]:
            assert client.transport.connected
            client.transport.loseConnection()
    finally:
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_total_limit_refuses_the_newcomer_with_a_reason() -> Any:
    daemon = RunningDaemon(local_args("--max-clients", "2", "--max-per-ip", "0"))
    try:
        clients = (yield connect_many(daemon.chat_port, 2))
        extra = yield connect_client(daemon.chat_port, greeting=False)
        yield extra.wait_closed()
        assert extra.lines == [
            "*** Error: the server is full (the limit is 2 connections); try again later"
        ]
        for client in clients:
            client.transport.loseConnection()
    finally:
        yield daemon.stop()


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_resets_mid_broadcast_cost_nobody_else_anything(
    errors_logged: list[LogEvent],
) -> Any:
    daemon = RunningDaemon(local_args("--flood-rate", "0", "--max-per-ip", "0",
                                      "--connect-rate", "0"))
    try:
        sender = yield connect_client(daemon.chat_port)
        stayers = (yield connect_many(daemon.chat_port, 10))
        leavers = (yield connect_many(daemon.chat_port, 30))
        yield stayers[0].wait_for("guest41 has joined")
        # Half the leavers stop reading and their sockets hold little, so what chatd sends
        # them piles up in chatd (Twisted's write path meets the reset); the other half read
        # on, so chatd's own send() meets it (chatd/output.py).
        stalled = leavers[:15]
        stalled_sides = [server_protocol(daemon, f"guest{n}").transport for n in range(12, 27)]
        for leaver, server_side in zip(stalled, stalled_sides, strict=True):
            leaver.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            server_side.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            leaver.transport.pauseProducing()
        count = 2000
        lines = [b"%04d %s\n" % (i, b"y" * 500) for i in range(count)]
        sender.send(b"".join(lines[: count // 2]))
        # The resets must find output queued in chatd, or they test less than they say.
        yield until(lambda: all(_pending_output(t) > 0 for t in stalled_sides),
                    "output queued in chatd for every stalled leaver")
        for leaver in leavers:
            leaver.transport.abortConnection()  # an RST, while output is queued for it
        sender.send(b"".join(lines[count // 2:]))
        for stayer in stayers:
            yield stayer.wait_for(rf"^<guest1> {count - 1:04d} ")
            said = [x for x in stayer.lines if x.startswith("<guest1>")]
            assert [int(x.split()[1]) for x in said] == list(range(count))
        yield sleep(0.1)
        assert len(daemon.chat.users) == 11
        chat_factory = next(iter(daemon.listeners())).port.factory  # type: ignore[union-attr]
        assert chat_factory.limits.total == 11  # no connection left counted: no leak
        for client in (sender, *stayers):
            client.transport.loseConnection()
    finally:
        yield daemon.stop()
    assert errors_logged == []


@pytest.mark.slow
@pytest_twisted.inlineCallbacks
def test_echo_backpressure_stops_reading_from_a_client_that_does_not_read() -> Any:
    daemon = RunningDaemon(local_args())
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.connect(("127.0.0.1", daemon.echo_port))
        sock.setblocking(False)
        chunk = os.urandom(65536)
        sent = 0
        stuck_since = None
        while sent < 64 * 1024 * 1024:
            try:
                sent += sock.send(chunk)
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 0.5:
                    break
                yield sleep(0.01)
        # The server stopped reading: we are stuck well short of 64 MB.
        assert sent < 32 * 1024 * 1024, sent
        received = 0
        deadline = time.monotonic() + 20
        while received < sent and time.monotonic() < deadline:
            try:
                received += len(sock.recv(1 << 20))
            except BlockingIOError:
                yield sleep(0.005)
        assert received == sent  # and nothing was lost on the way
    finally:
        sock.close()
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_udp_guards_over_the_wire() -> Any:
    rate = 5
    daemon = RunningDaemon(local_args("--echo-udp-rate", str(rate), "--echo-udp-max-size", "100"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    answers: list[bytes] = []

    def read_answers() -> int:
        answers.extend(data for data, _ in waiting_datagrams(sock))
        return len(answers)

    try:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        target = ("127.0.0.1", daemon.udp_port)
        started = time.monotonic()
        sock.sendto(b"x" * 101, target)  # too large: no answer
        for i in range(20):
            sock.sendto(b"%d" % i, target)
        # The burst (one second's worth) comes back however loaded the machine is ...
        yield until(lambda: read_answers() >= rate, f"{rate} answers; got {answers}")
        yield sleep(0.2)  # ... and anything more than the bucket allows would come now
        read_answers()
        elapsed = time.monotonic() - started
        assert answers[:rate] == [b"%d" % i for i in range(rate)]
        # Past the burst, only what the bucket refilled while we sent and waited.
        assert len(answers) <= rate + int(rate * elapsed) + 1, (answers, elapsed)
        assert all(len(a) <= 100 for a in answers)
    finally:
        sock.close()
        yield daemon.stop()
