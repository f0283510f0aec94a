"""Text typed in IRC clients: formatting codes, CTCP, and the cleaning every text gets.

IRC clients colour and embolden text with control characters (\\x02 bold, \\x03 colour
with its digits, ...). Line users would see the digits of a colour code as text, so the
codes and their arguments go first; what remains gets chatd's own cleaning
(``chatd.text.clean_text``), the same as a line user's text.

CTCP (a \\x01-delimited command inside a PRIVMSG or NOTICE) carries ``/me`` as ACTION,
and the VERSION, PING, TIME and CLIENTINFO queries clients send each other.
"""

from __future__ import annotations

import re

from chatd.text import clean_text

# https://modern.ircdocs.horse/formatting: bold, italics, underline, strikethrough,
# monospace, reverse, reset; colour \x03 with up to two digits, optionally a comma and up to
# two more (a comma without digits is text); hex colour \x04 with six hex digits likewise.
_FORMATTING = re.compile(
    r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"
    r"|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)

CTCP_DELIMITER = "\x01"


def strip_formatting(text: str) -> str:
    """Removes IRC formatting codes with their colour arguments, leaving other text as is."""
    if text.isprintable():  # every formatting code is a control character
        return text
    return _FORMATTING.sub("", text)


def clean_irc_text(text: str) -> str:
    """What an IRC user typed, as chatd carries it: no formatting codes, no controls."""
    if text.isprintable():  # nearly every line: nothing for either step to take out
        return text
    return clean_text(strip_formatting(text))


def parse_ctcp(text: str) -> tuple[str, str] | None:
    """The (upper-case command, arguments) of a CTCP message, or None for plain text.

    The closing delimiter is optional (some clients leave it off); anything after a second
    delimiter is ignored, as nobody sends several CTCPs in one message any more."""
    if not text.startswith(CTCP_DELIMITER):
        return None
    body = text[1:].split(CTCP_DELIMITER, 1)[0]
    command, _, args = body.partition(" ")
    return command.upper(), args


def ctcp(command: str, args: str = "") -> str:
    """A CTCP message body: ``\\x01COMMAND args\\x01``."""
    return f"{CTCP_DELIMITER}{command} {args}{CTCP_DELIMITER}" if args else (
        f"{CTCP_DELIMITER}{command}{CTCP_DELIMITER}")
