"""The line protocol and the chat service, over StringTransport with a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from chatd.service import SHUTDOWN_NOTICE
from chatd.version import VERSION
from tests.support import MemoryChat, take_lines


@pytest.fixture
def chat() -> MemoryChat:
    return MemoryChat()


def test_greeting_names_server_nick_and_help(chat: MemoryChat) -> None:
    _, t = chat.connect()
    assert take_lines(t) == [
        "*** Welcome to chatd! You are guest1. Type /help for a list of commands. "
        f"(chatd {VERSION})"
    ]


def test_others_see_join_and_leave(chat: MemoryChat) -> None:
    _, ta = chat.connect()
    take_lines(ta)
    b, _ = chat.connect()
    assert take_lines(ta) == ["*** guest2 has joined #lobby"]
    b.connectionLost(Failure(ConnectionLost()))
    assert take_lines(ta) == ["*** guest2 has left #lobby (connection lost)"]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_line_endings(chat: MemoryChat, ending: bytes) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"one" + ending + b"two" + ending)
    assert take_lines(tb) == ["<guest1> one", "<guest1> two"]


def test_lines_split_across_reads_including_crlf(chat: MemoryChat) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    for chunk in [b"hel", b"lo\r", b"\nwor", b"ld\r", b"\n"]:
        a.dataReceived(chunk)
    assert take_lines(tb) == ["<guest1> hello", "<guest1> world"]


def test_sender_does_not_get_its_own_line(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    chat.connect()
    take_lines(ta)
    a.dataReceived(b"hi\n")
    assert take_lines(ta) == []


def test_empty_and_blank_lines_are_ignored(chat: MemoryChat) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"\n\r\n   \n\t\n")
    assert take_lines(tb) == []


def test_double_slash_sends_literal_slash(chat: MemoryChat) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"//help me\n")
    assert take_lines(tb) == ["<guest1> /help me"]


def test_me(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(b"/me waves\n")
    assert take_lines(tb) == ["* guest1 waves"]
    a.dataReceived(b"/me\n")
    assert take_lines(ta) == ["*** Error: usage: /me ACTION"]
    assert take_lines(tb) == []


def test_nick_change_is_seen_by_everyone(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(b"/nick alice\n")
    assert take_lines(ta) == ["*** guest1 is now known as alice"]
    assert take_lines(tb) == ["*** guest1 is now known as alice"]
    a.dataReceived(b"hello\n")
    assert take_lines(tb) == ["<alice> hello"]


@pytest.mark.parametrize("taken", [b"ALICE", b"Alice", "ａｌｉｃｅ".encode()])
def test_nick_taken_case_insensitively(chat: MemoryChat, taken: bytes) -> None:
    a, _ = chat.connect()
    b, tb = chat.connect()
    _, tc = chat.connect()
    a.dataReceived(b"/nick alice\n")
    take_lines(tb), take_lines(tc)
    b.dataReceived(b"/nick " + taken + b"\n")
    assert take_lines(tb) == [f'*** Error: nickname "{taken.decode()}" is already taken'.replace(
        "ａｌｉｃｅ", "alice")]
    assert take_lines(tc) == []


@pytest.mark.parametrize("bad", [b"/nick 9lives", b"/nick a\xe2\x80\x8bb", b"/nick " + b"x" * 25])
def test_invalid_nick_gets_the_rule(chat: MemoryChat, bad: bytes) -> None:
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(bad + b"\n")
    [line] = take_lines(ta)
    assert line.startswith("*** Error: invalid nickname: use 1 to 24 letters")
    assert take_lines(tb) == []


def test_nick_without_argument(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    take_lines(ta)
    a.dataReceived(b"/nick\n")
    assert take_lines(ta) == ["*** Error: usage: /nick NAME"]


def test_nick_may_change_case_of_own_name(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    a.dataReceived(b"/nick alice\n/nick Alice\n")
    assert take_lines(ta)[-1] == "*** alice is now known as Alice"


def test_who_lists_everyone_in_the_room(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    b, _ = chat.connect()
    b.dataReceived(b"/nick bob\n")
    take_lines(ta)
    a.dataReceived(b"/who\n")
    assert take_lines(ta) == ["*** Users in #lobby (2): bob, guest1"]


def test_help_lists_every_command(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    take_lines(ta)
    a.dataReceived(b"/HELP\n")
    lines = take_lines(ta)
    for name in ["/nick", "/me", "/who", "/help", "/quit", "/join", "/rooms", "/topic",
                 "/msg", "/reply", "/history", "/away", "/back", "/ignore", "/unignore",
                 "/timestamps"]:
        assert any(line.startswith(f"*** {name}") for line in lines), (name, lines)


def test_unknown_command_is_an_error_to_sender_only(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(b"/frobnicate now\n")
    assert take_lines(ta) == [
        "*** Error: unknown command /frobnicate; type /help for a list of commands"
    ]
    assert take_lines(tb) == []


def test_quit_with_reason(chat: MemoryChat) -> None:
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(b"/quit gone fishing\nthis is never sent\n")
    assert take_lines(ta) == ["*** Goodbye."]
    assert ta.disconnecting
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb) == ["*** guest1 has left #lobby (gone fishing)"]


def test_quit_without_reason(chat: MemoryChat) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"/quit\n")
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb) == ["*** guest1 has left #lobby (quit)"]


def test_text_is_decoded_and_cleaned_before_anyone_sees_it(chat: MemoryChat) -> None:
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"\xff\xfb\x01\x1b]0;pwned\x07caf\xe9\n")
    assert take_lines(tb) == ["<guest1> ]0;pwnedcaf\ufffd"]


class TestMaxLine:
    def test_long_line_is_refused_and_connection_stays_usable(self) -> None:
        chat = MemoryChat(max_line=10)
        a, ta = chat.connect()
        _, tb = chat.connect()
        take_lines(ta), take_lines(tb)
        a.dataReceived(b"x" * 11 + b"\nok\n")
        assert take_lines(ta) == [
            "*** Error: line too long (the limit is 10 bytes); it was not sent"
        ]
        assert take_lines(tb) == ["<guest1> ok"]

    def test_endless_line_is_not_buffered(self) -> None:
        chat = MemoryChat(max_line=10)
        a, ta = chat.connect()
        _, tb = chat.connect()
        take_lines(ta), take_lines(tb)
        for _ in range(1000):
            a.dataReceived(b"y" * 7)
            assert len(a._buffer) <= 10 + 7
        a.dataReceived(b"tail\nafter\n")
        assert take_lines(ta) == [
            "*** Error: line too long (the limit is 10 bytes); it was not sent"
        ]
        assert take_lines(tb) == ["<guest1> after"]

    def test_zero_means_no_limit(self) -> None:
        chat = MemoryChat(max_line=0)
        a, _ = chat.connect()
        _, tb = chat.connect()
        take_lines(tb)
        a.dataReceived(b"z" * 100_000 + b"\n")
        assert take_lines(tb) == ["<guest1> " + "z" * 100_000]


class TestShutdown:
    def test_everyone_gets_goodbye_and_is_disconnected(self, chat: MemoryChat) -> None:
        clients = [chat.connect() for _ in range(3)]
        for _, t in clients:
            take_lines(t)
        done = chat.service.stopService()
        assert done is not None
        for proto, t in clients:
            assert take_lines(t) == [f"*** {SHUTDOWN_NOTICE}"]
            assert t.disconnecting
            proto.connectionLost(Failure(ConnectionDone()))
            assert take_lines(t) == []  # no leave notices while everyone leaves
        assert done.called

    def test_peers_that_do_not_close_are_aborted(self, chat: MemoryChat) -> None:
        _, t = chat.connect()
        done = chat.service.stopService()
        assert done is not None and not done.called
        chat.clock.advance(chat.service.shutdown_grace)
        assert t.disconnecting and done.called

    def test_no_clients_stops_at_once(self, chat: MemoryChat) -> None:
        stopped = chat.service.stopService()
        assert stopped.called  # nothing to wait for: no clients, nothing queued to write
