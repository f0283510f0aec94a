"""Chat events as IRC lines, and the server's numeric replies."""

from __future__ import annotations

import calendar
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd.events import (
    Acted,
    Announcement,
    Event,
    Joined,
    Left,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
)
from chatd.history import HistoryEntry
from chatd.irc import numerics
from chatd.irc.message import MAX_LINE, Message, parse, serialize
from chatd.irc.render import IRCFormatter, irc_server_name, server_time

FORMATTER = IRCFormatter("chatd")
NOON = calendar.timegm((2026, 11, 28, 12, 0, 0)) + 0.25


@pytest.mark.parametrize(("event", "line"), [
    (Said("#lobby", "bob", "hello"), ":bob!bob@chatd PRIVMSG #lobby :hello"),
    (Acted("#lobby", "bob", "waves"), ":bob!bob@chatd PRIVMSG #lobby :\x01ACTION waves\x01"),
    (PrivateMessage("bob", "alice", "psst, hi"), ":bob!bob@chatd PRIVMSG alice :psst, hi"),
    (PrivateMessage("bob", "alice", "winks", action=True),
     ":bob!bob@chatd PRIVMSG alice :\x01ACTION winks\x01"),
    (Joined("#dev", "bob"), ":bob!bob@chatd JOIN :#dev"),
    (Left("#dev", "bob", "joined #lobby"), ":bob!bob@chatd PART #dev :joined #lobby"),
    (Left("#dev", "bob", "see you", quit=True), ":bob!bob@chatd QUIT :see you"),
    (Renamed("bob", "robert"), ":bob!bob@chatd NICK :robert"),
    (TopicChanged("#dev", "bob", "release day"), ":bob!bob@chatd TOPIC #dev :release day"),
    (Announcement("Server is shutting down. Goodbye."),
     ":chatd NOTICE * :Server is shutting down. Goodbye."),
    (RoomNotice("#dev", "mallory was muted"), ":chatd NOTICE #dev :mallory was muted"),
])
def test_events_as_irc_lines(event: Event, line: str) -> None:
    assert FORMATTER.format(event) == (line + "\r\n").encode("utf-8")


def test_server_time_tag() -> None:
    assert server_time(NOON) == "2026-11-28T12:00:00.250Z"
    assert FORMATTER.format(Joined("#a", "bob"), NOON) == (
        b"@time=2026-11-28T12:00:00.250Z :bob!bob@chatd JOIN :#a\r\n")


def test_a_long_line_user_line_becomes_several_privmsgs_losing_nothing() -> None:
    text = " ".join(["Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich."] * 60)
    data = FORMATTER.format(Said("#lobby", "bob", text))
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) > 5
    said = ""
    for line in lines:
        assert len(line) + 2 <= MAX_LINE
        message = parse(line)
        assert message is not None and message.params[0] == "#lobby"
        said += message.params[1]
    assert said == text


def test_a_long_action_is_an_action_on_every_line() -> None:
    lines = FORMATTER.format(Acted("#a", "bob", "x" * 1200)).split(b"\r\n")[:-1]
    assert len(lines) == 3
    assert all(b" :\x01ACTION x" in line and line.endswith(b"x\x01") for line in lines)


def test_server_names_with_spaces_become_one_word() -> None:
    assert irc_server_name("My Chat Server!") == "My-Chat-Server"
    assert irc_server_name("chat.example.org") == "chat.example.org"
    assert irc_server_name("  ") == "chatd"
    assert IRCFormatter("my chat").format(Announcement("hi")) == b":my-chat NOTICE * :hi\r\n"


def test_history_with_server_time_is_the_lines_as_sent_with_their_time() -> None:
    entries = [HistoryEntry(NOON, Said("#a", "bob", "old news")),
               HistoryEntry(NOON + 60, Acted("#a", "eve", "yawns"))]
    assert [serialize(m) for m in FORMATTER.history("#a", entries, tagged=True)] == [
        b"@time=2026-11-28T12:00:00.250Z :bob!bob@chatd PRIVMSG #a :old news\r\n",
        b"@time=2026-11-28T12:01:00.250Z :eve!eve@chatd PRIVMSG #a :\x01ACTION yawns\x01\r\n",
    ]


def test_history_without_server_time_is_a_block_of_dated_notices() -> None:
    entries = [HistoryEntry(NOON, Said("#a", "bob", "old news"))]
    texts = [m.params[1] for m in FORMATTER.history("#a", entries, tagged=False)]
    assert texts[0] == "History of #a (last 1 line):"
    assert texts[1].endswith("] <bob> old news") and texts[1].startswith("[2026-11-28 ")
    assert texts[2] == "End of history."
    assert FORMATTER.history("#a", [], tagged=False) == []


