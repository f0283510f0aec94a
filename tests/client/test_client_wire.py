"""Classification of server lines, nick tracking and input interpretation."""

from __future__ import annotations

import pytest

from chatd.client.commands import interpret, split_lines
from chatd.client.nicks import NickBook, fold
from chatd.client.wire import (
    Joined,
    Kind,
    Left,
    Line,
    NickList,
    Renamed,
    YouAre,
    classify,
    nick_event,
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
