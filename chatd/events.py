"""What happens in the chat, as plain values, and the one narrow way it leaves the service.

Every change to shared state is an event: a line said (it goes into the room's history), a
join, a leave, a rename, a topic change, a user registering and going. The chat service
never changes shared state or writes to a connection any other way. It *applies* each of
its own events to its own copy at once, then publishes it on an ``IEventBus``; every event
the bus hands back is fanned out to the local recipients, and an event from another
process is applied to this process's copy first. So several chatd processes on one bus
hold the same rooms, topics, histories and room memberships, and a bus only has to carry
events.

Each event carries its ``origin``: the id of the process whose service made it
(``ChatService.origin``). It is not part of an event's equality.

What a bus must provide (``IEventBus``):

1. ``publish(event)`` delivers the event to every subscriber of every process on the bus,
   the publishing process included (it fans out its own events from the bus too).
2. Events from one process arrive everywhere in the order that process published them.
   Events from different processes may interleave in any order.
3. Delivery is at most once per subscriber; the ``origin`` field and every other field
   arrive unchanged (a bus that serialises events must round-trip them exactly: they are
   frozen dataclasses of str, float and bool fields).
4. ``LocalEventBus`` hands events straight back, synchronously; a remote bus (Redis) may
   hand them back later, and must hand them back on the reactor thread.

What a bus does not give: nick uniqueness across processes (two processes may each accept
the same new nick at once), nor a snapshot of the state for a process that joins late.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from zope.interface import Interface, implementer


def _origin() -> str:
    return field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Said:
    """A chat line in a room (appended to its history)."""

    room: str
    nick: str
    text: str
    at: float = field(default=0.0, compare=False)  # when it was said
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Acted:
    """A /me action in a room (appended to its history)."""

    room: str
    nick: str
    text: str
    at: float = field(default=0.0, compare=False)
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Joined:
    room: str
    nick: str
    origin: str = _origin()
    quiet: bool = False  # not announced: its address is over its rate of join notices
    # Where the user connects from, as a rule by nickname keys it (an IPv4 address or an
    # IPv6 block; "" when not IP): an operator of another process bans or kicks by it.
    # Never shown to anyone.
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Left:
    room: str
    nick: str
    reason: str
    quit: bool = False  # they left chatd altogether (disconnected), not only this room
    origin: str = _origin()
    quiet: bool = False  # not announced, like the join before it


@dataclass(frozen=True, slots=True)
class Renamed:
    old: str
    new: str
    origin: str = _origin()
    # An operator's /rename: the user renamed may be connected to any process, not only the
    # one that made the event.
    forced: bool = False


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """A line from one user to another; only the recipient gets it. ``action``: a private
    /me (an IRC client's CTCP ACTION to a nick), ``text`` being what the sender does."""

    sender: str
    recipient: str
    text: str
    origin: str = _origin()
    action: bool = False


@dataclass(frozen=True, slots=True)
class TopicChanged:
    room: str
    nick: str
    topic: str
    at: float = field(default=0.0, compare=False)
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Announcement:
    """A server notice to everyone connected (for example, the shutdown notice), or to the
    one user called ``to``, whichever process they are connected to."""

    text: str
    origin: str = _origin()
    to: str = ""


@dataclass(frozen=True, slots=True)
class RoomNotice:
    """A server notice to the members of one room (for example, that someone was muted)."""

    room: str
    text: str
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class AwayChanged:
    """A user marked themselves away (``reason``), or back (``reason`` empty). Shown to
    nobody: a private message to them is answered with it, from any process."""

    nick: str
    reason: str
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Connected:
    """A user registered (connected and named), before joining any room. Shown to nobody:
    other processes learn that the nick is taken and that /msg and WHOIS reach them."""

    nick: str
    origin: str = _origin()
    # Where they connect from, as ``Joined.where``; never shown to anyone.
    where: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A user is gone from chatd (after the ``Left`` of each of their rooms). Shown to
    nobody: it ends what ``Connected`` began."""

    nick: str
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Backfilled:
    """A chat line said while its process was cut off from the cluster (Redis was away),
    added to the room's history when it came back: appended, with its own ``at``, and not
    shown as live chat (chatd/cluster/backlog.py)."""

    room: str
    nick: str
    text: str
    at: float = field(default=0.0, compare=False)
    action: bool = False  # a /me (Acted), not a Said
    origin: str = _origin()

    @property
    def line(self) -> ChatLine:
        """The line as the room's history keeps it."""
        kind = Acted if self.action else Said
        return kind(self.room, self.nick, self.text, self.at, self.origin)


@dataclass(frozen=True, slots=True)
class Kicked:
    """An operator (``by``, their nick) kicked ``nick`` off chatd: the user leaves every
    room they are in (``rooms``, the names as the kicking process saw them, space
    separated), is told, and is disconnected by the process they are connected to. Until
    ``until`` (0: no delay) the nickname may not come back from ``where`` (as
    ``Joined.where``), on any process.

    Each room's members are handed a copy with ``room`` set to that room (an IRC KICK, a
    line user's "has left"); the kicked user is handed the event itself."""

    nick: str
    by: str
    reason: str
    rooms: str = ""
    where: str = ""
    until: float = 0.0
    room: str = ""
    origin: str = _origin()


# Moderation rules: they change what every process refuses, and are delivered to nobody
# (the moderator acts on them: chatd/moderation/moderator.py). Times are seconds since the
# epoch; ``expires`` 0 means for good.


@dataclass(frozen=True, slots=True)
class Banned:
    """An operator (named ``by``, with the nick ``op``) banned the address or block
    ``network``: new connections from it are refused, and its users but the operator are
    disconnected; only the user called ``nick`` when the ban was made by nickname."""

    network: str
    reason: str
    by: str
    op: str
    created: float
    expires: float = 0.0
    nick: str = ""
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Unbanned:
    network: str
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Muted:
    """A mute (chatd.moderation.rules.Mute): ``key`` the nick_key it was made under,
    ``keys`` the nick_keys it follows since (space separated), ``host`` "" when unknown."""

    key: str
    nick: str
    host: str
    by: str
    created: float
    expires: float = 0.0
    keys: str = ""
    origin: str = _origin()


@dataclass(frozen=True, slots=True)
class Unmuted:
    key: str
    origin: str = _origin()


RuleEvent = Banned | Unbanned | Muted | Unmuted
Event = (Said | Acted | Joined | Left | Renamed | PrivateMessage | TopicChanged | Announcement
         | RoomNotice | AwayChanged | Connected | Disconnected | Backfilled | Kicked | Banned
         | Unbanned | Muted | Unmuted)
# What a room's history keeps.
ChatLine = Said | Acted
EventHandler = Callable[[Event], None]


class IEventBus(Interface):
    """Carries events from the chat service to every process that has recipients.

    The contract is in this module's docstring.
    """

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
