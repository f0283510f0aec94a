"""The web socket's output: every event and reply as one JSON text message.

One message is one JSON object with a ``type``; docs/web.md lists every shape, so bots and
other pages can use the socket too. Text arrives here already cleaned at the edge
(``chatd.text.clean_text``), exactly as the line protocol sends it; JSON escaping is all
that is added. Nothing here is HTML: the page inserts every string as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from chatd.events import (
    Acted,
    Announcement,
    AwayChanged,
    Backfilled,
    Banned,
    Connected,
    Disconnected,
    Event,
    Joined,
    Kicked,
    Left,
    Muted,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
    Unbanned,
    Unmuted,
)
from chatd.history import HistoryEntry


def encode(message: dict[str, Any]) -> bytes:
    """The one place a message becomes the UTF-8 bytes of a WebSocket text frame."""
    # ensure_ascii=False keeps the text readable and short; json still escapes the
    # controls (none survive clean_text anyway) and the page never parses it as HTML.
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def describe(event: Event) -> dict[str, Any]:
    """An event as a JSON-ready object."""
    match event:
        case Said(room=room, nick=nick, text=text):
            return {"type": "said", "room": room, "nick": nick, "text": text}
        case Acted(room=room, nick=nick, text=text):
            return {"type": "acted", "room": room, "nick": nick, "text": text}
        case PrivateMessage(sender=sender, recipient=recipient, text=text, action=True):
            return {"type": "private", "from": sender, "to": recipient, "text": text,
                    "action": True}
        case PrivateMessage(sender=sender, recipient=recipient, text=text):
            return {"type": "private", "from": sender, "to": recipient, "text": text}
        case Joined(room=room, nick=nick):
            return {"type": "joined", "room": room, "nick": nick}
        case Left(room=room, nick=nick, reason=reason, quit=quit):
            # quit: they left chatd altogether, not only this room
            return {"type": "left", "room": room, "nick": nick, "reason": reason,
                    "quit": quit}
        case Kicked(room="", nick=nick, by=by, reason=reason, rooms=rooms):
            # To the one kicked: no "room"; the rooms they were in.
            return {"type": "kicked", "nick": nick, "by": by, "reason": reason,
                    "rooms": rooms.split()}
        case Kicked(room=room, nick=nick, by=by, reason=reason):
            return {"type": "kicked", "room": room, "nick": nick, "by": by, "reason": reason}
        case Renamed(old=old, new=new):
            return {"type": "renamed", "old": old, "new": new}
        case TopicChanged(room=room, nick=nick, topic=topic):
            return {"type": "topic", "room": room, "nick": nick, "topic": topic}
        case Announcement(text=text):
            return {"type": "announcement", "text": text}
        case RoomNotice(room=room, text=text):
            return {"type": "room_notice", "room": room, "text": text}
        case AwayChanged(nick=nick, reason=reason):
            # The service delivers it to nobody (it only changes state); shaped all the same.
            return {"type": "away", "nick": nick, "reason": reason}
        case Connected(nick=nick):  # delivered to nobody, like AwayChanged
            return {"type": "connected", "nick": nick}
        case Disconnected(nick=nick):
            return {"type": "disconnected", "nick": nick}
        case Backfilled(room=room, nick=nick, text=text, action=action):
            return {"type": "backfilled", "room": room, "nick": nick, "text": text,
                    "action": action}
        # Moderation rules: delivered to nobody either (chatd/moderation/moderator.py).
        case Banned(network=network):
            return {"type": "banned", "network": network}
        case Unbanned(network=network):
            return {"type": "unbanned", "network": network}
        case Muted(nick=nick):
            return {"type": "muted", "nick": nick}
        case Unmuted(key=key):
            return {"type": "unmuted", "nick": key}
    raise TypeError(f"no JSON shape for {event!r}")


def _stamped(message: dict[str, Any], at: float | None) -> dict[str, Any]:
    if at is not None:
        message["at"] = round(at, 3)
    return message


class JsonFormatter:
    """The web socket's ``EventFormatter``: one shared instance for every connection."""

    __slots__ = ()

    def format(self, event: Event, at: float | None = None) -> bytes:
        return encode(_stamped(describe(event), at))


JSON_FORMATTER = JsonFormatter()


# --- Replies to one connection --------------------------------------------------------------


def notice(text: str, at: float | None = None) -> bytes:
    return encode(_stamped({"type": "notice", "text": text}, at))


def error(text: str, at: float | None = None) -> bytes:
    return encode(_stamped({"type": "error", "text": text}, at))


def private_sent(nick: str, text: str, at: float | None = None) -> bytes:
    """The confirmation of a private message this connection sent to ``nick``."""
    return encode(_stamped({"type": "sent", "to": nick, "text": text}, at))


def history_line(entry: HistoryEntry) -> bytes:
    """A line of room history: the event's own shape, with its time and ``history``."""
    message = describe(entry.line)
    message["at"] = round(entry.at, 3)
    message["history"] = True
    return encode(message)


def state(nick: str, room: str, server: str) -> bytes:
    """Who this connection is and where: sent on connect and whenever either changes."""
    return encode({"type": "state", "nick": nick, "room": room, "server": server})


def members(room: str, people: Iterable[tuple[str, bool]]) -> bytes:
    """Who is in ``room``: (nick, away) pairs, sorted as the service sorts them."""
    return encode({
        "type": "members", "room": room,
        "members": [{"nick": nick, "away": away} for nick, away in people],
    })


def rooms(listing: Iterable[tuple[str, int, str | None]]) -> bytes:
    """Every room: (name, number of members, topic or None)."""
    return encode({
        "type": "rooms",
        "rooms": [{"name": name, "users": users, "topic": topic}
                  for name, users, topic in listing],
    })
