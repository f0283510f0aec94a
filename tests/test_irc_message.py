"""The IRC line parser and serialiser: unit cases and properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chatd.irc.message import (
    MAX_LINE,
    Message,
    body_length,
    parse,
    parse_chat,
    parse_command,
    serialize,
    split_to_fit,
    tags_length,
)

# --- Parsing -----------------------------------------------------------------------------------


def test_parses_command_params_and_trailing() -> None:
    assert parse(b"PRIVMSG #lobby :hello world") == Message("PRIVMSG", ("#lobby", "hello world"))


def test_parses_prefix_and_upper_cases_the_command() -> None:
    assert parse(b":alice!a@h privmsg bob hi") == Message("PRIVMSG", ("bob", "hi"), "alice!a@h")


def test_parses_tags_with_escapes() -> None:
    message = parse(rb"@time=2026-01-01T00:00:00.000Z;+draft/x=a\sb\:c\\d\ne;flag PING :x")
    assert message == Message("PING", ("x",), None, {
        "time": "2026-01-01T00:00:00.000Z", "+draft/x": "a b;c\\d\ne", "flag": "",
    })


def test_a_lone_trailing_backslash_in_a_tag_value_is_dropped() -> None:
    message = parse(b"@a=x\\ PING")
    assert message is not None and message.tags == {"a": "x"}


def test_empty_trailing_is_a_parameter() -> None:
    assert parse(b"PRIVMSG #a :") == Message("PRIVMSG", ("#a", ""))


def test_runs_of_spaces_separate_like_one() -> None:
    assert parse(b"  NICK   alice  ") == Message("NICK", ("alice",))


def test_the_trailing_parameter_keeps_its_spaces_and_colons() -> None:
    assert parse(b"PRIVMSG #a ::-) two  spaces ") == Message("PRIVMSG", ("#a", ":-) two  spaces "))


@pytest.mark.parametrize("line", [b"", b"   ", b"@tag=1", b":prefix", b":prefix  ", b"12 x",
                                  b"PRIV-MSG x", b"\xff\xfe", b":a :b"])
def test_lines_without_a_command_are_none(line: bytes) -> None:
    assert parse(line) is None


def test_numerics_are_commands() -> None:
    assert parse(b":srv 001 alice :Welcome") == Message("001", ("alice", "Welcome"), "srv")


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert parse(b"PRIVMSG #a :caf\xe9") == Message("PRIVMSG", ("#a", "caf\ufffd"))


def test_lengths_count_the_body_without_tags() -> None:
    assert body_length(b"@a=1 PING x") == len(b"PING x")
    assert tags_length(b"@a=1 PING x") == len(b"@a=1 ")
    assert tags_length(b"PING x") == 0
    assert tags_length(b"@only") == len(b"@only")


# --- Serialising -------------------------------------------------------------------------------


def test_serialises_the_last_parameter_as_trailing() -> None:
    assert serialize(Message("JOIN", ("#a",), "bob!bob@h")) == b":bob!bob@h JOIN :#a\r\n"
    assert serialize(Message("PRIVMSG", ("#a", "hi there"))) == b"PRIVMSG #a :hi there\r\n"
    assert serialize(Message("PRIVMSG", ("#a", ""))) == b"PRIVMSG #a :\r\n"
    assert serialize(Message("PRIVMSG", ("#a", ":)"))) == b"PRIVMSG #a ::)\r\n"
    assert serialize(Message("PING", ())) == b"PING\r\n"


def test_serialises_tags_escaped() -> None:
    line = serialize(Message("PRIVMSG", ("#a", "x"), "s", {"time": "t", "k": "a b;c", "f": ""}))
    assert line == b"@time=t;k=a\\sb\\:c;f :s PRIVMSG #a :x\r\n"


@pytest.mark.parametrize("message", [
    Message("PRIV MSG"), Message(""), Message("PRIVMSG", ("a b", "x")),
    Message("PRIVMSG", (":a", "x")), Message("PRIVMSG", ("", "x")),
    Message("PRIVMSG", ("a\r\nQUIT", "x")), Message("PING", (), "a b"), Message("PING", (), ""),
    Message("PING", (), None, {"bad key": "x"}),
])
def test_refuses_what_no_line_can_carry(message: Message) -> None:
    with pytest.raises(ValueError):
        serialize(message)


def test_line_breaks_in_the_text_never_start_a_second_line() -> None:
    assert serialize(Message("PRIVMSG", ("#a", "hi\r\nQUIT :x\0"))) == b"PRIVMSG #a :hiQUIT :x\r\n"


def test_an_over_long_text_is_cut_at_a_character_boundary() -> None:
    line = serialize(Message("PRIVMSG", ("#a", "é" * 600)))
    assert len(line) <= MAX_LINE
    assert len(line) >= MAX_LINE - 1
    assert line.decode("utf-8").endswith("é\r\n")


def test_split_to_fit_spreads_text_over_lines_breaking_at_spaces() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    pieces = split_to_fit(Message("PRIVMSG", ("#a", words), "bob!bob@chatd"))
    assert len(pieces) > 1
    assert "".join(p.params[1] for p in pieces) == words
    for piece in pieces:
        assert len(serialize(piece)) <= MAX_LINE
        assert piece.params[1].endswith((" ", "word299"))


def test_split_to_fit_wraps_every_piece() -> None:
    pieces = split_to_fit(Message("PRIVMSG", ("#a", "x" * 1000), "b"), "\x01ACTION ", "\x01")
    assert len(pieces) == 3
    for piece in pieces:
        assert piece.params[1].startswith("\x01ACTION x") and piece.params[1].endswith("x\x01")
        assert parse(serialize(piece)[:-2]) == piece  # fits whole: nothing was cut
    assert "".join(p.params[1][8:-1] for p in pieces) == "x" * 1000


# --- Properties --------------------------------------------------------------------------------

_NO_BREAK = st.characters(codec="utf-8", exclude_characters="\r\n\0")
middles = st.text(
    st.characters(codec="utf-8", exclude_characters=" \r\n\0"), min_size=1, max_size=30,
).filter(lambda s: not s.startswith(":"))
trailings = st.text(_NO_BREAK, max_size=80)
commands = st.from_regex(r"\A(?:[A-Z]{1,12}|[0-9]{3})\Z")
prefixes = st.none() | middles
tag_keys = st.from_regex(r"\A\+?(?:[a-z0-9.-]{1,8}/)?[A-Za-z0-9-]{1,10}\Z")
tag_dicts = st.dictionaries(tag_keys, st.text(_NO_BREAK, max_size=20), max_size=4)
messages = st.builds(
    lambda command, mids, last, prefix, tags: Message(
        command, (*mids, *([] if last is None else [last])), prefix, tags),
    commands, st.lists(middles, max_size=5), st.none() | trailings, prefixes, tag_dicts,
)


@given(st.binary(max_size=600))
def test_parse_never_raises(data: bytes) -> None:
    message = parse(data)
    assert message is None or isinstance(message, Message)


@given(messages)
def test_round_trip(message: Message) -> None:
    line = serialize(message)
    assume(body_length(line) <= MAX_LINE)  # short enough that nothing was cut
    assert line.endswith(b"\r\n") and line.count(b"\n") == 1 and b"\r" not in line[:-2]
    assert parse(line[:-2]) == message


@given(middles, st.text(st.characters(codec="utf-8"), max_size=2000))
def test_any_text_serialises_to_one_bounded_line(target: str, text: str) -> None:
    line = serialize(Message("PRIVMSG", (target, text), "nick!nick@chatd"))
    assert body_length(line) <= MAX_LINE
    assert line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]
    assert b"\0" not in line


@given(st.text(_NO_BREAK, max_size=3000))
def test_split_to_fit_loses_nothing_and_every_piece_fits(text: str) -> None:
    pieces = split_to_fit(Message("PRIVMSG", ("#lobby", text), "somebody!somebody@chatd"))
    assert "".join(p.params[1] for p in pieces) == text
    for piece in pieces:
        line = serialize(piece)
        assert len(line) <= MAX_LINE
        assert parse(line[:-2]) == piece


# --- The chat fast path: parse_command reads every line as parse does ----------------------------


def _as_parse_reads_it(line: bytes) -> tuple[str, str | None, list[str]] | None:
    message = parse(line)
    return None if message is None else (message.command, message.prefix, list(message.params))


# Lines shaped like chat, each part allowed to be a little off: the verbs in other cases, a
# prefix or tags first, runs of spaces, colons in and before the target, no trailing
# parameter, and text with CTCP, line breaks, NUL, non-ASCII, colons, or past 512 bytes.
_TEXTS = st.sampled_from([
    "hello", "", ":-) a :colon", "\x01ACTION waves\x01", "\x01VERSION", "Zwölf 日本語",
    "\u202e\ufffd", "a\rb\0c\nd", " lead and trail ", "é" * 400, "x" * 600,
]) | st.text(max_size=20)
_VERBS = ["PRIVMSG", "NOTICE", "privmsg", "Notice", "PING", "JOIN", ":bob PRIVMSG",
          "@a=b PRIVMSG", " PRIVMSG", ""]
_SEPARATORS = [" ", "  ", "", ":", " :"]
_TARGETS = ["#lobby", "bob", "#a,#b", "", ":#a", "#a:b", "a b", " #a", "#a ", "é"]
_BEFORE_TEXT = [" :", "  :", " ", ":", "", " : "]
_SHAPED = st.tuples(
    st.sampled_from(_VERBS), st.sampled_from(_SEPARATORS), st.sampled_from(_TARGETS),
    st.sampled_from(_BEFORE_TEXT), _TEXTS,
).map(lambda parts: "".join(parts).encode("utf-8"))
_LINES = st.one_of(
    _SHAPED,
    st.tuples(_SHAPED, st.binary(min_size=1, max_size=4)).map(  # invalid UTF-8 at the end
        lambda parts: parts[0] + parts[1]),
    st.binary(max_size=600),
)


@settings(max_examples=500)  # the shapes above are many; each example is cheap
@given(_LINES)
def test_the_chat_fast_path_reads_every_line_as_parse_does(line: bytes) -> None:
    expected = _as_parse_reads_it(line)
    assert parse_command(line) == expected
    fast = parse_chat(line.decode("utf-8", "replace"))
    assert fast is None or fast == expected


def test_every_shape_of_chat_line_is_read_as_parse_does() -> None:
    """Every combination of the parts above (3,000 shapes), with a few texts: the random
    examples above may miss one shape; this cannot."""
    for parts in itertools.product(_VERBS, _SEPARATORS, _TARGETS, _BEFORE_TEXT,
                                   ["hi", "", ":-) a :b", "\x01ACTION x"]):
        line = "".join(parts).encode("utf-8")
        assert parse_command(line) == _as_parse_reads_it(line), line


@pytest.mark.parametrize("line", [
    "PRIVMSG #lobby :hello world", "NOTICE #lobby :hi", "PRIVMSG bob :psst",
    "PRIVMSG #a,#b,bob :to three", "PRIVMSG #lobby :", "PRIVMSG #lobby ::-) a :colon: or two ",
    "PRIVMSG #lobby :\x01ACTION waves\x01", "PRIVMSG #lobby :\x02bold\x02 \x0304red",
    "PRIVMSG #lobby :Zwölf Boxkämpfer 日本語 \u202e", "PRIVMSG #lobby :" + "é" * 400,
    "PRIVMSG #lobby :a\rb\0c",
])
def test_chat_lines_take_the_fast_path(line: str) -> None:
    """Chat as clients send it, over-long and odd text included, is read without the
    general parser (and as it would read it, above)."""
    data = line.encode("utf-8")
    assert parse_chat(line) is not None
    assert parse_command(data) == _as_parse_reads_it(data)


@pytest.mark.parametrize("line", [
    "@time=1 PRIVMSG #a :x", ":bob PRIVMSG #a :x", "privmsg #a :x", " PRIVMSG #a :x",
    "PRIVMSG  #a :x", "PRIVMSG #a  :x", "PRIVMSG #a x", "PRIVMSG :x", "PRIVMSG #a", "PING :x",
    "PRIVMSG :#a :x",
])
def test_anything_else_is_left_to_the_general_parser(line: str) -> None:
    assert parse_chat(line) is None
    data = line.encode("utf-8")
    assert parse_command(data) == _as_parse_reads_it(data)
