"""The edge against real sockets on loopback: a reader that asks for megabytes and never
reads, and a sender that half-closes with lines still queued (``seq 120 | nc -N``)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest_twisted

from chatd.protocol import ChatProtocol
from tests.support import RunningDaemon, connect_client, local_args, sleep

SEND_BUFFER = 1024 * 1024
GRACE = 1.0


@pytest_twisted.inlineCallbacks
def test_history_hog_that_never_reads_is_cut_off_within_the_grace() -> Any:
    daemon = RunningDaemon(local_args(
        "--flood-rate", "0", "--send-grace", str(GRACE), "--send-buffer", str(SEND_BUFFER)))
    hog = socket.socket()
    try:
        filler = yield connect_client(daemon.chat_port)
        filler.send(b"/join #pin\n")
        yield filler.wait_for(r"You are now in #pin")
        filler.send(b"".join(b"%03d %s\n" % (i, b"p" * 3995) for i in range(100)))
        deadline = time.monotonic() + 10
        while len(daemon.chat.find_room("#pin").history) < 100:
            assert time.monotonic() < deadline, "the room never got its 100 lines"
            yield sleep(0.01)
        # 4 KiB of receive buffer, and never a read: 49 x 400 kB of history is asked for,
        # once the hog is in #pin and its edge is in hand (asked for at once, a loaded
        # reactor can take the hog in, and cut it off, before the test looks).
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", daemon.chat_port))
        hog.sendall(b"/join #pin\n")
        yield filler.wait_for(r"guest2 has joined #pin")
        user = daemon.chat.users["guest2"]
        assert isinstance(user.client, ChatProtocol)
        edge = user.client.edge
        started, largest = time.monotonic(), 0
        hog.sendall(b"/history\n" * 49)
        while "guest2" in daemon.chat.users:
            largest = max(largest, edge._backlog())
            assert time.monotonic() - started < GRACE + 3, "never cut off"
            yield sleep(0.002)
        cut_after = time.monotonic() - started
        yield filler.wait_for(r"guest2 has left #pin \(not reading\)")
        assert cut_after < GRACE + 1.5
        # Held for it, wherever it waited: at most twice the bound, plus one reply.
        assert largest <= 2 * SEND_BUFFER + 100 * 4012, largest
        filler.transport.loseConnection()
    finally:
        hog.close()
        yield daemon.stop()


@pytest_twisted.inlineCallbacks
def test_lines_queued_before_a_half_close_are_all_delivered() -> Any:
    daemon = RunningDaemon(local_args("--flood-rate", "100", "--flood-burst", "50"))
    sender = socket.socket()
    try:
        reader = yield connect_client(daemon.chat_port)
        sender.connect(("127.0.0.1", daemon.chat_port))
        yield reader.wait_for("guest2 has joined")
        # seq 120 | nc -N: 120 lines in one go, then the sending half closes. A /who at
        # the end: its answer still reaches the sender, whose receiving half stays open.
        sender.sendall(b"".join(b"%d\n" % i for i in range(1, 121)) + b"/who\n")
        sender.shutdown(socket.SHUT_WR)
        yield reader.wait_for(r"^<guest2> 120$")
        said = [line for line in reader.lines if line.startswith("<guest2>")]
        assert said == [f"<guest2> {i}" for i in range(1, 121)]
        yield reader.wait_for(r"guest2 has left #lobby")
        sender.settimeout(5)
        received = b""
        while chunk := sender.recv(65536):  # the server closes its side once it is done
            received += chunk
        assert b"Error" not in received
        assert b"*** Users in #lobby (2): guest1, guest2\r\n" in received
        reader.transport.loseConnection()
    finally:
        sender.close()
        yield daemon.stop()
