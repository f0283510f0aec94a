"""Rooms: their names, their members, their topic and their history."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chatd.history import HistoryEntry, RoomHistory

if TYPE_CHECKING:
    from chatd.service import User

ROOM_NAME_MAX = 32
ROOM_RULE = f"'#' followed by 1 to {ROOM_NAME_MAX} letters, digits, '-' or '_'"
# ASCII only: room names are typed by nc users and must not come in look-alike variants.
_ROOM_PATTERN = re.compile(rf"#[A-Za-z0-9_-]{{1,{ROOM_NAME_MAX}}}")


class InvalidRoomName(ValueError):
    """The requested room name breaks the room name rule."""


def normalize_room(requested: str) -> str:
    """The room name as it will be shown, or raises InvalidRoomName.

    A missing leading '#' is added, so ``/join dev`` means ``/join #dev``.
    """
    name = requested if requested.startswith("#") else f"#{requested}"
    if not _ROOM_PATTERN.fullmatch(name):
        raise InvalidRoomName(f"invalid room name {requested!r}: use {ROOM_RULE}")
    return name


def room_key(name: str) -> str:
    """The form two room names are compared in."""
    return name.lower()


class Room:
    """A place to talk. ``members`` is the fan-out index: a line goes to these users only."""

    __slots__ = ("history", "key", "members", "name", "persisted", "remote_members", "topic",
                 "topic_at", "topic_by")

    def __init__(
        self,
        name: str,
        history_size: int,
        topic: str = "",
        topic_by: str = "",
        topic_at: float = 0.0,
        history: list[HistoryEntry] | None = None,
        persisted: bool = False,
    ) -> None:
        self.name = name
        self.key = room_key(name)
        self.topic = topic
        self.topic_by = topic_by
        self.topic_at = topic_at
        self.members: set[User] = set()  # users connected to this process
        # Users of other chatd processes in this room (nick_key -> nick), from bus events.
        self.remote_members: dict[str, str] = {}
        self.history = RoomHistory(history_size, history or ())
        # Whether the store has a row for this room yet (one is written on its first
        # history line or topic; rooms nobody said anything in are not worth keeping).
        self.persisted = persisted

    @property
    def size(self) -> int:
        """How many users are in the room, in every process."""
        return len(self.members) + len(self.remote_members)

    @property
    def worth_keeping(self) -> bool:
        """An empty room is forgotten unless it has something to show the next visitor."""
        return bool(self.members or self.remote_members or self.topic or len(self.history))