# --- Numerics ---------------------------------------------------------------------------------


def lines(messages: list[Message]) -> list[str]:
    return [serialize(m).decode("utf-8").rstrip("\r\n") for m in messages]


def test_welcome_burst() -> None:
    assert lines(numerics.welcome("srv", "alice", "chatd", "chatd-0.1", NOON,
                                  "alice!alice@srv")) == [
        ":srv 001 alice :Welcome to the chatd IRC network alice!alice@srv",
        ":srv 002 alice :Your host is srv, running version chatd-0.1",
        ":srv 003 alice :This server was created 2026-11-28 12:00:00 UTC",
        ":srv 004 alice srv chatd-0.1 i :n",
    ]


def test_isupport_splits_at_thirteen_tokens() -> None:
    tokens: dict[str, str | None] = {f"T{i}": str(i) for i in range(15)}
    tokens["FLAG"] = None
    got = lines(numerics.isupport("srv", "alice", tokens))
    assert len(got) == 2
    assert got[0].startswith(":srv 005 alice T0=0 T1=1 ") and got[0].endswith(
        "T12=12 :are supported by this server")
    assert got[1] == ":srv 005 alice T13=13 T14=14 FLAG :are supported by this server"


def test_motd_or_its_absence() -> None:
    assert lines(numerics.motd("srv", "alice", ["hello", "be nice"])) == [
        ":srv 375 alice :- srv Message of the day - ",
        ":srv 372 alice :- hello",
        ":srv 372 alice :- be nice",
        ":srv 376 alice :End of /MOTD command.",
    ]
    assert lines(numerics.motd("srv", "alice", [])) == [":srv 422 alice :MOTD File is missing"]


def test_topic_replies() -> None:
    assert lines(numerics.topic("srv", "alice", "#a", "release day", "bob", NOON)) == [
        ":srv 332 alice #a :release day",
        f":srv 333 alice #a bob :{int(NOON)}",
    ]
    assert lines(numerics.topic("srv", "alice", "#a", "", "", 0)) == [
        ":srv 331 alice #a :No topic is set"]


def test_names_fill_lines_and_never_pass_512_bytes() -> None:
    members = [f"{'m' * (i % 23)}{i}" for i in range(400)]  # varied lengths
    got = numerics.names("srv", "alice", "#big", members)
    assert serialize(got[-1]) == b":srv 366 alice #big :End of /NAMES list.\r\n"
    listed = []
    for index, message in enumerate(got[:-1]):
        line = serialize(message)
        assert len(line) <= MAX_LINE
        assert len(line) > MAX_LINE - 25 or index == len(got) - 2  # all full but the last
        assert parse(line[:-2]) == message  # nothing was cut
        assert message.params[:3] == ("alice", "=", "#big")
        listed += message.params[3].split(" ")
    assert listed == members
    assert lines(numerics.names("srv", "alice", "#a", ["@bob", "alice"])) == [
        ":srv 353 alice = #a :@bob alice", ":srv 366 alice #a :End of /NAMES list."]


def test_names_fill_a_line_to_the_last_byte_and_not_one_more() -> None:
    room = MAX_LINE - len(b":srv 353 alice = #a :\r\n")
    exact = ["x" * (room - 2), "y"]  # with the space between them: exactly full
    assert lines(numerics.names("srv", "alice", "#a", exact))[0].endswith("x y")
    over = ["x" * (room - 1), "y"]
    assert len(numerics.names("srv", "alice", "#a", over)) == 3


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters=" \r\n\0"),
                       min_size=1, max_size=24), max_size=200))
def test_names_lines_always_fit_whole(members: list[str]) -> None:
    listed = []
    for message in numerics.names("srv", "alice", "#a", members)[:-1]:
        assert parse(serialize(message)[:-2]) == message
        listed += message.params[3].split(" ")
    assert listed == members


def test_list_who_whois_and_mode() -> None:
    assert lines(numerics.list_rooms("srv", "alice", [("#a", 2, "hi there")])) == [
        ":srv 321 alice Channel :Users  Name",
        ":srv 322 alice #a 2 :[+n] hi there",
        ":srv 323 alice :End of /LIST",
    ]
    assert lines([numerics.who_reply("srv", "alice", "#a", "bob", "srv", "bob", away=True,
                                     operator=True, realname="Bob B"),
                  numerics.end_of_who("srv", "alice", "#a")]) == [
        ":srv 352 alice #a bob srv srv bob G* :0 Bob B",
        ":srv 315 alice #a :End of /WHO list.",
    ]
    assert lines(numerics.whois("srv", "alice", "bob", "bob", "srv", "Bob B", ["#a", "#b"],
                                "lunch", True, 42, NOON)) == [
        ":srv 311 alice bob bob srv * :Bob B",
        ":srv 319 alice bob :#a #b",
        ":srv 312 alice bob srv :chatd",
        ":srv 301 alice bob :lunch",
        ":srv 313 alice bob :is an IRC operator",
        f":srv 317 alice bob 42 {int(NOON)} :seconds idle, signon time",
        ":srv 318 alice bob :End of /WHOIS list.",
    ]
    assert lines([numerics.channel_mode("srv", "alice", "#a")]) == [":srv 324 alice #a :+n"]


