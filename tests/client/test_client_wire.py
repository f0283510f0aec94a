"""Classification of server lines, nick tracking and input interpretation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd.client.commands import interpret, split_lines
from chatd.client.nicks import NickBook, fold
from chatd.client.presence import Presence
from chatd.client.wire import (
    REMOVAL_PREFIXES,
    AwayCleared,
    AwaySet,
    Joined,
    Kind,
    Left,
    Line,
    Moved,
    NickList,
    Renamed,
    YouAre,
    classify,
    nick_event,
    presence_event,
)


@pytest.mark.parametrize(
    ("raw", "kind", "nick", "text"),
    [
        ("<alice> hello there", Kind.CHAT, "alice", "hello there"),
        ("<alice> ", Kind.CHAT, "alice", ""),
        ("<alice>", Kind.CHAT, "alice", ""),
        ("<bob> <alice> quoted", Kind.CHAT, "bob", "<alice> quoted"),
        ("* alice waves", Kind.ACTION, "alice", "waves"),
        ("*** guest2 has joined", Kind.NOTICE, None, "guest2 has joined"),
        (
            '*** Error: nickname "bob" is already taken',
            Kind.ERROR,
            None,
            'nickname "bob" is already taken',
        ),
        ("*bob* psst", Kind.PRIVATE, "bob", "psst"),
        ("-> *bob* psst back", Kind.PRIVATE_SENT, "bob", "psst back"),
        ("no shape at all", Kind.OTHER, None, "no shape at all"),
        ("", Kind.OTHER, None, ""),
        ("<not a nick> x", Kind.OTHER, None, "<not a nick> x"),
    ],
)
def test_classify_shapes(raw: str, kind: Kind, nick: str | None, text: str) -> None:
    line = classify(raw)
    assert (line.kind, line.nick, line.text, line.raw) == (kind, nick, text, raw)
    assert line.timestamp is None


def test_timestamp_prefix_on_any_shape() -> None:
    line = classify("[12:34] <alice> hi")
    assert (line.kind, line.nick, line.text, line.timestamp) == (Kind.CHAT, "alice", "hi", "12:34")
    line = classify("[09:05] *** Error: nope")
    assert (line.kind, line.text, line.timestamp) == (Kind.ERROR, "nope", "09:05")
    assert classify("[09:05] * bob dances").kind is Kind.ACTION


def test_history_lines_carry_a_date() -> None:
    line = classify("[2026-11-28 14:03] <alice> hi")
    assert (line.kind, line.nick, line.text, line.timestamp) == (
        Kind.CHAT, "alice", "hi", "2026-11-28 14:03"
    )


def test_unicode_nicks() -> None:
    line = classify("<Jürgen_2> grüß dich")
    assert line.nick == "Jürgen_2"
    assert fold("JÜRGEN_2") == fold("jürgen_2")
    assert fold("\uff46\uff55\uff4c\uff4c") == "full"  # NFKC folds fullwidth letters


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ("Welcome to chatd! You are guest1. Type /help for a list of commands.", YouAre("guest1")),
        ("guest2 has joined", Joined("guest2")),
        ("guest2 has joined #lobby", Joined("guest2")),
        ("guest2 has left (connection lost)", Left("guest2")),
        ("guest1 is now known as alice", Renamed("guest1", "alice")),
        ("Users online (2): alice, bob", NickList(("alice", "bob"))),
        ("Users in #lobby (2): alice, bob (away)", NickList(("alice", "bob"))),
        ("Server is shutting down. Goodbye.", None),
        # Notices about you that do not name your nick.
        ("You are now in #dev (3 users)", None),
        ("You are marked as away: lunch", None),
        ("You are no longer marked as away", None),
        ("You are now ignoring mallory", None),
        ("You are not ignoring anyone", None),
    ],
)
def test_nick_events(text: str, event: object) -> None:
    assert nick_event(Line(Kind.NOTICE, text)) == event


def test_nick_events_only_from_notices() -> None:
    # A chat line that looks like a notice must not change what we know.
    assert nick_event(classify("<mallory> guest1 is now known as mallory")) is None


def test_nick_book_tracks_me_and_others() -> None:
    book = NickBook()
    for raw in [
        "*** Welcome to chatd! You are guest1. Type /help for a list of commands.",
        "*** Users online (3): guest1, bob, Carol",
        "*** guest1 is now known as alice",
        "*** dave has joined",
        "*** bob has left (quit)",
    ]:
        event = nick_event(classify(raw))
        assert event is not None
        book.apply(event)
    assert book.me == "alice"
    assert book.is_me("ALICE")
    assert book.names() == ["alice", "Carol", "dave"]
    assert "carol" in book
    assert "bob" not in book
    book.saw("Eve")
    book.apply(Renamed("eve", "evelyn"))
    assert "Eve" not in book and "evelyn" in book
    assert book.me == "alice"


def test_interpret_plain_text_is_sent_and_echoed() -> None:
    out = interpret("hello", "alice")
    assert out.send == "hello"
    assert out.echo == Line(Kind.SELF, "hello", "alice")
    assert not out.quit


def test_interpret_commands() -> None:
    me = interpret("/me waves", "alice")
    assert me.send == "/me waves" and me.echo == Line(Kind.SELF_ACTION, "waves", "alice")
    slash = interpret("//etc/passwd is a file", "alice")
    assert slash.send == "//etc/passwd is a file"
    assert slash.echo == Line(Kind.SELF, "/etc/passwd is a file", "alice")
    who = interpret("/who", "alice")
    assert (who.send, who.echo, who.quit) == ("/who", None, False)
    quit_ = interpret("/QUIT bye all", "alice")
    assert (quit_.send, quit_.echo, quit_.quit) == ("/QUIT bye all", None, True)
    assert interpret("   ", "alice").send is None
    assert interpret("hi", None).echo == Line(Kind.SELF, "hi", "me")


def test_split_lines() -> None:
    assert split_lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert split_lines("one") == ["one"]


# --- Kicks and bans: the lines after which the client does not come back --------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        # Kicked while connected.
        ("*** You have been kicked by root: spamming", Kind.KICKED),
        ("[12:34] *** You have been kicked by root: no reason given", Kind.KICKED),
        # Banned while connected.
        ("*** You have been banned by root for 2h: spamming", Kind.BANNED),
        ("*** You have been banned by root for good: flooding", Kind.BANNED),
        # Refused at connect: a ban on our address.
        ("*** Error: you are banned from this server: spam (until 2026-11-29 10:00)", Kind.BANNED),
        # Refused at reconnect: kicked a moment ago.
        ("*** Error: you were kicked from this server; come back in 30 seconds", Kind.KICKED),
    ],
)
def test_kick_and_ban_lines_are_recognised(raw: str, kind: Kind) -> None:
    line = classify(raw)
    assert line.kind is kind
    assert line.raw == raw
    assert raw.endswith(line.text) and line.text.startswith(("You have been", "Error: you"))


@pytest.mark.parametrize(
    "raw",
    [
        "<mallory> *** You have been kicked by root: fake",  # someone saying it
        "* mallory *** You have been banned by root",
        "*mallory* *** Error: you are banned from this server: fake",
        "*** mallory has been kicked by root: spam",  # someone else
        "*** You have been muted by root",
        "*** Error: you are not an operator",
        "*** [wall from root] You have been kicked by nobody",
    ],
)
def test_lookalikes_are_not_kicks_or_bans(raw: str) -> None:
    assert classify(raw).kind not in (Kind.KICKED, Kind.BANNED)


@given(st.text())
def test_classify_any_line(raw: str) -> None:
    line = classify(raw)
    assert line.raw == raw
    body = raw.split("] ", 1)[1] if line.timestamp is not None else raw
    removal = [kind for prefix, kind in REMOVAL_PREFIXES if body.startswith(prefix)]
    assert (line.kind in (Kind.KICKED, Kind.BANNED)) == bool(removal)
    if removal:
        assert line.kind is removal[0]


@given(st.sampled_from([p for p, _ in REMOVAL_PREFIXES]), st.text())
def test_every_removal_prefix_with_any_tail(prefix: str, tail: str) -> None:
    assert classify(prefix + tail).kind in (Kind.KICKED, Kind.BANNED)


# --- Our room and away text, restored after a reconnect -------------------------------------


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ("You are now in #dev (3 users)", Moved("#dev")),
        ("You are now in #Dev_2 (1 user)", Moved("#Dev_2")),
        ("You are marked as away: lunch, back at 2", AwaySet("lunch, back at 2")),
        ("You are marked as away: away", AwaySet("away")),
        ("You are no longer marked as away", AwayCleared()),
        ("guest2 has joined #dev", None),
        ("bob is away: lunch", None),
    ],
)
def test_presence_events(text: str, event: object) -> None:
    assert presence_event(Line(Kind.NOTICE, text)) == event


def test_presence_events_only_from_notices() -> None:
    assert presence_event(classify("<mallory> You are now in #trap (1 user)")) is None
    assert presence_event(classify("*** You are now in #dev (2 users)")) == Moved("#dev")


def test_presence_restores_room_and_away() -> None:
    p = Presence()
    assert p.restore() == []  # the server puts a new connection in its room, not away
    p.apply(Moved("#dev"))
    p.apply(AwaySet("lunch"))
    assert p.restore() == ["/join #dev", "/away lunch"]
    p.apply(AwayCleared())
    assert p.restore() == ["/join #dev"]


def test_rejoining_the_starting_room_says_nothing() -> None:
    p = Presence()
    already = classify("*** Error: you are already in #Lobby")
    assert not p.answers_rejoin(already)  # the user's own /join: shown
    p.apply(Moved("#lobby"))  # back in the room connections start in
    assert p.restore() == ["/join #lobby"]
    assert not p.answers_rejoin(classify("*** Error: you are already in #dev"))
    assert p.answers_rejoin(already)  # answers our rejoin: not shown
    assert not p.answers_rejoin(already)  # once only
    p.restore()
    p.apply(Moved("#lobby"))  # the rejoin worked after all
    assert not p.answers_rejoin(already)


def test_interpret_reconnect_is_never_sent() -> None:
    out = interpret("/reconnect", "alice")
    assert (out.send, out.reconnect, out.quit) == (None, True, False)
    assert interpret("/RECONNECT", None).reconnect
    assert not interpret("/reconnected is not a command", "alice").reconnect
