"""Every slash command of issue 5 over StringTransport: its reply shapes and its errors."""

from __future__ import annotations

import time

import pytest
from twisted.internet.testing import StringTransport

from chatd.protocol import ChatProtocol
from chatd.version import VERSION
from tests.support import MemoryChat, take_lines

Client = tuple[ChatProtocol, StringTransport]


@pytest.fixture
def chat() -> MemoryChat:
    return MemoryChat(service_args={"history_size": 4, "replay_size": 2})


def named(chat: MemoryChat, nick: str) -> Client:
    proto, transport = chat.connect()
    proto.dataReceived(f"/nick {nick}\n".encode())
    return proto, transport


def people(chat: MemoryChat, *nicks: str) -> list[Client]:
    clients = [named(chat, nick) for nick in nicks]
    for _, transport in clients:
        transport.clear()
    return clients


def history_stamp(seconds: float) -> str:
    return time.strftime("[%Y-%m-%d %H:%M] ", time.localtime(seconds))


def test_join_shows_topic_and_replay_and_moves_the_talk(chat: MemoryChat) -> None:
    (a, ta), (b, tb), (_c, tc) = people(chat, "alice", "bob", "carol")
    a.dataReceived(b"/join #Dev\n/topic shipping\none\ntwo\n/me three\n")
    take_lines(ta), take_lines(tc)
    assert take_lines(tb)[0] == "*** alice has left #lobby (joined #Dev)"
    b.dataReceived(b"/join #dev\n")
    stamp = history_stamp(0)
    assert take_lines(tb) == [
        "*** You are now in #Dev (2 users)",
        "*** Topic of #Dev: shipping (set by alice)",
        "*** History of #Dev (last 2 lines):",
        f"{stamp}<alice> two",
        f"{stamp}* alice three",
        "*** End of history.",
    ]
    assert take_lines(ta) == ["*** bob has joined #Dev"]
    assert take_lines(tc) == ["*** bob has left #lobby (joined #Dev)"]
    b.dataReceived(b"in dev\n")
    assert take_lines(ta) == ["<bob> in dev"]
    assert take_lines(tc) == []


