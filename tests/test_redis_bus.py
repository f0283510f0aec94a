"""chatd/cluster/bus.py: the bus contract of chatd/events.py, over a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from chatd.cluster import codec
from chatd.cluster.address import parse_redis_url
from chatd.cluster.bus import RedisBus, split_message
from chatd.events import Announcement, Event, Joined, Said
from tests import redis_support
from tests.redis_support import RedisServer
from tests.support import sleep, until

redis_server = redis_support.redis_server


class Side:
    def __init__(self, server: RedisServer, origin: str) -> None:
        self.bus = RedisBus(reactor, parse_redis_url(server.url), history_size=10)
        self.bus.origin = origin
        self.got: list[Event] = []
        self.bus.subscribe(self.got.append)


@pytest.fixture
def sides(redis_server: RedisServer) -> Iterator[tuple[Side, Side]]:
    a, b = Side(redis_server, "A"), Side(redis_server, "B")
    a.bus.start()
    b.bus.start()
    pytest_twisted.blockon(until(lambda: a.bus.link.up and b.bus.link.up, "both up"))
    yield a, b
    pytest_twisted.blockon(defer.DeferredList([a.bus.stop(), b.bus.stop()]))


@pytest_twisted.inlineCallbacks
def test_published_once_delivered_once_everywhere_in_order(sides: tuple[Side, Side]) -> Any:
    a, b = sides
    sent = [Said("#a", "alice", f"line {n}", float(n), origin="A") for n in range(50)]
    for event in sent:
        a.bus.publish(event)
    # The publisher's own subscribers have them at once, before Redis answers.
    assert a.got == sent
    yield until(lambda: len(b.got) == 50, "B gets all fifty")
    assert [codec.encode(e) for e in b.got] == [codec.encode(e) for e in sent]
    yield sleep(0.3)  # the channel has handed A its own events back by now: skipped
    assert a.got == sent and len(b.got) == 50


@pytest_twisted.inlineCallbacks
def test_while_redis_is_down_events_stay_local(sides: tuple[Side, Side],
                                                redis_server: RedisServer) -> Any:
    a, b = sides
    redis_server.stop()
    yield until(lambda: not a.bus.link.up, "A sees Redis gone")
    a.bus.publish(Announcement("local only", origin="A"))
    assert a.got == [Announcement("local only", origin="A")]
    assert b.got == []


@pytest_twisted.inlineCallbacks
def test_held_events_up_to_the_snapshot_are_dropped(sides: tuple[Side, Side]) -> Any:
    a, b = sides
    b.bus.hold()
    seqs = []
    for n in range(4):
        seqs.append((yield a.bus.push(Joined(f"#r{n}", "alice", origin="A"))))
    yield until(lambda: len(b.bus._held or []) == 4, "B holds the four")
    assert b.got == []
    b.bus.release(seqs[1])  # a snapshot current to the second
    assert [e.room for e in b.got] == ["#r2", "#r3"]  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_garbage_on_the_channel_is_dropped_and_counted(sides: tuple[Side, Side]) -> Any:
    a, b = sides
    for junk in (b"no seq", b"12 C {not json", b'13 C {"type": "Nope"}', b"x" * 30,
                 b"14 C"):
        yield a.bus.link.command("PUBLISH", "chatd:events", junk)
    yield a.bus.link.command("PUBLISH", "chatd:events",
                             b"15 C " + codec.encode(Announcement("fine", origin="C")))
    yield until(lambda: b.got, "the good one arrives")
    assert b.got == [Announcement("fine")] and b.bus.dropped == 5


def test_split_message() -> None:
    assert split_message(b"12 A {} x") == (12, "A", b"{} x")
    for bad in (b"", b"12", b"12 A", b"12 A ", b"-1 A {}", b"1x A {}", b"9" * 21 + b" A {}"):
        with pytest.raises(ValueError):
            split_message(bad)


@pytest_twisted.inlineCallbacks
def test_control_characters_from_the_channel_never_reach_a_terminal(
        sides: tuple[Side, Side]) -> Any:
    """Anyone who can PUBLISH can put any text in an event; it is cleaned on arrival."""
    a, b = sides
    forged = Said("#a", "mallory\x1b[2J", "\x1b]0;owned\x07hi\u202e", origin="C")
    yield a.bus.link.command("PUBLISH", "chatd:events", b"1 C " + codec.encode(forged))
    yield until(lambda: b.got, "the forged line arrives")
    assert b.got == [Said("#a", "mallory[2J", "]0;ownedhi", origin="C")]


@pytest_twisted.inlineCallbacks
def test_a_flood_while_holding_is_bounded_and_asks_for_a_new_snapshot(
        sides: tuple[Side, Side], monkeypatch: pytest.MonkeyPatch) -> Any:
    from chatd.cluster import bus as bus_module

    monkeypatch.setattr(bus_module, "MAX_HELD", 5)
    a, b = sides
    b.bus.hold()
    for n in range(12):
        yield a.bus.push(Joined(f"#r{n}", "alice", origin="A"))
    yield until(lambda: b.bus.held_overflowed, "B overflows")
    assert len(b.bus._held or []) <= 5
    assert b.bus.release(12) is False and b.got == []  # read the snapshot again
    assert b.bus.release(12) is True
