"""``RedisBus``: the event bus of a chatd process that shares its chat through Redis.

It keeps the contract of chatd/events.py:

- ``publish`` hands the event to this process's subscribers at once (so local users are
  served with or without Redis), and applies it to the cluster's copy in Redis and
  publishes it there, in one Lua script (chatd/cluster/state.py). The events of one
  reactor turn go in one script call, on one connection: Redis runs them in the order
  this process published them.
- Every event from the channel is decoded and handed to the subscribers, except those
  whose ``origin`` is this process: they were delivered when they were published, and
  are never delivered twice. An event that does not decode is logged and dropped.

Around the contract, the bus keeps this process a member of the cluster (``ClusterMember``
below): heartbeats, nick claims, rejoining after Redis comes back, and what to say when
it goes away.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

import txredisapi
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from chatd.cluster import codec
from chatd.cluster.address import RedisAddress
from chatd.cluster.link import RedisLink
from chatd.cluster.state import PREFIX, ClusterState
from chatd.events import (
    Acted,
    AwayChanged,
    Banned,
    Connected,
    Event,
    EventHandler,
    IEventBus,
    Joined,
    Kicked,
    Left,
    Muted,
    Renamed,
    Said,
    TopicChanged,
    Unbanned,
    Unmuted,
)
from chatd.rooms import room_key
from chatd.text import clean_text, nick_key

Arguments = tuple[str | float | int, ...]
# Events held while a snapshot is read (normally a few). Past this many, they are dropped
# and the snapshot is read again: a flood during a slow rejoin costs no unbounded memory.
MAX_HELD = 10_000
# Events in one script call: Redis runs a script alone, so a long one stalls every process.
MAX_BATCH = 200


def cleaned(event: Event) -> Event:
    """``event`` with every text field cleaned as the edge cleans what clients send.

    The sending process cleaned them already; this is for events that did not come from
    a chatd (anyone who can PUBLISH on the Redis can put any bytes on the channel): no
    control character from the channel reaches a terminal.
    """
    changes = {f.name: clean_text(value) for f in dataclasses.fields(event)
               if isinstance(value := getattr(event, f.name), str) and not value.isprintable()}
    if not changes:
        return event
    fixed: Event = dataclasses.replace(cast(Any, event), **changes)
    return fixed


def script_arguments(event: Event, history_size: int) -> tuple[str, Arguments]:
    """What the APPLY script does with ``event`` in Redis: its kind and arguments."""
    if isinstance(event, Said | Acted):
        return "line", (room_key(event.room), event.room, history_size)
    if isinstance(event, Joined):
        return "join", (room_key(event.room), event.room, nick_key(event.nick), event.nick,
                        event.where)
    if isinstance(event, Left):
        return "leave", (room_key(event.room), nick_key(event.nick))
    if isinstance(event, Renamed):
        return "rename", (nick_key(event.old), nick_key(event.new), event.new)
    if isinstance(event, AwayChanged):
        return "away", (nick_key(event.nick), event.reason)
    if isinstance(event, Connected):
        return "connected", (nick_key(event.nick), event.where)
    if isinstance(event, Kicked):
        return "kick", (nick_key(event.nick), event.where, repr(float(event.until)))
    if isinstance(event, Banned | Unbanned):
        return "ban" if isinstance(event, Banned) else "unban", (event.network,)
    if isinstance(event, Muted | Unmuted):
        return "mute" if isinstance(event, Muted) else "unmute", (event.key,)
    if isinstance(event, TopicChanged):
        return "topic", (room_key(event.room), event.room, event.topic, event.nick,
                         repr(float(event.at)))
    return "notice", ()


def split_message(message: bytes) -> tuple[int, str, bytes]:
    """``SEQ ORIGIN PAYLOAD`` from the channel; raises ValueError if it is not that."""
    seq, origin, payload = [*message.split(b" ", 2), b"", b""][:3]
    if not seq.isdigit() or len(seq) > 20 or not origin or not payload:
        raise ValueError("not SEQ ORIGIN PAYLOAD")
    return int(seq), origin.decode("ascii", "replace"), payload


@implementer(IEventBus)
class RedisBus:
    """Carries events between the chatd processes on one Redis."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        address: RedisAddress,
        history_size: int,
        default_room: str = "",
        prefix: str = PREFIX,
    ) -> None:
        # The chat service's origin: which events are ours (set by ClusterMember).
        self.origin = ""
        self.history_size = history_size
        self._reactor = reactor
        self._outbox: list[tuple[Event, defer.Deferred[int] | None]] = []
        self._flushing: Any = None
        self._handlers: list[EventHandler] = []
        # The chat side's one output batch (chatd/output.py), entered around each read from
        # the channel, so a run of messages is one write to each recipient on every
        # front-end, as a client's read is: makeService sets it.
        self.output_batch: AbstractContextManager[Any] = contextlib.nullcontext()
        self.link = RedisLink(reactor, address, f"{prefix}events", self._message,
                              self._up, self._down, batch=lambda: self.output_batch)
        # The default room outlives its last member in Redis too, as it does in a process.
        self.state = ClusterState(self.link, prefix, room_key(default_room))
        self.last_seq = 0
        # While (re)joining: the events that arrive before the snapshot is in, to be
        # handed on after it, minus those the snapshot already holds.
        self._held: list[tuple[int, Event]] | None = None
        self.on_up: Callable[[], None] = lambda: None
        self.on_down: Callable[[str], None] = lambda why: None
        self.dropped = 0  # undecodable messages, for the log and tests
        self.held_overflowed = False

    # --- IEventBus -------------------------------------------------------------------------

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def publish(self, event: Event) -> None:
        # Queued first: whatever a subscriber does next (a claim, a release) goes to Redis
        # after this event, as it happened after it.
        if self.link.up:
            self._queue(event, None)
        self._hand_on(event)

    def push(self, event: Event) -> defer.Deferred[int]:
        """Applies ``event`` to the cluster's copy and publishes it, without handing it to
        this process's subscribers; fires with its seq."""
        d: defer.Deferred[int] = defer.Deferred()
        self._queue(event, d)
        return d

    def _queue(self, event: Event, waiter: defer.Deferred[int] | None) -> None:
        """Events published in one reactor turn go to Redis in one script call (at most
        MAX_BATCH at a time): one round trip instead of one per event, same order."""
        self._outbox.append((event, waiter))
        if len(self._outbox) >= MAX_BATCH:
            self._flush()
        elif self._flushing is None or not self._flushing.active():
            self._flushing = self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        events = []
        for event, _ in batch:
            kind, args = script_arguments(event, self.history_size)
            events.append((codec.encode(event), event.origin or "-", kind, args))

        def applied(seqs: list[int]) -> None:
            for (_, waiter), seq in zip(batch, seqs, strict=True):
                if waiter is not None:
                    waiter.callback(seq)

        def failed(failure: Any) -> None:
            # A lost connection is said once, by _down; anything else is worth a line.
            if self.link.up and not failure.check(txredisapi.ConnectionError):
                self.log.failure("Redis refused {count} events", failure, count=len(batch))
            for _, waiter in batch:
                if waiter is not None:
                    waiter.errback(failure)

        self.state.apply_many(events).addCallbacks(applied, failed)

    def _hand_on(self, event: Event) -> None:
        for handler in self._handlers:
            handler(event)

    # --- From the channel ------------------------------------------------------------------

    def _message(self, message: bytes) -> None:
        try:
            seq, origin, payload = split_message(message)
            if origin == self.origin:
                # Ours: handed on when it was published. Not even decoded.
                self.last_seq = max(self.last_seq, seq)
                return
            event = cleaned(codec.decode(payload))
        except ValueError as e:  # UndecodableEvent is one
            self.dropped += 1
            self.log.warn("Dropped a message on the Redis channel: {why}", why=str(e))
            return
        if self._held is not None:
            if len(self._held) >= MAX_HELD:
                self._held.clear()
                self.held_overflowed = True
            self._held.append((seq, event))
            return
        self._receive(seq, event)

    def _receive(self, seq: int, event: Event) -> None:
        self.last_seq = max(self.last_seq, seq)
        if event.origin != self.origin:
            self._hand_on(event)

    def hold(self) -> None:
        """Holds what arrives from now on, until ``release(seq)``."""
        self._held = []
        self.held_overflowed = False

    def release(self, seq: int) -> bool:
        """Hands on what was held, skipping what a snapshot current to ``seq`` has; False
        (and nothing handed on, still holding) if more arrived than could be held: the
        snapshot must be read again."""
        if self.held_overflowed:
            self.hold()
            return False
        held, self._held = self._held or [], None
        self.last_seq = max(self.last_seq, seq)
        for number, event in held:
            if number > seq:
                self._receive(number, event)
        return True

    # --- The link --------------------------------------------------------------------------

    def start(self) -> None:
        self.link.start()

    def stop(self) -> defer.Deferred[Any]:
        return self.link.stop()

    def _up(self) -> None:
        self.on_up()

    def _down(self, why: str) -> None:
        self._held = None
        self.on_down(why)
