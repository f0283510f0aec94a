"""IRC messages: one line in, a value; a value out, one line (RFC 1459/2812, IRCv3 tags).

    [@tag=value;tag2 ][:prefix ]COMMAND[ param ...][ :trailing]

``parse`` never raises: any bytes a client sends either become a ``Message`` or ``None``
(no command to act on). ``serialize`` always produces exactly one line that a client can
parse back to the same value, and never more than ``MAX_LINE`` bytes after the tags: an
over-long last parameter is cut at a character boundary, and ``split_to_fit`` spreads long
text over as many lines as it needs instead.

Twisted's ``irc.parsemsg`` is not used: it knows no tags, raises on lines such as ``":x"``
and expects text, while chatd decodes bytes exactly once, here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# RFC 1459 2.3: at most 512 bytes per line, counting the CRLF; tags do not count (IRCv3).
MAX_LINE = 512
# IRCv3 message-tags: the tag section a client may send, '@' and trailing space included.
MAX_TAGS = 8191
EOL = b"\r\n"

_COMMAND = re.compile(r"[A-Za-z]+|[0-9]{3}")
# The commands that carry chat, which parse_command reads on a fast path.
CHAT_COMMANDS = frozenset({"PRIVMSG", "NOTICE"})
_TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")
# Characters that would end or corrupt a line; never sent, whatever a caller passes.
_LINE_BREAKERS = str.maketrans("", "", "\r\n\0")

_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message. ``command`` is upper case (or three digits)."""

    command: str
    params: tuple[str, ...] = ()
    prefix: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if index < len(self.params) else default


# --- In --------------------------------------------------------------------------------------


def parse(line: bytes) -> Message | None:
    """One received line (without its line ending) as a Message, or None if it has no
    command. Invalid UTF-8 becomes U+FFFD; nothing else is changed here (text parameters
    are cleaned where they are used, after CTCP and formatting codes are read)."""
    return _parse_text(line.decode("utf-8", "replace"))


def parse_command(line: bytes) -> tuple[str, str | None, list[str]] | None:
    """What a command handler takes of a received line: its command, prefix and parameters
    exactly as ``parse`` reads them (tags, which chatd does not act on, are left out), or
    None if it has no command.

    Most of what a client sends is chat, ``PRIVMSG #room :text``: that takes a fast path
    (``parse_chat``) which builds no Message; tests prove it reads every line as ``parse``
    does."""
    text = line.decode("utf-8", "replace")
    chat = parse_chat(text)
    if chat is not None:
        return chat
    message = _parse_text(text)
    if message is None:
        return None
    return message.command, message.prefix, list(message.params)


def parse_chat(text: str) -> tuple[str, None, list[str]] | None:
    """The fast path of ``parse_command``: a line that is exactly ``PRIVMSG`` or ``NOTICE``,
    one space, a target (one word, not starting with a colon), `` :`` and the text. Any
    other line (tags, a prefix, a lower-case command, runs of spaces, no trailing
    parameter, ...) is None here and left to the general parser."""
    command, _, rest = text.partition(" ")
    if command not in CHAT_COMMANDS:
        return None
    target, colon, trailing = rest.partition(" :")
    if not colon or not target or " " in target or target.startswith(":"):
        return None
    return command, None, [target, trailing]


def _parse_text(text: str) -> Message | None:
    tags: dict[str, str] = {}
    if text.startswith("@"):
        raw_tags, _, text = text[1:].partition(" ")
        tags = _parse_tags(raw_tags)
    text = text.lstrip(" ")
    prefix = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    command, _, text = text.partition(" ")
    if not _COMMAND.fullmatch(command):
        return None
    params: list[str] = []
    while True:
        text = text.lstrip(" ")
        if not text:
            break
        if text.startswith(":"):
            params.append(text[1:])
            break
        param, _, text = text.partition(" ")
        params.append(param)
    return Message(command.upper(), tuple(params), prefix or None, tags)


