"""The edge: decoding, control stripping and the nickname rule."""

from __future__ import annotations

import pytest

from chatd.text import (
    InvalidNickname,
    clean_text,
    decode_line,
    nick_key,
    normalize_nick,
)


class TestCleanText:
    @pytest.mark.parametrize(
        ("raw", "clean"),
        [
            ("\x1b[31mred\x1b[0m", "[31mred[0m"),  # ESC is gone; what remains is inert
            ("bell\x07", "bell"),
            ("tab\there", "tab here"),
            ("del\x7f", "del"),
            ("csi\x9b2J", "csi2J"),  # the 8-bit CSI
            ("\u202eevil\u202c", "evil"),  # right-to-left override
            ("\u2066iso\u2069", "iso"),
            ("emoji \U0001f600 and e\u0301", "emoji \U0001f600 and e\u0301"),
        ],
    )
    def test_controls_are_stripped(self, raw: str, clean: str) -> None:
        assert clean_text(raw) == clean

    def test_invalid_utf8_becomes_replacement_character(self) -> None:
        assert decode_line(b"caf\xe9 \xff") == "caf\ufffd \ufffd"


class TestNicknames:
    @pytest.mark.parametrize("nick", ["alice", "Bob_2", "_x", "zoë", "Ålesund", "東京", "a-b"])
    def test_valid(self, nick: str) -> None:
        assert normalize_nick(nick) == nick

    @pytest.mark.parametrize(
        "nick",
        [
            "", "1abc", "-abc", "a b", "a\tb", "a\x1bb", "a\u200bb", "a\u202eb", "a\u2066b",
            "a" * 25, "#room", "a.b", "<alice>", "*", "a\u00a0b",
        ],
    )
    def test_invalid(self, nick: str) -> None:
        with pytest.raises(InvalidNickname):
            normalize_nick(nick)

    def test_compatibility_forms_are_normalised(self) -> None:
        assert normalize_nick("ａｌｉｃｅ") == "alice"  # fullwidth letters

    def test_key_ignores_case_and_compatibility_form(self) -> None:
        assert nick_key("ALICE") == nick_key("alice") == nick_key("ａｌｉｃｅ")
        assert nick_key("Straße") == nick_key("STRASSE")

    def test_twenty_four_characters_is_the_limit(self) -> None:
        assert normalize_nick("a" * 24) == "a" * 24
