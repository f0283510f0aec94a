"""The line protocol's output: every shape a client can receive, and where text becomes bytes.

Shapes (documented in the README so people and scripts can tell them apart):

- ``<nick> text``        chat from another user in your room
- ``* nick action``      a /me action
- ``*nick* text``        a private message to you
- ``*nick* * nick action``  a private /me to you (/describe, or an IRC user's)
- ``-> *nick* text``     the confirmation of a private message you sent
- ``*** text``           a server notice
- ``*** Error: text``    an error, sent only to the one who caused it
- ``[YYYY-MM-DD HH:MM] <nick> text``  a line of room history (or ``* nick action``)
- ``[HH:MM] ...``        any shape above, for users who turned ``/timestamps on``
"""

from __future__ import annotations

import time

from chatd.events import (
    Acted,
    Announcement,
    Event,
    Joined,
    Kicked,
    Left,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
)
from chatd.history import HistoryEntry

EOL = "\r\n"


def encode(line: str) -> bytes:
    """The one place a line of text becomes bytes on the way out."""
    return (line + EOL).encode("utf-8")


def clock(at: float) -> str:
    """The ``[HH:MM] `` prefix of ``/timestamps on``, in the server's local time."""
    return time.strftime("[%H:%M] ", time.localtime(at))


def date_and_clock(at: float) -> str:
    """The ``[YYYY-MM-DD HH:MM] `` prefix of history lines, which may be days old."""
    return time.strftime("[%Y-%m-%d %H:%M] ", time.localtime(at))


def notice(text: str, at: float | None = None) -> bytes:
    return encode(f"{clock(at) if at is not None else ''}*** {text}")


def error(text: str, at: float | None = None) -> bytes:
    return encode(f"{clock(at) if at is not None else ''}*** Error: {text}")


def private_sent(nick: str, text: str, at: float | None = None) -> bytes:
    return encode(f"{clock(at) if at is not None else ''}-> *{nick}* {text}")


def history_line(entry: HistoryEntry) -> bytes:
    return encode(date_and_clock(entry.at) + render(entry.line))


def render(event: Event) -> str:
    """An event as one line of text, without the line ending."""
    match event:
        case Said(nick=nick, text=text):
            return f"<{nick}> {text}"
        case Acted(nick=nick, text=text):
            return f"* {nick} {text}"
        case PrivateMessage(sender=sender, text=text, action=True):
            return f"*{sender}* * {sender} {text}"  # the private frame around the /me form
        case PrivateMessage(sender=sender, text=text):
            return f"*{sender}* {text}"
        case Joined(room=room, nick=nick):
            return f"*** {nick} has joined {room}"
        case Left(room=room, nick=nick, reason=reason):
            return f"*** {nick} has left {room} ({reason})"
        case Kicked(room="", by=by, reason=reason):  # to the one kicked
            return f"*** You have been kicked by {by}: {reason}"
        case Kicked(room=room, nick=nick, by=by, reason=reason):
            return f"*** {nick} has left {room} (kicked by {by}: {reason})"
        case Renamed(old=old, new=new):
            return f"*** {old} is now known as {new}"
        case TopicChanged(room=room, nick=nick, topic=topic):
            return f"*** {nick} set the topic of {room} to: {topic}"
        case Announcement(text=text) | RoomNotice(text=text):
            return f"*** {text}"
    raise TypeError(f"no line format for {event!r}")


class LineFormatter:
    """The line protocol's ``EventFormatter``: one shared instance for every connection."""

    __slots__ = ()

    def format(self, event: Event, at: float | None = None) -> bytes:
        if at is None:
            return encode(render(event))
        return encode(clock(at) + render(event))


LINE_FORMATTER = LineFormatter()
