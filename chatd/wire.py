"""The line protocol's output: every shape a client can receive, and where text becomes bytes.

Shapes (documented in the README so people and scripts can tell them apart):

- ``<nick> text``        chat from another user
- ``* nick action``      a /me action
- ``*** text``           a server notice
- ``*** Error: text``    an error, sent only to the one who caused it
"""

from __future__ import annotations

from chatd.events import Acted, Announcement, Event, Joined, Left, Renamed, Said

EOL = "\r\n"


def encode(line: str) -> bytes:
    """The one place a line of text becomes bytes on the way out."""
    return (line + EOL).encode("utf-8")


def notice(text: str) -> bytes:
    return encode(f"*** {text}")


def error(text: str) -> bytes:
    return encode(f"*** Error: {text}")


def render(event: Event) -> str:
    """An event as one line of text, without the line ending."""
    match event:
        case Said(nick=nick, text=text):
            return f"<{nick}> {text}"
        case Acted(nick=nick, text=text):
            return f"* {nick} {text}"
        case Joined(room=room, nick=nick):
            return f"*** {nick} has joined {room}"
        case Left(room=room, nick=nick, reason=reason):
            return f"*** {nick} has left {room} ({reason})"
        case Renamed(old=old, new=new):
            return f"*** {old} is now known as {new}"
        case Announcement(text=text):
            return f"*** {text}"
    raise TypeError(f"no line format for {event!r}")


class LineFormatter:
    """The line protocol's ``EventFormatter``: one shared instance for every connection."""

    __slots__ = ()

    def format(self, event: Event) -> bytes:
        return encode(render(event))


LINE_FORMATTER = LineFormatter()
