"""Rooms: their names, their members, their topic and their history."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key
from chatd.history import HistoryBudget, HistoryEntry, RoomHistory
from chatd.limits import AddressRates

if TYPE_CHECKING:
    from chatd.service import User

ROOM_NAME_MAX = 32
DEFAULT_MAX_ROOMS = 1000
DEFAULT_ROOM_EXPIRY = 30 * 24 * 3600.0  # seconds a room may stay empty before it expires
DEFAULT_ROOM_RATE = 10.0  # rooms one address may create per minute
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

    __slots__ = ("empty_since", "history", "key", "members", "name", "persisted",
                 "remote_members", "topic", "topic_at", "topic_by")

    def __init__(
        self,
        name: str,
        history_size: int,
        topic: str = "",
        topic_by: str = "",
        topic_at: float = 0.0,
        history: list[HistoryEntry] | None = None,
        persisted: bool = False,
        budget: HistoryBudget | None = None,
    ) -> None:
        self.name = name
        self.key = room_key(name)
        self.topic = topic
        self.topic_by = topic_by
        self.topic_at = topic_at
        self.members: set[User] = set()  # users connected to this process
        # Users of other chatd processes in this room (nick_key -> nick), from bus events.
        self.remote_members: dict[str, str] = {}
        self.history = RoomHistory(history_size, history or (), budget)
        # Whether the store has a row for this room yet (one is written on its first
        # history line or topic; rooms nobody said anything in are not worth keeping).
        self.persisted = persisted
        # When the last member left (or, for a room loaded at start, its last activity);
        # None while someone is in it. Rooms empty longest expire, or make way, first.
        self.empty_since: float | None = None

    @property
    def size(self) -> int:
        """How many users are in the room, in every process."""
        return len(self.members) + len(self.remote_members)

    @property
    def empty(self) -> bool:
        return not (self.members or self.remote_members)

    @property
    def worth_keeping(self) -> bool:
        """An empty room without a topic is forgotten, with its history: anyone can make
        rooms, so only a room someone gave a topic outlives its last member."""
        return bool(self.topic) or not self.empty

    def last_activity(self) -> float:
        """When the room was last spoken in or given its topic (0 if never)."""
        newest = self.history.last(1)
        return max(self.topic_at, newest[0].at if newest else 0.0)


class RoomCreation:
    """How many rooms each address may create: ``per_minute`` a minute on average, as many
    at once. Addresses count like --max-per-ip (IPv6 by ``ipv6_prefix`` block)."""

    def __init__(self, per_minute: float = DEFAULT_ROOM_RATE,
                 ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.rates = AddressRates(per_minute / 60, per_minute)

    @property
    def per_minute(self) -> float:
        return self.rates.burst

    @per_minute.setter
    def per_minute(self, value: float) -> None:
        self.rates.configure(value / 60, value)

    def allow(self, host: str | None, now: float) -> bool:
        """Spends one room creation of ``host`` (None: not an IP peer, never limited)."""
        return host is None or self.rates.take(count_key(host, self.ipv6_prefix), now)
