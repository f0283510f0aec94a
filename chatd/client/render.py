"""Turn lines into styled text (terminal) or plain text (pipes).

Whatever the server sends, nothing in it reaches the terminal as a control
sequence: C0 controls, ESC and DEL are shown in caret notation (``^[``), C1
controls and a few invisible format characters (bidi overrides, line separators)
as ``<U+XXXX>``.
"""

from __future__ import annotations

import zlib

from chatd.client.nicks import fold
from chatd.client.wire import Kind, Line

Fragment = tuple[str, str]

# Shown as <U+XXXX>: C1 controls, plus format characters that would reorder or
# break the line on screen (bidi embeddings/overrides/isolates, line and
# paragraph separators).
_SHOW_AS_CODEPOINT = frozenset(
    [
        *range(0x80, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        0x2028,
        0x2029,
        0x200E,
        0x200F,
        0x061C,
    ]
)


def _visible(ch: str) -> str | None:
    """The visible form of a dangerous character, or None if it is harmless."""
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    if code in _SHOW_AS_CODEPOINT:
        return f"<U+{code:04X}>"
    return None


def sanitize_fragments(text: str, style: str = "") -> list[Fragment]:
    """Split text into fragments, control characters made visible and styled apart."""
    out: list[Fragment] = []
    plain: list[str] = []
    ctrl_style = f"{style} class:ctrl".strip()
    for ch in text:
        shown = _visible(ch)
        if shown is None:
            plain.append(ch)
            continue
        if plain:
            out.append((style, "".join(plain)))
            plain = []
        out.append((ctrl_style, shown))
    if plain:
        out.append((style, "".join(plain)))
    return out


def sanitize(text: str) -> str:
    """Text with every control character made visible (for plain output)."""
    return "".join(t for _, t in sanitize_fragments(text))


# Nick colours: named ANSI colours, so they follow the terminal's palette and work
# with 16 colours. Chosen by CRC-32 of the folded nick: stable across runs and
# machines (Python's hash() is salted per process).
NICK_COLOURS: tuple[str, ...] = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)


def nick_colour(nick: str) -> str:
    """The colour of a nick: always the same for the same (case-folded) nick."""
    return NICK_COLOURS[zlib.crc32(fold(nick).encode("utf-8")) % len(NICK_COLOURS)]


def nick_style(nick: str) -> str:
    return f"class:nick fg:{nick_colour(nick)}"


def _mentions(text: str, me: str | None) -> bool:
    return bool(me) and me is not None and fold(me) in fold(text)


def render(line: Line, me: str | None = None) -> list[Fragment]:
    """Styled fragments for one line (no trailing newline)."""
    out: list[Fragment] = []
    if line.timestamp is not None:
        out.append(("class:timestamp", f"[{line.timestamp}] "))
    nick = line.nick or ""
    kind = line.kind
    if kind in (Kind.CHAT, Kind.SELF):
        mine = kind is Kind.SELF
        text_style = "class:self" if mine else ("class:mention" if _mentions(line.text, me) else "")
        out.append(("class:bracket", "<"))
        out.extend(sanitize_fragments(nick, nick_style(nick)))
        out.append(("class:bracket", "> "))
        out.extend(sanitize_fragments(line.text, text_style))
    elif kind in (Kind.ACTION, Kind.SELF_ACTION):
        out.append(("class:action", "* "))
        out.extend(sanitize_fragments(nick, nick_style(nick)))
        out.append(("class:action", " "))
        out.extend(sanitize_fragments(line.text, "class:action"))
    elif kind is Kind.PRIVATE:
        out.append(("class:pm", "*"))
        out.extend(sanitize_fragments(nick, f"class:pm {nick_style(nick)}"))
        out.append(("class:pm", "* "))
        out.extend(sanitize_fragments(line.text, "class:pm"))
    elif kind is Kind.PRIVATE_SENT:
        out.append(("class:pm-sent", "-> *"))
        out.extend(sanitize_fragments(nick, nick_style(nick)))
        out.append(("class:pm-sent", "* "))
        out.extend(sanitize_fragments(line.text, "class:pm-sent"))
    elif kind is Kind.NOTICE:
        out.extend(sanitize_fragments("*** " + line.text, "class:notice"))
    elif kind is Kind.ERROR:
        out.extend(sanitize_fragments("*** Error: " + line.text, "class:error"))
    elif kind in (Kind.KICKED, Kind.BANNED):
        out.extend(sanitize_fragments("*** " + line.text, "class:error"))
    elif kind is Kind.STATUS:
        out.extend(sanitize_fragments("-!- " + line.text, "class:status"))
    elif kind is Kind.STATUS_ERROR:
        out.extend(sanitize_fragments("-!- " + line.text, "class:status-error"))
    else:
        out.extend(sanitize_fragments(line.text, "class:other"))
    return out


def plain(line: Line) -> str:
    """The plain text of a line: what the server sent, made harmless."""
    if line.raw:
        return sanitize(line.raw)
    return "".join(text for _, text in render(line))


# Styles for the classes used above (prompt_toolkit style rules).
STYLE_RULES: dict[str, str] = {
    "timestamp": "ansibrightblack",
    "bracket": "ansibrightblack",
    "nick": "bold",
    "self": "",
    "mention": "bold",
    "action": "italic",
    "pm": "bold ansibrightmagenta",
    "pm-sent": "ansimagenta",
    "notice": "ansibrightblack",
    "error": "bold ansired",
    "status": "ansiyellow",
    "status-error": "bold ansiyellow",
    "other": "",
    "ctrl": "reverse",
    "prompt": "bold",
    "prompt.offline": "ansired",
}
