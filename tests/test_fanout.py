"""Fan-out per read (chatd/fanout.py): one block per speaker's run of lines in one room, one
write per recipient, and every recipient still sees exactly what it saw line by line."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatd.backpressure import SendBufferGuard
from chatd.fanout import ChatLineBatch
from chatd.moderation.moderator import Moderator
from chatd.moderation.operators import OperatorAuthenticator
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from tests.support import MemoryChat, take_lines


class CountingTransport(StringTransport):
    """Counts the writes a connection is handed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def _room(chat: MemoryChat, nicks: list[str]) -> list[tuple[ChatProtocol, CountingTransport]]:
    """Clients on counting transports, renamed to ``nicks``, with nothing left to read."""
    people = []
    for n, nick in enumerate(nicks):
        peer = IPv4Address("TCP", "127.0.0.1", 41000 + n)
        proto = chat.factory.buildProtocol(peer)
        assert isinstance(proto, ChatProtocol)
        transport = CountingTransport(peerAddress=peer)
        proto.makeConnection(transport)
        proto.dataReceived(f"/nick {nick}\n".encode())
        people.append((proto, transport))
    for _, t in people:
        t.clear()
        t.writes = 0
    return people


def test_a_paste_is_one_write_per_recipient_with_every_line_in_order() -> None:
    chat = MemoryChat(flood_rate=0)
    (alice, ta), (_, tb), (_, tc) = _room(chat, ["alice", "bob", "carol"])
    paste = b"".join(b"line %d\n" % i for i in range(100)) + b"/me waves\n"
    alice.dataReceived(paste)
    expected = [f"<alice> line {i}" for i in range(100)] + ["* alice waves"]
    for t in (tb, tc):
        assert t.writes == 1
        assert take_lines(t) == expected
    assert ta.writes == 0  # the speaker does not hear themself


def test_a_read_is_one_pick_of_recipients_and_each_line_is_rendered_once() -> None:
    chat = MemoryChat(flood_rate=0)
    people = _room(chat, ["alice"] + [f"u{i}" for i in range(20)])
    formatter = chat.factory.formatter
    calls = []
    real = formatter.format

    def counting(event: Any, at: float | None = None) -> bytes:
        calls.append(event)
        return real(event, at)

    chat.factory.formatter = type("F", (), {"format": staticmethod(counting)})()
    broadcasts = []
    real_broadcast = chat.factory.broadcast

    def counting_broadcast(data: bytes, clients: Any) -> None:
        broadcasts.append(len(clients))
        real_broadcast(data, clients)

    chat.factory.broadcast = counting_broadcast  # type: ignore[method-assign]
    people[0][0].dataReceived(b"a\nb\nc\n")
    assert len(calls) == 3
    assert broadcasts == [20]  # the recipients are picked and handed the bytes once
    assert all(take_lines(t) == ["<alice> a", "<alice> b", "<alice> c"] for _, t in people[1:])


def test_other_speakers_events_and_commands_keep_their_place() -> None:
    chat = MemoryChat(flood_rate=0)
    (alice, _), (bob, _), (_, tc) = _room(chat, ["alice", "bob", "carol"])
    with chat.factory.output_batch:  # one read's worth of work, as a resume or paste makes
        alice.dataReceived(b"one\ntwo\n")
        bob.dataReceived(b"three\n")
        alice.dataReceived(b"four\n/msg carol psst\nfive\n/nick alicia\nsix\n")
        assert bob.user is not None  # an event that no command of alice's made
        chat.service.private_message(bob.user, "carol", "from bob")
        alice.dataReceived(b"seven\n")
    assert take_lines(tc) == [
        "<alice> one", "<alice> two", "<bob> three", "<alice> four", "*alice* psst",
        "<alice> five", "*** alice is now known as alicia", "<alicia> six", "*bob* from bob",
        "<alicia> seven",
    ]  # fmt: skip


