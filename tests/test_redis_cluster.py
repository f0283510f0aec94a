"""Two chat daemons in this process, one Redis: one chat (chatd/cluster/), over real sockets.

The daemons are makeService() instances on loopback ports; the clients are real TCP
clients. tests/test_redis_e2e.py does the same with twistd subprocesses, SIGKILL and a
Redis that stops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from chatd.cluster.member import ClusterMember
from chatd.events import Announcement
from tests import redis_support
from tests.redis_support import RedisServer
from tests.support import RunningDaemon, connect_client, until

redis_server = redis_support.redis_server


def member(daemon: RunningDaemon) -> ClusterMember:
    found = daemon.top.getServiceNamed("cluster")
    assert isinstance(found, ClusterMember)
    return found


@pytest.fixture
def pair(redis_server: RedisServer) -> Iterator[tuple[RunningDaemon, RunningDaemon]]:
    daemons = [start_daemon(redis_server.url), start_daemon(redis_server.url)]
    pytest_twisted.blockon(until(lambda: all(member(d).joined_once for d in daemons),
                                 "both daemons join the cluster"))
    yield daemons[0], daemons[1]
    pytest_twisted.blockon(defer.DeferredList([d.stop() for d in daemons]))


def start_daemon(redis_url: str) -> RunningDaemon:
    return RunningDaemon(["--listen", "tcp:0:interface=127.0.0.1", "--no-echo",
                          "--state", "none", "--redis", redis_url])


@pytest_twisted.inlineCallbacks
def named(daemon: RunningDaemon, nick: str) -> Any:
    client = yield connect_client(daemon.chat_port)
    client.send(f"/nick {nick}\r\n".encode())
    yield client.wait_for(f"is now known as {nick}|You are now {nick}|now known as {nick}")
    return client


@pytest_twisted.inlineCallbacks
def test_chat_across_processes(pair: tuple[RunningDaemon, RunningDaemon]) -> Any:
    a, b = pair
    alice = yield named(a, "alice")
    bob = yield named(b, "bob")
    yield alice.wait_for(r"bob has joined #lobby|guest\d+ is now known as bob")
    alice.send(b"hello from A\r\n")
    yield bob.wait_for(r"^<alice> hello from A$")
    bob.send(b"/me waves back\r\n")
    yield alice.wait_for(r"^\* bob waves back$")
    alice.send(b"/who\r\n")
    yield alice.wait_for(r"Users in #lobby \(2\): alice, bob")
    # A room made in one process is listed, with its people, in the other.
    alice.send(b"/join #dev\r\n")
    yield bob.wait_for(r"alice has left #lobby \(joined #dev\)")
    bob.send(b"/rooms\r\n")
    yield bob.wait_for(r"^\*\*\*   #dev \(1 user\)$")
    yield bob.wait_for(r"^\*\*\*   #lobby \(1 user\)$")
    # Server notices to everyone (/wall, the shutdown notice) reach everyone.
    a.chat.publish(Announcement("[wall from op] hello all", origin=a.chat.origin))
    yield bob.wait_for(r"^\*\*\* \[wall from op\] hello all$")
    for client in (alice, bob):
        client.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_a_nick_held_in_another_process_is_refused(
        pair: tuple[RunningDaemon, RunningDaemon]) -> Any:
    a, b = pair
    alice = yield named(a, "alice")
    other = yield connect_client(b.chat_port)
    yield until(lambda: b.chat.remote.get("alice"), "b knows alice")
    other.send(b"/nick ALICE\r\n")
    yield other.wait_for(r'nickname "ALICE" is already taken')
    other.send(b"/nick a1ice\r\n")
    yield other.wait_for(r'"a1ice" looks too much like "alice"')
    for client in (alice, other):
        client.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def alice_on_a_and_bob_on_b(pair: tuple[RunningDaemon, RunningDaemon]) -> Any:
    """alice connected to the first daemon, bob to the second, and the first knows bob."""
    alice = yield named(pair[0], "alice")
    bob = yield named(pair[1], "bob")
    yield until(lambda: pair[0].chat.remote.get("bob"), "a knows bob")
    return alice, bob


@pytest_twisted.inlineCallbacks
def test_ignoring_someone_on_another_process(pair: tuple[RunningDaemon, RunningDaemon]) -> Any:
    alice, bob = yield alice_on_a_and_bob_on_b(pair)
    alice.send(b"/ignore bob\r\n")
    yield alice.wait_for(r"You are now ignoring bob")
    bob.send(b"first\r\n/msg alice psst\r\n/nick robert\r\nsecond\r\n")
    yield alice.wait_for(r"bob is now known as robert")
    alice.send(b"/ignore\r\n")
    yield alice.wait_for(r"Ignoring \(1\): robert")  # followed through the rename
    alice.send(b"/unignore robert\r\n")
    yield alice.wait_for(r"no longer ignoring robert")
    bob.send(b"third\r\n")
    yield alice.wait_for(r"^<robert> third$")
    assert not [line for line in alice.lines
                if "first" in line or "psst" in line or "second" in line], alice.lines
    for client in (alice, bob):
        client.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_away_is_seen_from_another_process(pair: tuple[RunningDaemon, RunningDaemon]) -> Any:
    a = pair[0]
    alice, bob = yield alice_on_a_and_bob_on_b(pair)
    bob.send(b"/away at lunch\r\n")
    yield until(lambda: a.chat.remote.by_key["bob"].away == "at lunch", "a learns bob is away")
    alice.send(b"/msg bob are you there\r\n")
    yield alice.wait_for(r"bob is away: at lunch")
    yield bob.wait_for(r"^\*alice\* are you there$")
    # A process that joins later reads it from Redis.
    c = start_daemon(a.options["redis"])
    try:
        yield until(lambda: member(c).joined_once, "c joins")
        assert c.chat.remote.by_key["bob"].away == "at lunch"
        bob.send(b"/back\r\n")
        yield until(lambda: c.chat.remote.by_key["bob"].away is None, "c learns bob is back")
    finally:
        yield c.stop()
    for client in (alice, bob):
        client.transport.loseConnection()

