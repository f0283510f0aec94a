"""The edge: telnet filtering, decoding, control stripping and the nickname rule."""

from __future__ import annotations

import pytest

from chatd.text import (
    InvalidNickname,
    TelnetFilter,
    clean_text,
    decode_line,
    nick_key,
    normalize_nick,
)


class TestTelnetFilter:
    def test_plain_data_passes_unchanged(self) -> None:
        assert TelnetFilter().feed(b"hello\r\n") == b"hello\r\n"

    @pytest.mark.parametrize(
        "data",
        [
            b"\xff\xfb\x01hi",  # IAC WILL ECHO
            b"\xff\xfd\x03hi",  # IAC DO SUPPRESS-GO-AHEAD
            b"\xff\xfa\x18\x00xterm\xff\xf0hi",  # IAC SB TERMINAL-TYPE IS xterm IAC SE
            b"\xff\xf1hi",  # IAC NOP
            b"h\xff\xffi",  # IAC IAC, an escaped 0xFF, is never valid UTF-8: dropped
        ],
    )
    def test_negotiation_is_removed(self, data: bytes) -> None:
        assert TelnetFilter().feed(data) == b"hi"

    def test_negotiation_split_across_reads(self) -> None:
        f = TelnetFilter()
        stream = b"a\xff\xfa\x18\x00vt100\xff\xf0b\xff\xfb\x01c"
        assert b"".join(f.feed(stream[i : i + 1]) for i in range(len(stream))) == b"abc"

    def test_iac_inside_subnegotiation_does_not_end_it(self) -> None:
        assert TelnetFilter().feed(b"\xff\xfa\x18\xff\xff\x01\xff\xf0ok") == b"ok"


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