def test_a_command_that_writes_to_someone_else_comes_after_the_lines_before_it() -> None:
    chat = MemoryChat(flood_rate=0)
    authenticator = OperatorAuthenticator(
        chat.clock, {"root": hash_password("pw", n=2**4)}, lambda check: defer.succeed(check())
    )
    chat.factory.commands.moderator = Moderator(chat.service, chat.clock, authenticator)
    (alice, ta), (_, tb) = _room(chat, ["alice", "bob"])
    alice.dataReceived(b"/oper root pw\n")
    assert take_lines(ta) == ["*** You are now an operator (root)."]
    alice.dataReceived(b"last words\n/kick bob bye\n")  # the kick writes to bob directly
    assert take_lines(tb) == ["<alice> last words", "*** You have been kicked by alice: bye"]


def test_ignore_lists_and_timestamps_hold_for_the_whole_block() -> None:
    chat = MemoryChat(flood_rate=0)
    (alice, _), (bob, tb), (carol, tc), (_, td) = _room(chat, ["alice", "bob", "carol", "dan"])
    bob.dataReceived(b"/ignore alice\n")
    carol.dataReceived(b"/timestamps on\n")
    for t in (tb, tc):
        t.clear()
    chat.clock.advance(3600 * 5 + 60 * 7)
    alice.dataReceived(b"x\ny\n")
    assert take_lines(tb) == []
    stamp = time.strftime("[%H:%M] ", time.localtime(chat.clock.seconds()))
    assert take_lines(tc) == [f"{stamp}<alice> x", f"{stamp}<alice> y"]
    assert take_lines(td) == ["<alice> x", "<alice> y"]


def test_one_flood_gate_release_is_one_write_per_recipient() -> None:
    chat = MemoryChat(flood_rate=10, flood_burst=3, flood_queue=50)
    (alice, _), (_, tb) = _room(chat, ["alice", "bob"])
    chat.clock.advance(10)  # the burst is back
    alice.dataReceived(b"".join(b"%d\n" % i for i in range(9)))
    assert take_lines(tb) == ["<alice> 0", "<alice> 1", "<alice> 2"] and tb.writes == 1
    chat.clock.advance(0.3)  # three tokens again: one release lets three lines through
    assert take_lines(tb) == ["<alice> 3", "<alice> 4", "<alice> 5"] and tb.writes == 2


def test_the_send_buffer_bound_counts_every_byte_of_every_block() -> None:
    chat = MemoryChat(flood_rate=0, send_buffer=10_000, send_grace=5)
    (alice, _), (_, tb) = _room(chat, ["alice", "bob"])
    assert isinstance(tb.producer, SendBufferGuard)
    tb.producer.pauseProducing()  # bob does not read: his transport is full

    def paste(first: int) -> None:  # 80 lines of 100 bytes to bob: 8,000 bytes in one block
        lines = range(first, first + 80)
        alice.dataReceived(b"".join(b"%05d %s\n" % (i, b"x" * 84) for i in lines))

    paste(0)
    paste(80)  # 16,000 queued: over the limit, inside the grace, under twice the limit
    assert not tb.disconnecting and tb.writes == 2
    paste(160)  # 24,000: past twice the limit, cut off at once, as line by line
    assert tb.disconnecting and tb.writes == 2


def test_the_batch_holds_one_run_and_delivers_it_on_exit() -> None:
    runs: list[list[Any]] = []
    batch = ChatLineBatch(runs.append)

    class Line:
        def __init__(self, room: str, nick: str) -> None:
            self.room, self.nick, self.origin = room, nick, "here"

    a1, a2, b1 = Line("#r", "a"), Line("#r", "a"), Line("#r", "b")
    assert not batch.hold(a1)  # not active: the caller delivers it now
    with batch:
        with batch:
            assert batch.hold(a1) and batch.hold(a2)
        assert runs == []  # the inner exit is not the end of the read
        assert batch.hold(b1)
        assert runs == [[a1, a2]]
    assert runs == [[a1, a2], [b1]]


def test_a_newcomer_gets_its_greeting_in_one_write() -> None:
    chat = MemoryChat(service_args={"motd": ["first", "second"]})
    chat.connect()
    peer = IPv4Address("TCP", "127.0.0.1", 41999)
    proto = chat.factory.buildProtocol(peer)
    assert proto is not None
    transport = CountingTransport(peerAddress=peer)
    proto.makeConnection(transport)
    lines = take_lines(transport)
    assert lines[0].startswith("*** Welcome to") and "*** | second" in lines
    assert transport.writes == 1  # not one system call per line of it
