"""``ClusterMember``: what keeps one chatd process a member of the cluster.

- **Heartbeats.** Every ``HEARTBEAT`` seconds the process tells Redis it is alive and reaps
  the processes that are not (chatd/cluster/state.py). If it finds it was reaped itself
  (it was cut off longer than ``PROCESS_TTL``), it rejoins.
- **Nicks.** The chat service refuses a nick another process's user holds, or one that
  looks like it (chatd/remote.py). Each local user's nick is also claimed in Redis,
  atomically, when they register (the ``Connected`` event: in a room or not), and
  released when they go (``Disconnected``); if two processes gave out the same nick in the
  same instant, the one whose claim lost renames its user to a fresh guest nick and says
  why. Guest numbers come from blocks reserved in Redis, so guests of different processes
  do not clash.
- **Rejoining.** When the link comes up (at start, and after every outage), the process
  holds incoming events, claims its users' nicks and announces them again (``Connected``
  where the cluster had lost the claim, ``Joined`` where it had lost them in a room),
  offers its topics (Redis keeps the later of two), appends what they said while cut off
  to the cluster's history (``_backfill``: each line once, however often this runs), reads
  a snapshot of the cluster's rooms, topics, histories, members and registered users,
  applies it, and hands on the held events newer than it.
- **Outages.** When Redis goes away, the process says so once in the log and to its
  operators, forgets the other processes' users (it cannot reach them) and goes on serving
  its own users locally, keeping their chat lines for the cluster (chatd/cluster/backlog.py,
  bounded like history). Nothing raises into the reactor.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import txredisapi
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from chatd.cluster import codec
from chatd.cluster.backlog import OutageBacklog
from chatd.cluster.bus import MAX_BATCH, RedisBus, script_arguments
from chatd.cluster.state import (
    GONE_REASON,
    HEARTBEAT,
    SHUTDOWN_REASON,
    ClaimRefused,
    ClusterState,
    Snapshot,
)
from chatd.events import (
    Acted,
    AwayChanged,
    Backfilled,
    Banned,
    ChatLine,
    Connected,
    Disconnected,
    Event,
    Joined,
    Kicked,
    Muted,
    Renamed,
    RoomNotice,
    RuleEvent,
    Said,
    TopicChanged,
    Unbanned,
    Unmuted,
)
from chatd.history import HistoryEntry
from chatd.rooms import room_key
from chatd.service import ChatService, User
from chatd.text import nick_key, nick_skeleton


class GuestNumbers:
    """Guest numbers no other process gives out: blocks of ``BLOCK`` reserved in Redis with
    INCRBY, refilled before they run out. With no block at hand (Redis is away), numbers
    come from a range far above the reserved ones, and a clash is settled by the claim."""

    BLOCK = 64

    def __init__(self, state: ClusterState, up: Callable[[], bool]) -> None:
        self._state = state
        self._up = up
        self._numbers: deque[int] = deque()
        self._refilling = False
        self._fallback = itertools.count(random.randrange(10**6, 10**7, 1000))

    def __iter__(self) -> GuestNumbers:
        return self

    def __next__(self) -> int:
        number = self._numbers.popleft() if self._numbers else next(self._fallback)
        if len(self._numbers) < self.BLOCK // 4:
            self.refill()
        return number

    def refill(self) -> None:
        if self._refilling or not self._up():
            return
        self._refilling = True

        def reserved(last: int) -> None:
            self._numbers.extend(range(last - self.BLOCK + 1, last + 1))

        def done(_: Any) -> None:
            self._refilling = False

        self._state.reserve_guests(self.BLOCK).addCallbacks(reserved, lambda _: None
                                                            ).addBoth(done)


class ClusterMember(service.Service):
    log = Logger()

    def __init__(self, chat: ChatService, bus: RedisBus, clock: Any) -> None:
        self.setName("cluster")
        self.chat = chat
        self.bus = bus
        self.clock = clock
        self.origin = bus.origin = chat.origin
        self.claimed: dict[str, str] = {}  # nick_key -> nick: local users' claims in Redis
        self.joined_once = False
        self.rejoining: defer.Deferred[Any] | None = None
        self._beat = task.LoopingCall(self.heartbeat)
        self._beat.clock = clock
        bus.subscribe(self._event)
        bus.on_up = self._up
        bus.on_down = self._down
        self.guests = chat.guest_numbers = GuestNumbers(bus.state, lambda: bool(bus.link.up))
        # Lines said here while Redis is away, for the cluster's history when it is back.
        self.backlog = OutageBacklog(chat.history_size, chat.history_budget,
                                     lambda: chat.max_rooms)
        # Bans and mutes set or lifted here while Redis is away, as made (the operator and
        # the nick with them), the latest per rule: given to the cluster when it is back.
        self.unshared_rules: dict[str, RuleEvent] = {}

    def startService(self) -> None:
        super().startService()
        self.log.info("Joining the cluster on Redis at {address} as {origin} (rooms, topics "
                      "and history are kept there; --state is not used)",
                      address=self.bus.link.address.describe(), origin=self.origin)
        self.bus.start()
        self._beat.start(HEARTBEAT, now=False)

    def stopService(self) -> defer.Deferred[Any]:
        """Takes this process's users out of the cluster (the others see them leave now,
        not when the heartbeat runs out), then closes the link."""
        super().stopService()
        if self._beat.running:
            self._beat.stop()
        leaving: defer.Deferred[Any] = defer.succeed(None)
        if self.bus.link.up:
            leaving = self.bus.state.depart(self.origin, SHUTDOWN_REASON)
        leaving.addErrback(lambda _: None)  # Redis is gone: the heartbeat runs out instead
        return leaving.addBoth(lambda _: self.bus.stop())

    # --- Nicks -----------------------------------------------------------------------------

    def _claim(self, nick: str, old: str | None) -> None:
        key = nick_key(nick)
        self.claimed.pop(nick_key(old), None) if old is not None else None
        self.claimed[key] = nick
        d = self.bus.state.claim(self.origin, key, nick, nick_skeleton(nick),
                                 nick_key(old) if old is not None else "")
        d.addErrback(self._claim_refused, nick)

    def _claim_refused(self, failure: Any, nick: str) -> None:
        if not failure.check(ClaimRefused):
            return  # Redis went away: claimed again when it is back
        refusal: ClaimRefused = failure.value
        user = self.chat.users.get(nick_key(nick))
        self.claimed.pop(nick_key(nick), None)
        if user is None:
            return
        new = self.chat.rename_to_guest(user)
        self.chat.notice(user, f'Another server gave "{refusal.holder}" out at the same time; '
                               f"you are now {new}")

    def _release_departed(self) -> None:
        """Releases the claims of local users who have gone."""
        for key in [k for k in self.claimed if k not in self.chat.users]:
            del self.claimed[key]
            if self.bus.link.up:
                self.bus.state.release(self.origin, key).addErrback(lambda _: None)

    # --- Events ----------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        """Our own events, as they are published: nicks to claim (from registration on) and
        to release, and lines said while Redis is away; and a rename of one of our users by
        an operator of another process. (The other processes' users are the chat
        service's to know: chatd/remote.py.)"""
        if isinstance(event, Renamed) and (event.origin == self.origin or event.forced):
            if nick_key(event.new) in self.chat.users:  # ours, whoever renamed them
                self._claim(event.new, event.old)
            return
        if event.origin != self.origin:
            return
        if isinstance(event, Said | Acted):
            if not self.bus.link.up:  # the bus did not send it: kept for when Redis is back
                self.backlog.record(event)
        elif isinstance(event, Banned | Unbanned | Muted | Unmuted):
            if not self.bus.link.up:
                self.unshared_rules[_rule_name(event)] = event
        elif isinstance(event, Connected):
            if nick_key(event.nick) not in self.claimed:
                self._claim(event.nick, None)
        elif isinstance(event, Disconnected):
            self.clock.callLater(0, self._release_departed)

    # --- Heartbeats ------------------------------------------------------------------------

    def heartbeat(self) -> None:
        self._release_departed()
        if not self.bus.link.up:
            return
        self.bus.link.ping_subscriber()

        def known(still: bool) -> None:
            if not still and self.rejoining is None:
                self.log.warn("The cluster had given this process up for gone; rejoining")
                self._rejoin()

        self.bus.state.heartbeat(self.origin).addCallbacks(known, lambda _: None)

    # --- Up and down -----------------------------------------------------------------------

    def _up(self) -> None:
        if self.joined_once:
            self.log.info("Redis at {address} is back; rejoining the cluster",
                          address=self.bus.link.address.describe())
            self._tell_operators("Redis is back: this server has rejoined the cluster.")
        self._rejoin()

    def _down(self, why: str) -> None:
        self.log.warn("Redis at {address} is unreachable ({why}): serving this server's "
                      "users only until it is back", address=self.bus.link.address.describe(),
                      why=why)
        self._tell_operators(f"Redis is unreachable ({why}): this server serves its own "
                             "users only until it is back.")
        self.forget_remote_users()

    def _tell_operators(self, text: str) -> None:
        for user in list(self.chat.users.values()):
            if user.operator is not None:
                self.chat.notice(user, text)

    def forget_remote_users(self) -> None:
        self.chat.forget_remote_users()

    def _rejoin(self) -> None:
        """Announces our users to the cluster again and takes in its state."""
        self.bus.hold()
        state = self.bus.state

        @defer.inlineCallbacks
        def rejoin() -> Any:
            yield state.heartbeat(self.origin)
            # Who left while we were cut off (and not reaped): their leaving never reached
            # Redis. Out of the rooms and free, for everyone.
            yield state.depart_gone(self.origin, GONE_REASON, list(self.chat.users))
            for user in list(self.chat.users.values()):
                yield self._announce(user)
            # What was said and set here while cut off goes to the cluster before its
            # state is read: the snapshot then has it, as the other processes do. Topics
            # first: a room kept for its topic keeps the lines backfilled into it.
            yield self._offer_topics()
            yield self._backfill()
            yield self._share_rules()
            snapshot = yield state.snapshot()
            while True:
                self._take_in(snapshot)
                self._take_in_rules(snapshot)
                if self.bus.release(snapshot.seq):
                    break
                snapshot = yield state.snapshot()  # a flood overran what is held
            self.guests.refill()
            self.log.info("{how} the cluster: {rooms} rooms, {remote} users elsewhere",
                          how="Rejoined" if self.joined_once else "Joined",
                          rooms=len(snapshot.rooms), remote=len(self.chat.remote))
            self.joined_once = True

        def failed(failure: Any) -> None:
            # The link went down again (it says so itself); rejoining starts over when it
            # is back. Anything else is a bug worth its traceback, but not a stopped bus.
            if self.bus.link.up and not failure.check(txredisapi.ConnectionError):
                self.log.failure("Rejoining the cluster failed", failure)
                self.bus.release(self.bus.last_seq)

        def done(_: Any) -> None:
            self.rejoining = None

        self.rejoining = rejoin().addErrback(failed).addBoth(done)

    @defer.inlineCallbacks
    def _announce(self, user: User) -> Any:
        nick = user.nick
        try:
            new_claim = yield self.bus.state.claim(self.origin, user.key, nick,
                                                   nick_skeleton(nick))
        except ClaimRefused as refusal:
            new = self.chat.rename_to_guest(user)
            self.chat.notice(user, f'While this server was cut off, "{refusal.holder}" was '
                                   f"taken elsewhere; you are now {new}")
            return
        self.claimed[user.key] = nick
        if new_claim:  # the cluster had lost them (or never had them): they are here
            yield self.bus.push(Connected(nick, origin=self.origin, where=self.chat.where(user)))
        if user.away is not None:
            yield self.bus.push(AwayChanged(nick, user.away, origin=self.origin))
        for room in list(user.rooms.values()):
            joined = Joined(room.name, nick, origin=self.origin, where=self.chat.where(user))
            yield self.bus.state.apply(codec.encode(joined), self.origin, "join-again", room.key,
                                       room.name, user.key, nick, joined.where)

    @defer.inlineCallbacks
    def _backfill(self) -> Any:
        """Appends the lines said here while Redis was away to the cluster's history, part
        by part (each part once, however often it is sent), and tells each room's people
        elsewhere, in one notice, how many were added: they are history, not live chat."""
        added: dict[str, int] = {}  # room name -> lines
        while (part := self.backlog.next_part(MAX_BATCH)) is not None:
            number, lines = part
            count = yield self.bus.state.backfill(
                self.origin, number, self.chat.history_size,
                [(room_key(line.room), line.room, codec.encode(line),
                  codec.encode(_backfilled(line))) for line in lines])
            self.backlog.done(number)
            for line in lines if count else ():
                added[line.room] = added.get(line.room, 0) + 1
        for room, count in added.items():
            said = "1 line" if count == 1 else f"{count} lines"
            self.bus.push(RoomNotice(
                room, f"{said} said in {room} on {self.chat.server_name} while it was cut off "
                      "from the cluster are now in the history", origin=self.origin,
            )).addErrback(lambda _: None)

    def _offer_topics(self) -> defer.Deferred[Any]:
        """Offers the cluster every topic this process has; Redis takes each only if it was
        set later than the one it has (a topic changed here and elsewhere while apart: the
        later wins, everywhere, since the snapshot read next has the winner)."""
        topics = [TopicChanged(room.name, room.topic_by, room.topic, room.topic_at,
                               origin=self.origin)
                  for room in self.chat.rooms.values() if room.topic_at > 0]
        return self.bus.state.apply_many(
            [(codec.encode(topic), self.origin, "topic-if-newer",
              script_arguments(topic, self.chat.history_size)[1]) for topic in topics])

    @defer.inlineCallbacks
    def _share_rules(self) -> Any:
        """Gives the cluster the bans and mutes set or lifted here while cut off, as they
        were made (the same events: a ban by nick still spares the others at its address,
        and its operator, on every process)."""
        for name, event in list(self.unshared_rules.items()):
            yield self.bus.push(event)
            if self.unshared_rules.get(name) is event:
                del self.unshared_rules[name]

    def _take_in(self, snapshot: Snapshot) -> None:
        """The cluster's rooms, members, topics, histories and registered users, as this
        process's copy."""
        self.forget_remote_users()
        for saved in snapshot.rooms:
            members = {key: nick for key, nick in saved.members.items()
                       if key not in self.chat.users}
            self.chat.restore_room(saved.name, saved.topic, saved.topic_by, saved.topic_at,
                                   members, list(_history(saved.history)))
        for key, (origin, nick) in snapshot.claims.items():
            if origin not in ("", self.origin) and key not in self.chat.users:
                self.chat.remote.connected(nick)
        for key, reason in snapshot.away.items():
            remote = self.chat.remote.by_key.get(key)
            if remote is not None:
                remote.away = reason

    def _take_in_rules(self, snapshot: Snapshot) -> None:
        """The cluster's bans, mutes and kick delays, and where its users connect from.

        A user of ours kicked elsewhere while we were cut off is disconnected now. The
        bans and mutes set here while Redis was away are in it already (``_share_rules``); a
        ban or mute in force here that the cluster lacks was lifted elsewhere meanwhile (or
        Redis lost it): it holds here until lifted again, and is not put back."""
        for key, where in snapshot.where.items():
            remote = self.chat.remote.by_key.get(key)
            if remote is not None:
                remote.where = where
        rules = self.chat.rules
        if rules is None:
            return
        ours = {_rule_name(event) for event in rules.in_force()}
        for data in snapshot.rules:
            try:
                event = codec.decode(data)
            except codec.UndecodableEvent:
                continue
            if isinstance(event, Banned | Muted):
                rules.apply(event)
                if _rule_name(event) not in ours:  # new here: it disconnects whom it covers
                    rules.deliver(event)
        now = self.clock.seconds()
        for field, until in snapshot.kicks.items():
            where, _, key = field.partition(" ")
            kick = Kicked(key, "", "", where=where, until=_seconds(until))
            rules.apply(kick)
            # Ours, kicked by an operator elsewhere while we were cut off (the kick never
            # reached us): out now, as they would be refused if they came back.
            user = self.chat.users.get(key)
            if user is not None and kick.until > now and self.chat.where(user) == where:
                self.chat.remove(user, "kicked by an operator while this server was cut off "
                                       "from the cluster")


def _backfilled(line: ChatLine) -> Backfilled:
    return Backfilled(line.room, line.nick, line.text, line.at, isinstance(line, Acted),
                      line.origin)


def _rule_name(event: RuleEvent) -> str:
    """What a rule event sets or lifts: a ban of a network, or a mute of a nick_key."""
    if isinstance(event, Banned | Unbanned):
        return f"ban {event.network}"
    return f"mute {event.key}"


def _seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _history(lines: Iterable[bytes]) -> Iterable[HistoryEntry]:
    for data in lines:
        try:
            event = codec.decode(data)
        except codec.UndecodableEvent:
            continue
        if isinstance(event, Said | Acted):
            yield HistoryEntry(event.at, event)
