"""Rendering: harmless control characters, stable nick colours, styles; completion."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatd.client.commands import COMMANDS
from chatd.client.completion import ChatCompleter, candidates
from chatd.client.render import (
    NICK_COLOURS,
    nick_colour,
    plain,
    render,
    sanitize,
    sanitize_fragments,
)
from chatd.client.wire import Kind, Line, classify


def test_sanitize_c0_esc_del_c1() -> None:
    assert sanitize("a\x1b[2Jb") == "a^[[2Jb"
    assert sanitize("bell\x07 nul\x00 tab\t cr\r") == "bell^G nul^@ tab^I cr^M"
    assert sanitize("del\x7f") == "del^?"
    assert sanitize("csi\x9b31m") == "csi<U+009B>31m"
    assert sanitize("nel\x85") == "nel<U+0085>"
    assert sanitize("rtl\u202eevil") == "rtl<U+202E>evil"
    assert sanitize("ls\u2028x") == "ls<U+2028>x"
    assert sanitize("plain ünïcödé ✓ 日本") == "plain ünïcödé ✓ 日本"


def test_control_fragments_are_styled_apart() -> None:
    assert sanitize_fragments("a\x1bb", "class:x") == [
        ("class:x", "a"),
        ("class:x class:ctrl", "^["),
        ("class:x", "b"),
    ]


@given(st.text())
def test_sanitized_text_has_no_control_characters(text: str) -> None:
    shown = sanitize(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    for line in (classify(text), Line(Kind.SELF, text, text)):
        for _, frag in render(line, "me"):
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in frag)
        assert "\x1b" not in plain(line)


def test_nick_colours_are_stable_and_case_insensitive() -> None:
    # CRC-32 based: the same in every process (hash() would not be).
    assert nick_colour("alice") == nick_colour("ALICE") == nick_colour("Alice")
    colours = {nick_colour(f"user{i}") for i in range(100)}
    assert len(colours) > len(NICK_COLOURS) // 2


def test_nick_colour_known_value() -> None:
    import zlib

    assert nick_colour("bob") == NICK_COLOURS[zlib.crc32(b"bob") % len(NICK_COLOURS)]


def _styles(line: Line, me: str | None = None) -> dict[str, str]:
    return {text: style for style, text in render(line, me)}


def test_render_chat_line() -> None:
    frags = render(classify("<bob> hello"))
    assert "".join(t for _, t in frags) == "<bob> hello"
    assert f"fg:{nick_colour('bob')}" in _styles(classify("<bob> hello"))["bob"]


def test_render_styles_by_kind() -> None:
    assert "class:notice" in _styles(classify("*** bob has joined"))["*** bob has joined"]
    assert "class:error" in _styles(classify("*** Error: no"))["*** Error: no"]
    for removal in (
        "*** You have been kicked by root: spam",
        "*** Error: you are banned from this server: spam (for good)",
    ):
        assert "class:error" in _styles(classify(removal))[removal]
    assert "class:pm" in _styles(classify("*bob* psst"))["psst"]
    assert "class:pm-sent" in _styles(classify("-> *bob* psst"))["psst"]
    assert "class:action" in _styles(classify("* bob waves"))["waves"]
    assert "class:status" in _styles(Line(Kind.STATUS, "Connected"))["-!- Connected"]
    assert "class:self" in _styles(Line(Kind.SELF, "mine", "alice"))["mine"]
    assert "class:mention" in _styles(classify("<bob> hi Alice"), "alice")["hi Alice"]
    assert "class:timestamp" in _styles(classify("[10:00] <bob> x"))["[10:00] "]


def test_render_nick_with_controls_is_harmless() -> None:
    line = Line(Kind.CHAT, "x", "ev\x1bil")
    assert "".join(t for _, t in render(line)) == "<ev^[il> x"


def test_plain_is_the_raw_line_made_harmless() -> None:
    assert plain(classify("[10:00] <bob> \x1b[31mred")) == "[10:00] <bob> ^[[31mred"
    assert plain(Line(Kind.STATUS, "Connected")) == "-!- Connected"


def test_complete_commands_at_line_start() -> None:
    assert candidates("/ni", COMMANDS, []) == ("/ni", ["/nick"])
    assert candidates("/M", COMMANDS, []) == ("/M", ["/me", "/msg", "/mute", "/mutes"])
    assert candidates("/ki", COMMANDS, []) == ("/ki", ["/kick"])  # operator commands too
    assert candidates("/rec", COMMANDS, []) == ("/rec", ["/reconnect"])  # and the client's
    assert candidates("", COMMANDS, ["bob"]) == ("", [])


def test_complete_nicks() -> None:
    nicks = ["alice", "Bob", "bobby"]
    assert candidates("bo", COMMANDS, nicks) == ("bo", ["Bob: ", "bobby: "])
    assert candidates("hi BO", COMMANDS, nicks) == ("BO", ["Bob", "bobby"])
    assert candidates("/msg al", COMMANDS, nicks) == ("al", ["alice"])
    assert candidates("hi zed", COMMANDS, nicks) == ("zed", [])


def test_completer_yields_completions() -> None:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    completer = ChatCompleter(COMMANDS, lambda: ["alice", "bob"])
    got = list(
        completer.get_completions(Document("/msg b"), CompleteEvent(completion_requested=True))
    )
    assert [(c.text, c.start_position) for c in got] == [("bob", -1)]