# Each bad input of the new commands, and the start of the error it gets (alice and bob
# connected in #lobby, history kept 4 lines deep).
ERROR_CASES = [
    (b"/join\n", "usage: /join #ROOM"),
    (b"/join #bad name\n", "invalid room name '#bad name': use '#' followed by 1 to 32 "
                           "letters, digits, '-' or '_'"),
    (b"/join #" + b"x" * 33 + b"\n", "invalid room name"),
    (b"/join #LOBBY\n", "you are already in #lobby"),
    (b"/who #nowhere\n", "no such room #nowhere"),
    (b"/who #no!\n", "invalid room name"),
    (b"/msg\n", "usage: /msg NICK TEXT"),
    (b"/msg bob\n", "usage: /msg NICK TEXT"),
    (b"/msg nobody hi\n", 'no such user "nobody"'),
    (b"/msg alice hi\n", "you cannot message yourself"),
    (b"/reply hi\n", "nobody has sent you a private message yet"),
    (b"/describe\n", "usage: /describe NICK ACTION"),
    (b"/describe bob  \n", "usage: /describe NICK ACTION"),
    (b"/describe nobody waves\n", 'no such user "nobody"'),
    (b"/describe alice waves\n", "you cannot message yourself"),
    (b"/reply\n", "usage: /reply TEXT"),
    (b"/history 0\n", "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    (b"/history lots\n", "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    (b"/history -3\n", "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    # more than kept
    (b"/history 5\n", "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    ("/history ²\n".encode(), "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    ("/history ٣\n".encode(), "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    (b"/history " + b"9" * 4000 + b"\n",
     "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    (b"/history #lobby 0\n", "usage: /history [#ROOM] [N], N a whole number from 1 to 4"),
    (b"/history #dev\n", "you are not in #dev"),
    (b"/history #" + b"x" * 4000 + b" 1\n", "you are not in #" + "x" * 32),
    (b"/back\n", "you are not marked as away"),
    (b"/ignore alice\n", "you cannot ignore yourself"),
    (b"/ignore nobody\n", 'no such user "nobody"'),
    (b"/unignore bob\n", 'you are not ignoring "bob"'),
    (b"/unignore\n", "usage: /unignore NICK"),
    (b"/timestamps maybe\n", "usage: /timestamps on|off"),
]


@pytest.mark.parametrize(("line", "error"), ERROR_CASES)
def test_errors_go_to_the_sender_only(chat: MemoryChat, line: bytes, error: str) -> None:
    (a, ta), (_, tb) = people(chat, "alice", "bob")
    a.dataReceived(line)
    lines = take_lines(ta)
    assert len(lines) == 1 and lines[0].startswith(f"*** Error: {error}"), lines
    assert take_lines(tb) == []


def test_rooms_lists_counts_and_topics(chat: MemoryChat) -> None:
    (a, ta), (b, _), (c, _) = people(chat, "alice", "bob", "carol")
    b.dataReceived(b"/join #dev\n/topic all things dev\n")
    c.dataReceived(b"/join #empty\n/join #lobby\n")  # forgotten: nothing was said there
    take_lines(ta)
    a.dataReceived(b"/rooms\n")
    assert take_lines(ta) == [
        "*** Rooms (2):",
        "***   #dev (1 user): all things dev",
        "***   #lobby (2 users)",
    ]


def test_topic_shows_and_sets(chat: MemoryChat) -> None:
    (a, ta), (_, tb) = people(chat, "alice", "bob")
    a.dataReceived(b"/topic\n")
    assert take_lines(ta) == ["*** #lobby has no topic"]
    a.dataReceived(b"/topic cake at four\n")
    assert take_lines(ta) == take_lines(tb) == [
        "*** alice set the topic of #lobby to: cake at four"
    ]
    a.dataReceived(b"/topic\n")
    assert take_lines(ta) == ["*** Topic of #lobby: cake at four (set by alice)"]


def test_who_shows_away_and_other_rooms(chat: MemoryChat) -> None:
    (a, ta), (b, tb), (c, _) = people(chat, "alice", "bob", "carol")
    c.dataReceived(b"/join #dev\n")
    take_lines(ta), take_lines(tb)
    b.dataReceived(b"/away lunch\n")
    assert take_lines(tb) == ["*** You are marked as away: lunch"]
    a.dataReceived(b"/who\n/who dev\n")
    assert take_lines(ta) == [
        "*** Users in #lobby (2): alice, bob (away)",
        "*** Users in #dev (1): carol",
    ]
    b.dataReceived(b"/back\n")
    assert take_lines(tb) == ["*** You are no longer marked as away"]
    a.dataReceived(b"/who\n")
    assert take_lines(ta) == ["*** Users in #lobby (2): alice, bob"]


def test_who_of_an_empty_room_says_so(chat: MemoryChat) -> None:
    (a, ta), = people(chat, "alice")
    a.dataReceived(b"/join #side\n/topic kept while empty\n/join #lobby\n")
    take_lines(ta)
    a.dataReceived(b"/who #side\n")
    assert take_lines(ta) == ["*** No one is in #side"]


def test_msg_reply_and_away_reason(chat: MemoryChat) -> None:
    (a, ta), (b, tb), (_, tc) = people(chat, "alice", "bob", "carol")
    b.dataReceived(b"/away in a meeting\n")
    take_lines(tb)
    a.dataReceived(b"/msg BOB are you there?\n")
    assert take_lines(ta) == ["-> *bob* are you there?", "*** bob is away: in a meeting"]
    assert take_lines(tb) == ["*alice* are you there?"]
    b.dataReceived(b"/reply yes, briefly\n")
    assert take_lines(tb) == ["-> *alice* yes, briefly"]
    assert take_lines(ta) == ["*bob* yes, briefly"]
    assert take_lines(tc) == []
    # /describe: a private /me, in the private frame; /reply answers it as it does /msg.
    a.dataReceived(b"/describe BOB  waves from afar\n")
    assert take_lines(ta) == ["-> *bob* * alice waves from afar", "*** bob is away: in a meeting"]
    assert take_lines(tb) == ["*alice* * alice waves from afar"]
    b.dataReceived(b"/reply hello\n")
    assert take_lines(ta) == ["*bob* hello"]
    assert take_lines(tc) == []


def test_history_command(chat: MemoryChat) -> None:
    (a, _ta), (b, tb) = people(chat, "alice", "bob")
    b.dataReceived(b"/history\n")
    assert take_lines(tb) == ["*** No history in #lobby yet"]
    chat.clock.advance(90061)  # 1970-01-02 01:01:01 UTC
    for i in range(6):
        a.dataReceived(f"line {i}\n".encode())
    take_lines(tb)
    stamp = history_stamp(90061)
    b.dataReceived(b"/history\n")
    assert take_lines(tb) == [
        "*** History of #lobby (last 4 lines):",
        *(f"{stamp}<alice> line {i}" for i in range(2, 6)),
        "*** End of history.",
    ]
    b.dataReceived(b"/history 1\n/history 4\n")
    lines = take_lines(tb)
    assert lines[:3] == ["*** History of #lobby (last 1 line):", f"{stamp}<alice> line 5",
                         "*** End of history."]
    assert lines[3] == "*** History of #lobby (last 4 lines):"
    b.dataReceived(b"/history #LOBBY  1\n")  # a room of your own named: the same
    assert take_lines(tb)[:2] == ["*** History of #lobby (last 1 line):",
                                  f"{stamp}<alice> line 5"]


def test_no_history_kept() -> None:
    chat = MemoryChat(service_args={"history_size": 0})
    a, ta = chat.connect()
    a.dataReceived(b"hello\n/history\n")
    assert take_lines(ta)[-1] == "*** Error: this server keeps no history"


def test_ignore_and_unignore(chat: MemoryChat) -> None:
    (a, ta), (b, tb) = people(chat, "alice", "bob")
    b.dataReceived(b"/ignore\n/ignore ALICE\n/ignore\n")
    assert take_lines(tb) == [
        "*** You are not ignoring anyone",
        "*** You are now ignoring alice",
        "*** Ignoring (1): alice",
    ]
    a.dataReceived(b"noise\n/me makes noise\n/msg bob psst\n")
    assert take_lines(tb) == []
    assert take_lines(ta) == ["-> *bob* psst"]  # the sender is not told
    b.dataReceived(b"/ignore alice\n/unignore alice\n")
    assert take_lines(tb) == [
        "*** Error: you are already ignoring alice",
        "*** You are no longer ignoring alice",
    ]
    a.dataReceived(b"hello again\n")
    assert take_lines(tb) == ["<alice> hello again"]


def test_timestamps_on_every_line(chat: MemoryChat) -> None:
    (a, ta), (b, tb) = people(chat, "alice", "bob")
    chat.clock.advance(3 * 3600 + 25 * 60)
    b.dataReceived(b"/timestamps\n/timestamps ON\n")
    clock = time.strftime("[%H:%M] ", time.localtime(chat.clock.seconds()))
    assert take_lines(tb) == ["*** Timestamps are off", f"{clock}*** Timestamps are on"]
    a.dataReceived(b"hi\n/msg bob psst\n")
    assert take_lines(tb) == [f"{clock}<alice> hi", f"{clock}*alice* psst"]
    assert take_lines(ta) == ["-> *bob* psst"]  # only bob asked for them
    b.dataReceived(b"/msg alice ok\n/bogus\n/timestamps off\n")
    assert take_lines(tb) == [
        f"{clock}-> *alice* ok",
        f"{clock}*** Error: unknown command /bogus; type /help for a list of commands",
        "*** Timestamps are off",
    ]


def test_motd_after_greeting_then_lobby_history() -> None:
    chat = MemoryChat(service_args={"motd": ["Be nice.", "", "alice has joined #x"]})
    a, _ta = chat.connect()
    a.dataReceived(b"earlier\n")
    _, tb = chat.connect()
    assert take_lines(tb) == [
        "*** Welcome to chatd! You are guest2. Type /help for a list of commands. "
        f"(chatd {VERSION})",
        "*** | Be nice.",
        "*** | ",
        "*** | alice has joined #x",
        "*** History of #lobby (last 1 line):",
        f"{history_stamp(0)}<guest1> earlier",
        "*** End of history.",
    ]