def _parse_tags(raw: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        key, _, value = item.partition("=")
        if key:
            tags[key] = _unescape_tag_value(value)
    return tags


def _unescape_tag_value(value: str) -> str:
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")  # a lone trailing backslash is dropped
            out.append(_TAG_ESCAPES.get(escaped, escaped))
        else:
            out.append(char)
    return "".join(out)


def body_length(line: bytes) -> int:
    """The length that counts toward MAX_LINE: the line without its tags and line ending."""
    if line.startswith(b"@"):
        _, _, line = line.partition(b" ")
    return len(line.lstrip(b" "))


def tags_length(line: bytes) -> int:
    """The length of the tag section, '@' and the space after it included (0 if none)."""
    if not line.startswith(b"@"):
        return 0
    end = line.find(b" ")
    return len(line) if end < 0 else end + 1


# --- Out -------------------------------------------------------------------------------------


def serialize(message: Message) -> bytes:
    """The message as one CRLF-terminated line of at most MAX_LINE bytes after its tags.

    Raises ValueError for a message no valid line can carry (a bad command, tag key, prefix
    or middle parameter): those come from chatd's own code, never from what users type.
    """
    head = _head(message)
    params = message.params
    if not params:
        return _with_tags(message, head + EOL)
    middles = [_middle(param) for param in params[:-1]]
    start = head + b"".join(b" " + m for m in middles)
    last = params[-1].translate(_LINE_BREAKERS)
    encoded = last.encode("utf-8")
    room = MAX_LINE - len(EOL) - len(start) - 2  # the space and the colon
    if room < 0:
        raise ValueError(f"no room for the last parameter of {message!r}")
    if len(encoded) > room:
        encoded = encoded[:room].decode("utf-8", "ignore").encode("utf-8")
        last = encoded.decode("utf-8")
    # Always as a trailing parameter, as servers conventionally send it: some clients and
    # bots read the text of a PRIVMSG only after " :".
    return _with_tags(message, start + b" :" + encoded + EOL)


def _head(message: Message) -> bytes:
    if not _COMMAND.fullmatch(message.command):
        raise ValueError(f"not an IRC command: {message.command!r}")
    if message.prefix is None:
        return message.command.encode("ascii")
    prefix = message.prefix
    if not prefix or " " in prefix or prefix != prefix.translate(_LINE_BREAKERS):
        raise ValueError(f"not an IRC prefix: {prefix!r}")
    return b":" + prefix.encode("utf-8") + b" " + message.command.encode("ascii")


def is_middle(param: str) -> bool:
    """Whether ``param`` can be sent as a middle parameter (a word: no space, no leading
    colon, nothing that breaks a line)."""
    return bool(param) and " " not in param and not param.startswith(":") and (
        param == param.translate(_LINE_BREAKERS))


def _middle(param: str) -> bytes:
    if not is_middle(param):
        raise ValueError(f"not a middle parameter: {param!r}")
    return param.encode("utf-8")


def _with_tags(message: Message, body: bytes) -> bytes:
    return tag_section(message.tags) + body


def tag_section(tags: Mapping[str, str]) -> bytes:
    """The tag section that goes before a line: ``@key=value;key2 `` (empty for no tags)."""
    if not tags:
        return b""
    items = []
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key):
            raise ValueError(f"not a tag key: {key!r}")
        items.append(f"{key}={_escape_tag_value(value)}" if value else key)
    return b"@" + ";".join(items).encode("utf-8") + b" "


def _escape_tag_value(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
            .replace("\r", "\\r").replace("\n", "\\n"))


def split_to_fit(message: Message, before: str = "", after: str = "") -> list[Message]:
    """``message`` as one or more messages whose last parameter (the text) together says
    all of it, each fitting in MAX_LINE bytes; a break falls on a space where one is near.
    Each piece is wrapped in ``before`` and ``after`` (a CTCP ACTION's delimiters).

    For chat text from line users, whose lines may be far longer than IRC's."""
    if not message.params:
        return [message]
    *middles, text = message.params
    text = text.translate(_LINE_BREAKERS)
    start = len(_head(message)) + sum(len(_middle(m)) + 1 for m in middles)
    wrapping = len(before.encode("utf-8")) + len(after.encode("utf-8"))
    room = MAX_LINE - len(EOL) - start - 2 - wrapping
    if room < 4:  # a UTF-8 character must always fit, or nothing would progress
        raise ValueError(f"no room for text in {message!r}")
    pieces = []
    encoded = text.encode("utf-8")
    while len(encoded) > room:
        cut = len(encoded[:room].decode("utf-8", "ignore").encode("utf-8"))
        space = encoded.rfind(b" ", room // 2, cut)
        if space > 0:
            cut = space + 1  # the space stays at the end of this piece
        pieces.append(encoded[:cut].decode("utf-8"))
        encoded = encoded[cut:]
    pieces.append(encoded.decode("utf-8"))
    return [Message(message.command, (*middles, before + piece + after), message.prefix,
                    message.tags) for piece in pieces]