# --- The chat fast path: format renders a room's line as render does -----------------------------

_NAMES = st.sampled_from(["bob", "Zoë", "日本", "a" * 30, "x y", ":bob", "", "b\rb"]) | st.text(
    max_size=12)
_ROOMS = st.sampled_from(["#lobby", "#dev", "#" + "r" * 60, ":#a", "#a b", ""]) | st.text(
    max_size=12)
_SAID_TEXTS = st.sampled_from([
    "hello", "", " : colons :: ", "\x01ACTION waves\x01", "\x02bold\x0304red", "a\r\nb\0c",
    "Zwölf Boxkämpfer 日本語", "é" * 240, "x" * 470, "y " * 300, "\u202e\ufffd",
]) | st.text(max_size=600)
_SERVER_NAMES = st.sampled_from(["chatd", "irc.example.net", "my chat server", "s" * 430])
_TIMES = st.none() | st.sampled_from([NOON, NOON + 0.001]) | st.floats(0, 4e9)


def _outcome(render: Callable[[Event, float | None], bytes], event: Event,
             at: float | None = None) -> bytes | type[Exception]:
    try:
        return render(event, at)
    except ValueError as e:  # what no IRC line can carry (an invalid nick or room)
        return type(e)


@given(st.lists(_SERVER_NAMES, min_size=2, max_size=2, unique=True),
       st.lists(_NAMES, min_size=1, max_size=2),
       st.lists(_ROOMS, min_size=1, max_size=2),
       st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1), _SAID_TEXTS,
                          _TIMES), min_size=1, max_size=8))
def test_the_fast_path_renders_every_chat_line_as_render_does(
    servers: list[str], nicks: list[str], rooms: list[str],
    lines: list[tuple[int, int, int, str, float | None]],
) -> None:
    """A run of lines through one formatter (its templates kept from line to line), while
    the server's name, the speaker, the room and the time change or stay."""
    name = [servers[0]]
    formatter = IRCFormatter(lambda: name[0])
    for server, nick, room, text, at in lines:
        name[0] = servers[server % len(servers)]
        event = Said(rooms[room % len(rooms)], nicks[nick % len(nicks)], text)
        assert _outcome(formatter.format, event, at) == _outcome(formatter.render, event, at)


def test_the_fast_path_agrees_at_every_length_around_a_full_line() -> None:
    """Texts one byte either side of what fits, for prefixes that leave from 0 to 80 bytes
    (under 4 is no room at all), in one- and two-byte characters."""
    for room in range(0, 81):
        server = "s" * (MAX_LINE - len(":bob!bob@ PRIVMSG #lobby :\r\n") - room)
        formatter = IRCFormatter(server)
        for length in range(max(0, room - 3), room + 3):
            for text in ("x" * length, "é" * (length // 2), "x" + "é" * (length // 2)):
                event = Said("#lobby", "bob", text)
                assert _outcome(formatter.format, event) == _outcome(
                    formatter.render, event), (room, text)


@pytest.mark.parametrize("text", ["hello", "Zwölf 日本語 :-)", "x" * 470])
def test_a_line_that_fits_takes_the_fast_path(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    formatter = IRCFormatter("chatd")
    expected = formatter.render(Said("#lobby", "bob", text), NOON)
    monkeypatch.setattr(IRCFormatter, "render", None)  # the general path is not taken
    assert formatter.format(Said("#lobby", "bob", text), NOON) == expected


def test_a_new_server_name_shows_in_the_next_line_of_a_run() -> None:
    """The fast path's template is the speaker's, the room's and the server's: a SIGHUP
    that renames the server between two lines of one run changes the second."""
    name = ["chatd"]
    formatter = IRCFormatter(lambda: name[0])
    assert formatter.format(Said("#a", "bob", "hi")) == b":bob!bob@chatd PRIVMSG #a :hi\r\n"
    name[0] = "renamed"
    assert formatter.format(Said("#a", "bob", "hi")) == b":bob!bob@renamed PRIVMSG #a :hi\r\n"
    assert formatter.format(Said("#b", "bob", "hi")) == b":bob!bob@renamed PRIVMSG #b :hi\r\n"
    assert formatter.format(Said("#b", "al", "hi")) == b":al!al@renamed PRIVMSG #b :hi\r\n"
