"""chatd/cluster/state.py: the Lua scripts against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from chatd.cluster import codec
from chatd.cluster.address import parse_redis_url
from chatd.cluster.bus import split_message
from chatd.cluster.link import RedisLink
from chatd.cluster.state import REAPED_REASON, ClaimRefused, ClusterState
from chatd.events import Backfilled, Banned, Disconnected, Joined, Muted, Said
from chatd.text import nick_key, nick_skeleton
from tests import redis_support
from tests.redis_support import RedisServer
from tests.support import sleep, until

redis_server = redis_support.redis_server


class Process:
    """One side of the cluster: a link, the state calls, and what its subscription got."""

    def __init__(self, server: RedisServer, origin: str) -> None:
        self.origin = origin
        self.received: list[bytes] = []
        self.up = False
        self.link = RedisLink(reactor, parse_redis_url(server.url), "chatd:events",
                              self.received.append, self._up, lambda why: None)
        self.state = ClusterState(self.link)

    def _up(self) -> None:
        self.up = True

    def claim(self, nick: str, old: str = "") -> defer.Deferred[None]:
        return self.state.claim(self.origin, nick_key(nick), nick, nick_skeleton(nick),
                                nick_key(old) if old else "")

    def events(self) -> list[tuple[int, Any]]:
        out = []
        for message in self.received:
            seq, _, payload = split_message(message)
            out.append((seq, codec.decode(payload)))
        return out


@pytest.fixture
def two(redis_server: RedisServer) -> Iterator[tuple[Process, Process]]:
    a, b = Process(redis_server, "a" * 32), Process(redis_server, "b" * 32)
    a.link.start()
    b.link.start()
    pytest_twisted.blockon(until(lambda: a.up and b.up, "both links up"))
    yield a, b
    pytest_twisted.blockon(defer.DeferredList([a.link.stop(), b.link.stop()]))


def refusal(d: defer.Deferred[Any]) -> defer.Deferred[tuple[str, str] | None]:
    def caught(failure: Any) -> tuple[str, str]:
        failure.trap(ClaimRefused)
        return failure.value.why, failure.value.holder

    return d.addCallbacks(lambda _: None, caught)


@pytest_twisted.inlineCallbacks
def test_claims_fold_case_and_refuse_look_alikes(two: tuple[Process, Process]) -> Any:
    a, b = two
    assert (yield refusal(a.claim("alice"))) is None
    assert (yield refusal(b.claim("ALICE"))) == ("taken", "alice")
    assert (yield refusal(b.claim("\u0430lice"))) == ("looks", "alice")  # Cyrillic a
    # The holder may change case, and rename: the old nick is free at once.
    assert (yield refusal(a.claim("Alice", old="alice"))) is None
    assert (yield refusal(a.claim("bob", old="Alice"))) is None
    assert (yield refusal(b.claim("alice"))) is None
    assert (yield refusal(a.claim("ALICE"))) == ("taken", "alice")
    yield b.state.release(b.origin, nick_key("alice"))
    yield a.state.release(b.origin, nick_key("bob"))  # not a's to release: stays
    assert (yield refusal(a.claim("alice"))) is None
    assert (yield refusal(b.claim("Bob"))) == ("taken", "bob")


@pytest_twisted.inlineCallbacks
def test_racing_claims_have_one_winner(two: tuple[Process, Process]) -> Any:
    a, b = two
    for n in range(20):
        results = yield defer.gatherResults(
            [refusal(a.claim(f"racer{n}")), refusal(b.claim(f"RACER{n}"))])
        winners = [r for r in results if r is None]
        losers = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert losers in ([("taken", f"racer{n}")], [("taken", f"RACER{n}")]), results


@pytest_twisted.inlineCallbacks
def test_lines_are_published_in_order_and_history_is_trimmed(
        two: tuple[Process, Process]) -> Any:
    a, b = two
    sent = [Said("#dev", "alice", f"line {n}") for n in range(7)]
    seqs = []
    for event in sent:
        seqs.append((yield a.state.apply(codec.encode(event), "A", "line", "#dev", "#dev", 5)))
    assert seqs == sorted(seqs) and len(set(seqs)) == 7
    yield until(lambda: len(b.received) == 7, "b receives the seven lines")
    assert b.events() == list(zip(seqs, sent, strict=True))
    snapshot = yield b.state.snapshot()
    assert snapshot.seq == seqs[-1]
    (room,) = snapshot.rooms
    assert (room.key, room.name) == ("#dev", "#dev")
    assert [codec.decode(line) for line in room.history] == sent[-5:]


@pytest_twisted.inlineCallbacks
def test_presence_topics_and_renames_in_the_snapshot(two: tuple[Process, Process]) -> Any:
    a, _ = two
    join = codec.encode(Joined("#Dev", "alice"))
    yield a.state.apply(join, "A", "join", "#dev", "#Dev", "alice", "alice")
    # Announcing again someone already there publishes nothing.
    assert (yield a.state.apply(join, "A", "join-again", "#dev", "#Dev", "alice", "alice")) == 0
    yield a.state.apply(b"{}", "A", "join", "#ops", "#ops", "alice", "alice")
    yield a.state.apply(b"{}", "A", "topic", "#dev", "#Dev", "plans", "alice", 12.5)
    yield a.state.apply(b"{}", "A", "rename", "alice", "alicia", "Alicia")
    snapshot = yield a.state.snapshot()
    rooms = {room.key: room for room in snapshot.rooms}
    assert rooms["#dev"].members == {"alicia": "Alicia"} == rooms["#ops"].members
    assert (rooms["#dev"].name, rooms["#dev"].topic, rooms["#dev"].topic_by,
            rooms["#dev"].topic_at) == ("#Dev", "plans", "alice", 12.5)
    # Leaving: the room with a topic stays; the empty one without is forgotten.
    yield a.state.apply(b"{}", "A", "leave", "#dev", "alicia")
    yield a.state.apply(b"{}", "A", "leave", "#ops", "alicia")
    snapshot = yield a.state.snapshot()
    assert [(r.key, r.members) for r in snapshot.rooms] == [("#dev", {})]


@pytest_twisted.inlineCallbacks
def test_a_silent_process_is_reaped_its_users_leave_and_nicks_are_freed(
        two: tuple[Process, Process]) -> Any:
    a, b = two
    assert (yield a.state.heartbeat(a.origin)) is False  # new: nothing to re-announce
    assert (yield a.state.heartbeat(a.origin)) is True
    yield a.claim("alice")
    for room in ("#one", "#two"):
        yield a.state.apply(codec.encode(Joined(room, "alice")), "A", "join", room, room,
                            "alice", "alice")
    yield b.claim("bob")
    yield b.state.apply(codec.encode(Joined("#one", "bob")), "B", "join", "#one", "#one",
                        "bob", "bob")
    yield until(lambda: len(b.received) == 3, "b hears the three joins")
    b.received.clear()
    yield sleep(0.3)
    yield b.state.heartbeat(b.origin, ttl=0.2)  # a has been silent for 0.3 s: reaped
    yield until(lambda: len(b.received) == 3,
                lambda: f"b hears alice leave both rooms, then go: {b.received}")
    *lefts, (_, gone) = b.events()
    left = sorted((e.room, e.nick, e.reason, e.origin) for _, e in lefts)
    assert left == [("#one", "alice", REAPED_REASON, a.origin),
                    ("#two", "alice", REAPED_REASON, a.origin)]
    assert gone == Disconnected("alice") and gone.origin == a.origin
    snapshot = yield b.state.snapshot()
    assert [(r.key, r.members) for r in snapshot.rooms] == [("#one", {"bob": "bob"})]
    assert (yield refusal(b.claim("alice", old="bob"))) is None
    # a comes back: it learns it was reaped, so it knows to announce its users again.
    assert (yield a.state.heartbeat(a.origin)) is False


@pytest_twisted.inlineCallbacks
def test_a_backlog_part_is_appended_once_in_order_and_trimmed(
        two: tuple[Process, Process]) -> Any:
    a, b = two
    yield a.state.apply(codec.encode(Joined("#dev", "alice")), "A", "join", "#dev", "#dev",
                        "alice", "alice", "")
    yield a.state.apply(codec.encode(Said("#dev", "bob", "before")), "B", "line", "#dev",
                        "#dev", 4)
    lines = [Said("#dev", "alice", f"apart {n}", at=100.0 + n) for n in range(4)]
    part = [("#dev", "#dev", codec.encode(line),
             codec.encode(Backfilled("#dev", "alice", line.text, line.at))) for line in lines]
    assert (yield a.state.backfill(a.origin, 1, 4, part)) == 4
    # Sent again (its answer was lost): not appended twice, nothing published.
    assert (yield a.state.backfill(a.origin, 1, 4, part)) == 0
    assert (yield a.state.backfill(a.origin, 1, 4, part[:1])) == 0
    snapshot = yield b.state.snapshot()
    (room,) = snapshot.rooms
    history = [codec.decode(line) for line in room.history]
    assert history == lines and [line.at for line in history] == [100.0, 101.0, 102.0, 103.0]
    yield until(lambda: len(b.received) == 6,
                lambda: f"b hears the join, the line and 4: {b.received}")
    backfilled = [event for _, event in b.events()[2:]]
    assert backfilled == [Backfilled("#dev", "alice", line.text, line.at) for line in lines]
    # The next part, and another process's first: each its own count.
    assert (yield a.state.backfill(a.origin, 2, 4, part[:1])) == 1
    assert (yield b.state.backfill(b.origin, 1, 4, part[:2])) == 2


@pytest_twisted.inlineCallbacks
def test_a_topic_offered_on_rejoin_is_taken_only_if_newer(
        two: tuple[Process, Process]) -> Any:
    a, _ = two
    yield a.state.apply(b"{}", "A", "topic", "#dev", "#dev", "newer", "bob", 20.0)
    assert (yield a.state.apply(b"{}", "A", "topic-if-newer", "#dev", "#dev", "older",
                                "alice", 10.0)) == 0
    assert (yield a.state.apply(b"{}", "A", "topic-if-newer", "#dev", "#dev", "same time",
                                "alice", 20.0)) == 0
    (room,) = (yield a.state.snapshot()).rooms
    assert (room.topic, room.topic_by) == ("newer", "bob")
    assert (yield a.state.apply(b"{}", "A", "topic-if-newer", "#dev", "#dev", "newest",
                                "alice", 30.0)) > 0
    assert (yield a.state.apply(b"{}", "A", "topic-if-newer", "#new", "#new", "fresh",
                                "alice", 1.0)) > 0
    rooms = {room.key: room for room in (yield a.state.snapshot()).rooms}
    assert (rooms["#dev"].topic, rooms["#new"].topic) == ("newest", "fresh")


@pytest_twisted.inlineCallbacks
def test_a_claim_says_whether_it_is_new_and_the_snapshot_lists_every_claim(
        two: tuple[Process, Process]) -> Any:
    a, b = two
    assert (yield a.claim("alice")) is True
    assert (yield a.claim("alice")) is False  # a held it already
    assert (yield b.claim("bob")) is True
    snapshot = yield a.state.snapshot()
    assert snapshot.rooms == []  # registered, in no room
    assert snapshot.claims == {"alice": (a.origin, "alice"), "bob": (b.origin, "bob")}


@pytest_twisted.inlineCallbacks
def test_kicks_bans_mutes_and_addresses_in_the_snapshot(two: tuple[Process, Process]) -> Any:
    a, b = two
    for room in ("#dev", "#ops"):
        yield a.state.apply(b"{}", "A", "join", room, room, "bob", "bob", "198.51.100.7")
    yield a.state.apply(b"{}", "A", "join", "#dev", "#dev", "carol", "carol", "198.51.100.8")
    yield a.state.apply(b"{}", "A", "rename", "carol", "cara", "cara")
    snapshot = yield b.state.snapshot()
    assert snapshot.where == {"bob": "198.51.100.7", "cara": "198.51.100.8"}
    # A kick: out of every room at once, and a delay on the nick from the address.
    later = repr(time.time() + 30)
    yield b.state.apply(b"{}", "B", "kick", "bob", "198.51.100.7", later)
    ban = codec.encode(Banned("198.51.100.0/24", "raid", "root", "opal", 5.0))
    mute = codec.encode(Muted("cara", "cara", "", "root", 5.0, time.time() + 600))
    yield b.state.apply(ban, "B", "ban", "198.51.100.0/24")
    yield b.state.apply(mute, "B", "mute", "cara")
    snapshot = yield a.state.snapshot()
    rooms = {room.key: room.members for room in snapshot.rooms}
    assert rooms == {"#dev": {"cara": "cara"}}  # #ops, empty, forgotten
    assert snapshot.kicks == {"198.51.100.7 bob": later}
    assert sorted(snapshot.rules) == sorted([ban, mute])
    yield b.state.apply(b"{}", "B", "unban", "198.51.100.0/24")
    yield b.state.apply(b"{}", "B", "unmute", "cara")
    snapshot = yield a.state.snapshot()
    assert snapshot.rules == []
    # Rules that have run out are pruned when the next is set.
    gone = codec.encode(Muted("dave", "dave", "", "root", 1.0, 2.0))
    yield b.state.apply(gone, "B", "mute", "dave")
    yield b.state.apply(b"{}", "B", "kick", "erin", "", repr(time.time() - 1))
    yield b.state.apply(mute, "B", "mute", "cara")
    snapshot = yield a.state.snapshot()
    assert snapshot.rules == [mute]
    assert snapshot.kicks == {"198.51.100.7 bob": later}


@pytest_twisted.inlineCallbacks
def test_where_a_registered_user_connects_from_is_kept_for_their_holder_only(
        two: tuple[Process, Process]) -> Any:
    a, b = two
    yield a.claim("zed")
    yield a.state.apply(b"{}", a.origin, "connected", "zed", "192.0.2.5")
    yield b.state.apply(b"{}", b.origin, "connected", "zed", "203.0.113.66")  # not b's
    assert (yield b.state.snapshot()).where == {"zed": "192.0.2.5"}
    yield a.state.release(a.origin, "zed")
    assert (yield b.state.snapshot()).where == {}


@pytest_twisted.inlineCallbacks
def test_a_backlog_part_for_a_room_nobody_is_in_now_is_not_kept(
        two: tuple[Process, Process]) -> Any:
    """Lines said while cut off in a room that has since emptied (no topic): the room is
    forgotten with its history, as everywhere else, not kept in Redis for good."""
    a, _ = two
    lines = [Said(f"#gone{n}", "mallory", "x" * 100, at=100.0) for n in range(3)]
    part = [(line.room, line.room, codec.encode(line),
             codec.encode(Backfilled(line.room, line.nick, line.text, line.at)))
            for line in lines]
    yield a.state.apply(b"{}", "A", "topic", "#gone2", "#gone2", "kept", "root", 5.0)
    assert (yield a.state.backfill(a.origin, 1, 4, part)) == 3
    rooms = {room.key: len(room.history) for room in (yield a.state.snapshot()).rooms}
    assert rooms == {"#gone2": 1}
