"""Text from IRC clients: formatting codes, CTCP, and the cleaning every text gets."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd.irc.formatting import clean_irc_text, ctcp, parse_ctcp, strip_formatting
from chatd.text import clean_text


@pytest.mark.parametrize(("typed", "seen"), [
    ("\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x11mono\x11 \x16rev\x16\x0f",
     "bold italic under strike mono rev"),
    ("\x0304red\x03 and \x034,12on blue\x03", "red and on blue"),
    ("\x03,5 a comma without digits is text", ",5 a comma without digits is text"),
    ("\x03123 three digits: the third is text", "3 three digits: the third is text"),
    ("\x04FF0000hex\x04 \x04FF0000,00FF00both\x04", "hex both"),
    ("plain text stays", "plain text stays"),
    ("2 + 2\x0f = 4", "2 + 2 = 4"),
])
def test_formatting_codes_and_their_arguments_go(typed: str, seen: str) -> None:
    assert strip_formatting(typed) == seen
    assert clean_irc_text(typed) == seen


def test_cleaning_also_strips_what_line_users_may_not_send() -> None:
    assert clean_irc_text("\x1b[2Jhi\x07\u202eevil\u2028x\tend") == "[2Jhievilx end"


_CONTROLS = {*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029,
             *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x061C}


@given(st.text(st.sampled_from("\x02\x03\x04\x0f\x16\x1d\x1f,0123456789AFaf x\x01\x1b\u202e")
               | st.characters()))
def test_no_formatting_code_or_control_survives(text: str) -> None:
    cleaned = clean_irc_text(text)
    assert not any(ord(char) in _CONTROLS for char in cleaned)
    assert all(unicodedata.category(c) != "Cc" for c in cleaned)


@given(st.text(st.sampled_from("\x02\x03\x04\x0f,09Aa x\x01\x1b\u202e\u2028é日") | st.characters()))
def test_cleaning_printable_text_on_the_fast_path_changes_nothing(text: str) -> None:
    """clean_irc_text returns printable text as it is: both its steps would."""
    assert clean_irc_text(text) == clean_text(strip_formatting(text))


def test_parse_ctcp() -> None:
    assert parse_ctcp("\x01ACTION waves\x01") == ("ACTION", "waves")
    assert parse_ctcp("\x01action waves") == ("ACTION", "waves")  # no closing delimiter
    assert parse_ctcp("\x01VERSION\x01") == ("VERSION", "")
    assert parse_ctcp("\x01PING 123 456\x01junk\x01") == ("PING", "123 456")
    assert parse_ctcp("hello \x01ACTION x\x01") is None
    assert parse_ctcp("") is None


def test_ctcp_round_trips() -> None:
    assert ctcp("VERSION", "chatd 0.1") == "\x01VERSION chatd 0.1\x01"
    assert ctcp("VERSION") == "\x01VERSION\x01"
    assert parse_ctcp(ctcp("PING", "42")) == ("PING", "42")
