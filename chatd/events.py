"""What happens in the chat, as plain values, and the one narrow way it leaves the service.

The chat service never writes to a connection itself. It publishes events on an
``IEventBus`` and delivers what the bus hands back to its subscribers. ``LocalEventBus``
hands events straight back in the same process; a Redis or NATS bus can implement the same
two methods to fan events out across several chatd processes without touching the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zope.interface import Interface, implementer


@dataclass(frozen=True, slots=True)
class Said:
    """A chat line in a room."""

    room: str
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class Acted:
    """A /me action in a room."""

    room: str
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class Left:
    room: str
    nick: str
    reason: str


@dataclass(frozen=True, slots=True)
class Renamed:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """A line from one user to another; only the recipient gets it."""

    sender: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class TopicChanged:
    room: str
    nick: str
    topic: str


@dataclass(frozen=True, slots=True)
class Announcement:
    """A server notice to everyone connected (for example, the shutdown notice)."""

    text: str


@dataclass(frozen=True, slots=True)
class RoomNotice:
    """A server notice to the members of one room (for example, that someone was muted)."""

    room: str
    text: str


Event = (Said | Acted | Joined | Left | Renamed | PrivateMessage | TopicChanged | Announcement
         | RoomNotice)
# What a room's history keeps.
ChatLine = Said | Acted
EventHandler = Callable[[Event], None]


class IEventBus(Interface):
    """Carries events from the chat service to every process that has recipients."""

    def publish(event: Event) -> None:
        """Sends ``event`` to every subscriber, in publication order."""

    def subscribe(handler: EventHandler) -> None:
        """Calls ``handler`` with every event published from now on."""


@implementer(IEventBus)
class LocalEventBus:
    """A bus for one process: publishing calls every subscriber synchronously."""

    def __init__(self) -> None:
        self._handlers: list[EventHandler] = []

    def publish(self, event: Event) -> None:
        for handler in self._handlers:
            handler(event)

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)
