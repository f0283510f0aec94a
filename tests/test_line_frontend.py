"""The line front-end as Twisted's LineReceiver: linear on big pastes, lines in order
around asynchronous commands, telnet replies in line with the input."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.task import Clock
from twisted.protocols.basic import LineReceiver

from chatd.framing import LineInput
from chatd.moderation.moderator import Moderator
from chatd.moderation.operators import OperatorAuthenticator
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from tests.support import MemoryChat, take_lines


def test_the_line_protocol_is_a_line_receiver() -> None:
    assert issubclass(ChatProtocol, LineReceiver)
    chat = MemoryChat(max_line=100)
    a, _ = chat.connect()
    assert a.MAX_LENGTH == 100 and a.delimiter == b"\n"


def _paste_seconds(lines: int) -> float:
    """The least thread CPU time of three pastes of ``lines`` lines of 200 bytes, each in one
    write: CPU time, so that other processes on a loaded machine do not count against it."""
    data = b"".join(b"%06d %s\n" % (i, b"x" * 193) for i in range(lines))
    best = float("inf")
    for _ in range(3):
        chat = MemoryChat(flood_rate=0, max_line=4096, service_args={"history_size": 0})
        a, _ = chat.connect()
        started = time.thread_time()
        a.dataReceived(data)
        best = min(best, time.thread_time() - started)
    return best


def test_a_big_paste_costs_linear_time() -> None:
    # LineReceiver copies the rest of its buffer for every line it splits off: fed 20,000
    # lines at once that is 100 times the copying of 2,000 (a ratio near 50 here). Fed in
    # slices, the cost is linear: a ratio near 10.
    small, large = _paste_seconds(2_000), _paste_seconds(20_000)
    assert large / small < 20, (small, large)


def test_oper_then_bans_in_one_write_answer_in_order() -> None:
    clock = Clock()
    chat = MemoryChat()
    chat.clock = clock
    password_hash = hash_password("pw", n=2**4)

    def in_a_thread(check: Any) -> defer.Deferred[bool]:
        return task.deferLater(chat.clock, 0.05, check)  # the check takes a while

    authenticator = OperatorAuthenticator(chat.clock, {"root": password_hash}, in_a_thread)
    chat.factory.commands.moderator = Moderator(chat.service, chat.clock, authenticator)
    a, ta = chat.connect()
    take_lines(ta)
    a.dataReceived(b"/oper root pw\n/bans\n")
    assert take_lines(ta) == []
    chat.clock.advance(0.05)
    assert take_lines(ta) == ["*** You are now an operator (root).", "*** No bans are in force."]


class RepliesAfterEachLine:
    """A telnet filter that asks for a reply after each line (as ^C's timing mark does)."""

    discarded = 0

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        return [(line + b"\n", b"<reply>\r\n") for line in data.split(b"\n") if line]


def test_telnet_replies_go_out_after_the_input_before_them() -> None:
    chat = MemoryChat()
    a, ta = chat.connect()
    take_lines(ta)
    a.input.telnet = RepliesAfterEachLine()
    a.dataReceived(b"/who\n/rooms\n")
    assert take_lines(ta) == [
        "*** Users in #lobby (1): guest1", "<reply>",
        "*** Rooms (1):", "***   #lobby (1 user)", "<reply>",
    ]


def test_line_endings_become_lf() -> None:
    pre = LineInput()
    assert pre.feed(b"a\r\nb\rc\n") == [(b"a\nb\nc\n", b"")]
    # telnet's WILL ECHO is refused (DONT ECHO), after the input before it.
    assert pre.feed(b"\xff\xfb\x01d\n") == [(b"", b"\xff\xfe\x01"), (b"d\n", b"")]
    assert pre.discarded == 3
