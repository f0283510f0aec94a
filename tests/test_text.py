"""The edge: decoding, control stripping and the nickname rule."""

from __future__ import annotations

import pytest
from confusable_homoglyphs import categories
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from chatd import lookalike
from chatd.service import ChatError, ChatService
from chatd.text import (
    InvalidNickname,
    clean_text,
    decode_line,
    nick_key,
    nick_skeleton,
    normalize_nick,
)
from chatd.wire import LINE_FORMATTER


class FakeClient:
    """A connection as the chat service sees it, dropping what it is sent."""

    formatter = LINE_FORMATTER

    @property
    def frontend(self) -> FakeClient:
        return self  # its own front-end: formatter and broadcast

    def broadcast(self, data: bytes, clients: object) -> None:
        pass

    def send(self, data: bytes) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def abort(self) -> None:
        pass


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


# Look-alikes of "alice": Cyrillic a, Ukrainian i, capital I, Latin alpha, and invisible
# Hangul fillers (which Python's \w counts as letters) at the end.
LOOK_ALIKES = ["аlice", "alіce", "aIice", "ɑlice", "alice\u3164", "alice\u1160", "ALICE", "al1ce"]


class TestLookAlikeNicknames:
    @pytest.mark.parametrize("nick", ["аlice", "alіce", "aIice", "ɑlice", "ALICE", "al1ce"])
    def test_share_the_skeleton_of_the_original(self, nick: str) -> None:
        assert nick_skeleton(nick) == nick_skeleton("alice")

    @pytest.mark.parametrize("nick", ["alice", "alicia", "bob", "Ålesund", "東京"])
    def test_different_names_differ(self, nick: str) -> None:
        assert nick_skeleton(nick) != nick_skeleton("malice")

    @pytest.mark.parametrize(
        "nick",
        [
            "alice\u3164", "alice\u1160", "\u3164", "al\u115fice", "alice\uffa0",
            "al\u200bice", "alice\u00ad", "a\u034flice", "alice\ufe0f",
        ],
    )
    def test_invisible_characters_are_refused_anywhere(self, nick: str) -> None:
        with pytest.raises(InvalidNickname, match=r"shows as nothing|invalid nickname"):
            normalize_nick(nick)

    @pytest.mark.parametrize("nick", ["аlice", "alіce", "pаypal", "Ωmega_x", "bobδ"])
    def test_mixed_scripts_are_refused(self, nick: str) -> None:
        with pytest.raises(InvalidNickname, match="mixes letters of different scripts"):
            normalize_nick(nick)

    @pytest.mark.parametrize("nick", ["Ωμέγα", "иван_2", "東京ひらがなカタカナ", "서울_1", "zoë"])
    def test_one_script_or_a_cjk_mix_is_fine(self, nick: str) -> None:
        assert normalize_nick(nick) == nick

    @pytest.mark.parametrize("nick", ["admin", "ADMIN", "adm1n", "r00t", "Server", "chatd"])
    def test_reserved_names_and_their_look_alikes_are_refused(self, nick: str) -> None:
        with pytest.raises(InvalidNickname, match="reserved"):
            normalize_nick(nick)

    @pytest.mark.parametrize("nick", LOOK_ALIKES)
    def test_refused_while_alice_is_connected(self, nick: str) -> None:
        chat = ChatService(Clock())
        alice = chat.connect(FakeClient(), "test")
        chat.rename(alice, "alice")
        mallory = chat.connect(FakeClient(), "test")
        with pytest.raises(ChatError):
            chat.rename(mallory, nick)
        assert mallory.nick.startswith("guest")

    def test_a_look_alike_is_free_once_the_original_leaves(self) -> None:
        chat = ChatService(Clock())
        alice = chat.connect(FakeClient(), "test")
        chat.rename(alice, "alice")
        bob = chat.connect(FakeClient(), "test")
        with pytest.raises(ChatError, match='looks too much like "alice"'):
            chat.rename(bob, "aIice")
        chat.disconnect(alice, "bye")
        assert chat.rename(bob, "aIice") == "aIice"

    def test_renaming_frees_the_old_look(self) -> None:
        chat = ChatService(Clock())
        alice = chat.connect(FakeClient(), "test")
        chat.rename(alice, "alice")
        chat.rename(alice, "alicia")
        bob = chat.connect(FakeClient(), "test")
        assert chat.rename(bob, "aIice") == "aIice"
        carol = chat.connect(FakeClient(), "test")
        with pytest.raises(ChatError, match='looks too much like "alicia"'):
            chat.rename(carol, "aIicia")

    def test_a_user_may_change_the_case_of_their_own_nick(self) -> None:
        chat = ChatService(Clock())
        alice = chat.connect(FakeClient(), "test")
        chat.rename(alice, "alice")
        assert chat.rename(alice, "Alice") == "Alice"


def test_a_number_is_one_to_nine_digits_by_default() -> None:
    from chatd.text import parse_whole_number

    assert parse_whole_number("7") == 7
    assert parse_whole_number("999999999") == 999_999_999
    assert parse_whole_number("1000000000") is None  # ten digits
    assert parse_whole_number("1234", max_digits=4) == 1234
    assert parse_whole_number("12345", max_digits=4) is None


def test_a_one_letter_nick_is_a_nick() -> None:
    assert normalize_nick("a") == "a"
    with pytest.raises(InvalidNickname):
        normalize_nick("")


@pytest.mark.parametrize(("nick", "said"), [
    ("a\u3164b", "invalid nickname: it holds a character that shows as nothing"),
    ("\u0430b", "invalid nickname: it mixes letters of different scripts (cyrillic, latin)"),
])
def test_a_refused_nick_says_exactly_why(nick: str, said: str) -> None:
    with pytest.raises(InvalidNickname) as refused:
        normalize_nick(nick)
    assert str(refused.value) == said


# The ASCII shortcuts in chatd/lookalike.py against the tables they skip, for every ASCII
# character alone and for any ASCII text.
def _scripts_from_the_table(text: str) -> frozenset[str]:
    return frozenset(categories.alias(ch) for ch in text) - frozenset({"COMMON", "INHERITED"})


def test_each_ascii_character_has_the_script_and_visibility_the_tables_give() -> None:
    for ch in map(chr, range(128)):
        assert lookalike.scripts(ch) == _scripts_from_the_table(ch), repr(ch)
        assert lookalike.has_invisible(ch) == lookalike.is_default_ignorable(ch), repr(ch)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_text_has_the_scripts_and_visibility_the_tables_give(text: str) -> None:
    assert lookalike.scripts(text) == _scripts_from_the_table(text)
    assert lookalike.has_invisible(text) == any(map(lookalike.is_default_ignorable, text))
    assert not lookalike.is_mixed_script(text)
