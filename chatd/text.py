"""Where bytes become text: UTF-8 decoding, control stripping, nicknames.

Everything a client sends passes through here exactly once, at the edge, so the chat
service only ever sees clean ``str``. The policy for message text is to *strip*
(never to show) characters that can drive a terminal: C0 controls (tab becomes a space),
DEL, C1 controls (including the 8-bit CSI U+009B), the Unicode line and paragraph
separators, and the bidirectional embedding, override and isolate controls that could make
one person's text look like another's nick.
"""

from __future__ import annotations

import re
import unicodedata

# The filter lives in chatd.telnet; it stays importable from here, where bytes become text.
from chatd import lookalike
from chatd.telnet import TelnetFilter as TelnetFilter

# --- Message text --------------------------------------------------------------------------

# Bidirectional embeddings, overrides and isolates, and the Arabic letter mark.
BIDI_CONTROLS = frozenset(
    [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x061C]
)
# Zero-width characters and LRM/RLM: fine inside a message, never inside a nickname.
ZERO_WIDTH = frozenset(range(0x200B, 0x2010))

_STRIP_TABLE: dict[int, str | None] = {cp: None for cp in range(0x20)}
_STRIP_TABLE[0x09] = " "
_STRIP_TABLE.update({cp: None for cp in range(0x7F, 0xA0)})
_STRIP_TABLE.update({cp: None for cp in BIDI_CONTROLS})
# The Unicode line and paragraph separators: some clients start a new line for them, which
# would let a message forge a line of its own.
_STRIP_TABLE.update({0x2028: None, 0x2029: None})


def clean_text(text: str) -> str:
    """Strips everything in message text that could drive another user's terminal."""
    if text.isprintable():  # fast path: no controls and no format characters at all
        return text
    return text.translate(_STRIP_TABLE)


def decode_line(line: bytes) -> str:
    """Turns one received line into clean text; invalid UTF-8 becomes U+FFFD."""
    return clean_text(line.decode("utf-8", "replace"))


# --- Numbers -------------------------------------------------------------------------------

_ASCII_DIGITS = re.compile(r"[0-9]+")


def parse_whole_number(text: str, max_digits: int = 9) -> int | None:
    """The number in ``text`` if it is 1 to ``max_digits`` ASCII digits, else None.

    Every number a user types goes through here. ``str.isdigit`` is not enough: ``"²"`` is a
    digit to it and an error to ``int``, and ``int`` takes Arabic-Indic and other digits too;
    the length bound keeps a 100,000-digit "number" from costing anything.
    """
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


# --- Nicknames -----------------------------------------------------------------------------

NICK_MAX_LENGTH = 24
NICK_RULE = (
    f"1 to {NICK_MAX_LENGTH} letters of one script, digits, '_' or '-', "
    "not starting with a digit or '-'"
)
# In Python's re, \w is a letter or digit of any script, or '_'; [^\W\d] drops the digits.
_NICK_PATTERN = re.compile(r"[^\W\d][\w-]*")
# Names that would let a user pass for the server or its staff; look-alikes are refused too.
RESERVED_NICKS = ("chatd", "server", "admin", "operator", "root", "system")


class InvalidNickname(ValueError):
    """The requested nickname breaks the nickname rule."""


def normalize_nick(requested: str) -> str:
    """Returns the nickname as it will be shown (NFKC), or raises InvalidNickname.

    Refused besides what breaks the rule: characters that render as nothing (U+3164 HANGUL
    FILLER counts as a letter), letters of more than one script (Latin ``alice`` with a
    Cyrillic a), and names that look like a reserved one.
    """
    nick = unicodedata.normalize("NFKC", requested)
    if not 0 < len(nick) <= NICK_MAX_LENGTH or not _NICK_PATTERN.fullmatch(nick):
        raise InvalidNickname(f"invalid nickname: use {NICK_RULE}")
    if lookalike.has_invisible(requested) or lookalike.has_invisible(nick):
        raise InvalidNickname("invalid nickname: it holds a character that shows as nothing")
    if lookalike.is_mixed_script(nick):
        raise InvalidNickname(
            "invalid nickname: it mixes letters of different scripts "
            f"({', '.join(sorted(lookalike.scripts(nick))).lower()})"
        )
    if nick_skeleton(nick) in _RESERVED_SKELETONS:
        raise InvalidNickname(f'nickname "{nick}" is reserved')
    return nick


def nick_key(nick: str) -> str:
    """The form two nicknames are compared in: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())


def nick_skeleton(nick: str) -> str:
    """The form two nicknames are told apart in: two that share it look alike (TR 39)."""
    return lookalike.case_blind_skeleton(unicodedata.normalize("NFKC", nick))


_RESERVED_SKELETONS = frozenset(nick_skeleton(word) for word in RESERVED_NICKS)
