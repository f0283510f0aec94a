"""Parse and classify the lines a chatd server sends (see the wire spec).

Nothing here touches the network or the terminal: each function takes a decoded
line (without its line ending) and says what it is.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.Enum):
    """What a line is, by its shape."""

    CHAT = "chat"  # <nick> text
    ACTION = "action"  # * nick action
    NOTICE = "notice"  # *** text
    ERROR = "error"  # *** Error: text
    KICKED = "kicked"  # *** You have been kicked by ..., or refused at connect after a kick
    BANNED = "banned"  # *** You have been banned by ..., or refused at connect for a ban
    PRIVATE = "private"  # *nick* text
    PRIVATE_SENT = "private-sent"  # -> *nick* text
    OTHER = "other"  # anything else, shown as it is
    # Not from the server: produced by the client itself.
    SELF = "self"  # a chat line you sent, echoed locally
    SELF_ACTION = "self-action"  # a /me you sent, echoed locally
    STATUS = "status"  # connection state and other client messages
    STATUS_ERROR = "status-error"  # a client-side error (cannot connect, ...)


@dataclass(frozen=True)
class Line:
    """One line to show: its kind, the nick it concerns (if any) and its text.

    ``raw`` is the whole line as received (for plain output); ``timestamp`` is what
    stood in a ``[HH:MM]`` or ``[YYYY-MM-DD HH:MM]`` prefix, if the line had one.
    """

    kind: Kind
    text: str
    nick: str | None = None
    timestamp: str | None = None
    raw: str = ""


# [HH:MM] with /timestamps on; [YYYY-MM-DD HH:MM] on history replayed from the server.
_TIMESTAMP = re.compile(
    r"\[((?:\d{4}-\d{2}-\d{2} )?\d{1,2}:\d{2}(?::\d{2})?)\] (.*)\Z", re.DOTALL
)
_NICK = r"[^\s<>*]+"
_CHAT = re.compile(rf"<({_NICK})>(?: (.*))?\Z", re.DOTALL)
_ACTION = re.compile(rf"\* ({_NICK})(?: (.*))?\Z", re.DOTALL)
_PRIVATE = re.compile(rf"\*({_NICK})\*(?: (.*))?\Z", re.DOTALL)
_PRIVATE_SENT = re.compile(rf"-> \*({_NICK})\*(?: (.*))?\Z", re.DOTALL)
_ERROR_PREFIX = "*** Error:"
_NOTICE_PREFIX = "***"
# The server's lines that end our connection for good (until /reconnect): the only
# place the client knows their wording. The server keeps these prefixes stable.
REMOVAL_PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("*** You have been kicked by ", Kind.KICKED),  # kicked while connected
    ("*** You have been banned by ", Kind.BANNED),  # banned while connected
    ("*** Error: you were kicked from this server;", Kind.KICKED),  # refused: kicked lately
    ("*** Error: you are banned from this server:", Kind.BANNED),  # refused: banned
)
REMOVALS = (Kind.KICKED, Kind.BANNED)


def classify(raw: str) -> Line:
    """Classify one server line (already decoded, line ending removed)."""
    body = raw
    timestamp: str | None = None
    m = _TIMESTAMP.match(body)
    if m:
        timestamp, body = m.group(1), m.group(2)

    for prefix, kind in REMOVAL_PREFIXES:
        if body.startswith(prefix):
            return Line(kind, body[len(_NOTICE_PREFIX) :].strip(), None, timestamp, raw)
    if body.startswith(_ERROR_PREFIX):
        return Line(Kind.ERROR, body[len(_ERROR_PREFIX) :].strip(), None, timestamp, raw)
    if body.startswith(_NOTICE_PREFIX):
        return Line(Kind.NOTICE, body[len(_NOTICE_PREFIX) :].strip(), None, timestamp, raw)
    for kind, pattern in (
        (Kind.CHAT, _CHAT),
        (Kind.PRIVATE_SENT, _PRIVATE_SENT),
        (Kind.PRIVATE, _PRIVATE),
        (Kind.ACTION, _ACTION),
    ):
        m = pattern.match(body)
        if m:
            return Line(kind, m.group(2) or "", m.group(1), timestamp, raw)
    return Line(Kind.OTHER, body, None, timestamp, raw)


# --- What notices say about nicks -------------------------------------------------


@dataclass(frozen=True)
class NickEvent:
    """A change to the set of nicks a notice announces."""


@dataclass(frozen=True)
class YouAre(NickEvent):
    """The server told us our own nick (greeting, or our own rename)."""

    nick: str


@dataclass(frozen=True)
class Joined(NickEvent):
    nick: str


@dataclass(frozen=True)
class Left(NickEvent):
    nick: str


@dataclass(frozen=True)
class Renamed(NickEvent):
    old: str
    new: str


@dataclass(frozen=True)
class NickList(NickEvent):
    """A /who reply: the full list of nicks in the room."""

    nicks: tuple[str, ...]


_YOU_ARE = re.compile(r"\bYou are ([^\s.,!]+)[.!]?(?:\s|\Z)")  # in the greeting
_JOINED = re.compile(rf"({_NICK}) has joined\b")
_LEFT = re.compile(rf"({_NICK}) has left\b")
_RENAMED = re.compile(rf"({_NICK}) is now known as ({_NICK}?)\.?\Z")
_WHO = re.compile(r"Users (?:online|in \S+) \(\d+\): (.*)\Z")
_ANNOTATION = re.compile(r"\s*\([^)]*\)\Z")


def nick_event(line: Line) -> NickEvent | None:
    """What a notice says about nicks, if anything."""
    if line.kind is not Kind.NOTICE:
        return None
    text = line.text
    m = _RENAMED.match(text)
    if m:
        return Renamed(m.group(1), m.group(2))
    m = _WHO.match(text)
    if m:
        nicks = []
        for item in m.group(1).split(","):
            name = _ANNOTATION.sub("", item.strip()).strip()
            if name:
                nicks.append(name)
        return NickList(tuple(nicks))
    m = _JOINED.match(text)
    if m:
        return Joined(m.group(1))
    m = _LEFT.match(text)
    if m:
        return Left(m.group(1))
    # Only the greeting says who we are: "You are now in #room", "You are marked as away"
    # and the like are about something else, and our renames arrive as Renamed.
    m = _YOU_ARE.search(text)
    if m and text.startswith("Welcome"):
        return YouAre(m.group(1))
    return None


# --- What notices say about where we are --------------------------------------------


@dataclass(frozen=True)
class PresenceEvent:
    """A change to what the server knows about us only while we are connected."""


@dataclass(frozen=True)
class Moved(PresenceEvent):
    """We are now in ``room`` (our own /join)."""

    room: str


@dataclass(frozen=True)
class AwaySet(PresenceEvent):
    text: str


@dataclass(frozen=True)
class AwayCleared(PresenceEvent):
    pass


_MOVED = re.compile(r"You are now in (#\S+) \(")
_AWAY = re.compile(r"You are marked as away: (.*)\Z", re.DOTALL)
_BACK = "You are no longer marked as away"


def presence_event(line: Line) -> PresenceEvent | None:
    """What a notice says about our room or away state, if anything."""
    if line.kind is not Kind.NOTICE:
        return None
    text = line.text
    m = _MOVED.match(text)
    if m:
        return Moved(m.group(1))
    m = _AWAY.match(text)
    if m:
        return AwaySet(m.group(1))
    if text == _BACK:
        return AwayCleared()
    return None
