"""The edge on a fake clock: the send-buffer guard's timers, the flood gate's order, every
queued byte counted, bad input, half-close, and limits reloaded into live connections."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from chatd import addresses
from chatd.backpressure import SendBufferGuard
from chatd.edge import BAD_INPUT_BURST, STRIKE_BYTES
from chatd.flood import FloodGate
from chatd.limits import ConnectionLimits
from chatd.policy import Policy
from chatd.tap import Options
from tests.support import MemoryChat, take_lines

# --- SendBufferGuard: one grace timer at a time (issue 18, mutant 1) ----------------------


def test_guard_restarts_its_grace_after_a_resume_even_with_writes_in_between() -> None:
    clock = Clock()
    overruns: list[float] = []
    guard = SendBufferGuard(clock, 100, 5, lambda: overruns.append(clock.seconds()))
    guard.pauseProducing()
    guard.wrote(150)  # over: the grace timer starts, due at t=5
    clock.advance(1)
    guard.wrote(10)  # more while the timer is pending: it must not start another
    clock.advance(1)
    guard.resumeProducing()  # caught up at t=2: forgiven
    clock.advance(1)
    guard.pauseProducing()  # over again at t=3: a fresh five seconds, due at t=8
    guard.wrote(150)
    clock.advance(4.9)  # t=7.9: a stale timer from the first episode would have fired
    assert overruns == []
    clock.advance(0.1)
    assert overruns == [8.0]


def test_guard_cuts_off_within_the_grace_even_if_nothing_more_is_written() -> None:
    clock = Clock()
    backlog = [0]
    overruns: list[float] = []
    guard = SendBufferGuard(clock, 100, 5, lambda: overruns.append(clock.seconds()),
                            backlog=lambda exact: backlog[0])
    backlog[0] = 150  # one big write, queued in the transport
    guard.wrote(150)
    clock.advance(5)
    assert overruns == [5.0]


@pytest.mark.parametrize(("backlog", "cut_at"), [
    (100, None),  # exactly the limit: within it, no grace starts
    (101, 5.0),  # over it: cut off when the grace is over
    (200, 5.0),  # exactly twice the limit (HARD_LIMIT_FACTOR): still given the grace
    (201, 0.0),  # past it: cut off at once
])
def test_the_send_buffer_limits_are_exact(backlog: int, cut_at: float | None) -> None:
    clock = Clock()
    overruns: list[float] = []
    guard = SendBufferGuard(clock, 100, 5, lambda: overruns.append(clock.seconds()))
    guard.pauseProducing()
    guard.wrote(backlog)
    assert (clock.getDelayedCalls() == []) == (cut_at != 5.0)  # a grace only when over
    clock.advance(5)  # the grace
    clock.advance(5)  # and as long again: nothing more
    assert overruns == ([] if cut_at is None else [cut_at])


class MeasuredGuard:
    """A guard whose backlog function answers differently when asked for an exact figure
    (the kernel's share, re-read) than from its cache, as the edge's does."""

    def __init__(self, limit: int = 100, grace: float = 5) -> None:
        self.clock = Clock()
        self.exact, self.cached = 0, 0
        self.overruns: list[float] = []
        self.drained = 0
        self.guard = SendBufferGuard(
            self.clock, limit, grace, lambda: self.overruns.append(self.clock.seconds()),
            backlog=lambda exact: self.exact if exact else self.cached,
            on_drained=self._drained,
        )

    def _drained(self) -> None:
        self.drained += 1

    def fall_behind(self, backlog: int = 150) -> None:
        self.exact = self.cached = backlog
        self.guard.pauseProducing()  # decides on the exact figure: the grace timer starts
        assert self.clock.getDelayedCalls()


def test_resume_forgives_on_the_exact_backlog_even_at_the_limit() -> None:
    m = MeasuredGuard(limit=100)
    m.fall_behind()
    m.exact = 100  # drained to the limit; the cached figure still says 150
    m.guard.resumeProducing()
    assert m.drained == 1
    assert not m.clock.getDelayedCalls()  # forgiven: no grace timer left


def test_the_grace_ends_on_the_exact_backlog() -> None:
    m = MeasuredGuard(limit=100, grace=5)
    m.fall_behind()
    m.exact = 100  # at the limit when the grace ends (the cache is stale): not cut off
    m.clock.advance(5)
    assert m.overruns == []
    m.guard.resumeProducing()
    m.fall_behind(101)  # one byte over: cut off when this grace ends
    m.clock.advance(5)
    assert m.overruns == [10.0]


def test_a_stopped_guard_ignores_a_late_resume() -> None:
    m = MeasuredGuard()
    m.fall_behind()
    m.guard.stop()  # the connection is closing
    m.exact = 0
    m.guard.resumeProducing()
    assert m.drained == 0 and not m.clock.getDelayedCalls()


# --- FloodGate: order on a fake clock ------------------------------------------------------


def make_gate(clock: Clock, delivered: list[bytes], rate: float = 10,
              burst: int = 1) -> FloodGate[bytes]:
    return FloodGate(clock, rate, burst, 10, delivered.append, lambda: None, lambda: None)


def test_a_new_line_never_overtakes_queued_ones() -> None:
    clock = Clock()
    delivered: list[bytes] = []
    gate = make_gate(clock, delivered)
    gate.offer(b"a")  # the burst
    gate.offer(b"b")  # queued; its timer is due at t=0.1
    clock.rightNow = 0.5  # time passes, and the bucket refills, before the timer runs
    gate.offer(b"c")  # a token is there, but b is waiting: c goes behind it
    assert delivered == [b"a"]
    clock.advance(0)
    assert delivered == [b"a", b"b"]
    clock.advance(0.1)
    assert delivered == [b"a", b"b", b"c"]


def test_held_gate_queues_even_without_a_rate_and_keeps_order() -> None:
    clock = Clock()
    delivered: list[bytes] = []
    gate = make_gate(clock, delivered, rate=0)
    gate.offer(b"a")
    gate.hold()
    gate.offer(b"b")
    gate.offer(b"c")
    assert delivered == [b"a"]
    gate.resume()
    assert delivered == [b"a", b"b", b"c"]


# --- Addresses and counts ------------------------------------------------------------------


def test_ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() -> None:
    assert addresses.count_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert addresses.count_key("2001:db8:1:2:aaaa::1", 128) == "2001:db8:1:2:aaaa::1"
    assert addresses.count_key("2001:db8:1:2:aaaa::1", 48) == "2001:db8:1::/48"
    assert addresses.host_of(IPv6Address("TCP", "::ffff:10.0.0.1", 1)) == "10.0.0.1"
    assert addresses.peer_host("[bogus]:1") is None
    limits = ConnectionLimits(0, 2)
    for i in range(2):
        assert limits.admit(IPv6Address("TCP", f"2001:db8::{i + 1}", 1)) is None
    # Another address in the same /64: one person walking round the limit.
    assert limits.admit(IPv6Address("TCP", "2001:db8::ffff:3", 1)) is not None
    assert limits.admit(IPv6Address("TCP", "2001:db8:0:1::1", 1)) is None


def test_release_undoes_the_admit_even_after_the_prefix_changed() -> None:
    limits = ConnectionLimits(0, 1)
    peer = IPv6Address("TCP", "2001:db8::1", 1)
    assert limits.admit(peer) is None
    limits.reconfigure(0, 1, 128)
    limits.release(peer)
    assert not limits.per_host and limits.total == 0


# --- The edge in the line front-end --------------------------------------------------------


def test_everything_one_read_queues_is_counted_and_cut_off_at_twice_the_limit() -> None:
    chat = MemoryChat(send_buffer=10_000, send_grace=5, flood_rate=0)
    a, _ = chat.connect()
    for i in range(30):
        a.dataReceived(b"%d %s\n" % (i, b"h" * 900))
    hog, th = chat.connect()
    take_lines(th)
    assert isinstance(th.producer, SendBufferGuard)
    th.producer.pauseProducing()  # the peer does not read: the transport is full
    # One read asks for 30 x 900 bytes of history 20 times over. The replies wait in the
    # batch, not yet in the transport: they count all the same.
    hog.dataReceived(b"/history\n" * 20)
    assert th.disconnecting
    assert hog.edge.output.pending_bytes == 0 and th.value() == b""


def test_a_line_that_made_much_output_holds_the_next_until_it_drains() -> None:
    chat = MemoryChat(send_buffer=10_000, send_grace=5, flood_rate=0)
    a, ta = chat.connect()
    take_lines(ta)
    guard = ta.producer
    assert isinstance(guard, SendBufferGuard)
    guard.pauseProducing()  # as the transport does once its buffer is full
    a.dataReceived(b"/who\n/rooms\n")
    assert take_lines(ta) == ["*** Users in #lobby (1): guest1"]
    guard.resumeProducing()
    assert take_lines(ta) == ["*** Rooms (1):", "***   #lobby (1 user)"]


def test_over_long_lines_count_against_the_flood_limit() -> None:
    chat = MemoryChat(max_line=10, flood_rate=1, flood_burst=1, flood_queue=1)
    a, ta = chat.connect()
    take_lines(ta)
    a.dataReceived(b"x" * 20 + b"\n" + b"y" * 20 + b"\nok\n")
    lines = take_lines(ta)
    assert lines[0] == "*** Error: line too long (the limit is 10 bytes); it was not sent"
    assert lines[1].startswith("*** Error: you are sending faster than 1 lines a second")


def test_a_peer_that_keeps_sending_over_long_lines_is_disconnected() -> None:
    chat = MemoryChat(max_line=10)
    a, ta = chat.connect()
    _, tb = chat.connect()
    for _ in range(BAD_INPUT_BURST):
        a.dataReceived(b"x" * 20 + b"\n")
    assert not ta.disconnecting
    a.dataReceived(b"x" * 20 + b"\n")
    assert ta.disconnecting
    assert take_lines(ta)[-1] == "*** Error: disconnected for sending over-long lines or garbage"
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb)[-1] == "*** guest1 has left #lobby (bad input)"


def test_a_peer_that_keeps_sending_telnet_garbage_is_disconnected() -> None:
    chat = MemoryChat()
    a, ta = chat.connect()
    a.dataReceived(b"\xff\xfa\x18")  # a subnegotiation that never ends
    for _ in range(BAD_INPUT_BURST):
        a.dataReceived(b"g" * STRIKE_BYTES)
    assert not ta.disconnecting
    a.dataReceived(b"g" * STRIKE_BYTES)
    assert ta.disconnecting


def test_queued_lines_go_out_at_the_rate_after_a_half_close() -> None:
    chat = MemoryChat(flood_rate=10, flood_burst=2, flood_queue=200)
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"".join(b"%d\n" % i for i in range(1, 121)))  # seq 120 | nc -N
    a.readConnectionLost()
    assert not ta.disconnecting
    chat.clock.pump([0.1] * 118)
    assert [line for line in take_lines(tb)] == [f"<guest1> {i}" for i in range(1, 121)]
    assert ta.disconnecting  # then the connection closes


def test_queued_lines_go_out_after_the_sender_leaves_then_it_leaves() -> None:
    chat = MemoryChat(flood_rate=10, flood_burst=1, flood_queue=10)
    a, _ = chat.connect()
    _, tb = chat.connect()
    take_lines(tb)
    a.dataReceived(b"one\ntwo\nthree\n")
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb) == ["<guest1> one"]
    chat.clock.advance(0.1)
    chat.clock.advance(0.1)
    assert take_lines(tb) == [
        "<guest1> two", "<guest1> three", "*** guest1 has left #lobby (connection lost)"
    ]


# --- Commands that wait, in order ----------------------------------------------------------


def test_lines_after_an_asynchronous_command_wait_for_it() -> None:
    chat = MemoryChat()
    pending: defer.Deferred[Any] = defer.Deferred()
    table = chat.factory.commands
    from chatd.commands import Command

    def slow(table: Any, session: Any, user: Any, args: str) -> defer.Deferred[Any]:
        return pending.addCallback(lambda _: session.notice("slow done"))

    table.commands["slow"] = Command("slow", "/slow", "waits", slow)
    a, ta = chat.connect()
    take_lines(ta)
    a.dataReceived(b"/slow\n/who\nhello\n")
    assert take_lines(ta) == []
    pending.callback(None)
    assert take_lines(ta) == ["*** slow done", "*** Users in #lobby (1): guest1"]


# --- Reload reaches live connections -------------------------------------------------------


def test_a_reload_reaches_live_connections() -> None:
    def options(*args: str) -> Options:
        parsed = Options()
        parsed.parseOptions(["--state", "none", "--no-echo", *args])
        return parsed

    policy = Policy(options())
    chat = MemoryChat()
    chat.factory.policy = policy.chat
    policy.subscribe(chat.factory.policy_changed)
    a, ta = chat.connect()
    chat.factory.policy_changed()
    take_lines(ta)
    policy.reconfigure(options("--max-line", "10", "--idle-timeout", "30", "--flood-rate",
                               "1", "--flood-burst", "1", "--flood-queue", "1",
                               "--send-buffer", "5000", "--send-grace", "2"))
    guard = a.edge.guard
    assert guard is not None and (guard.limit, guard.grace) == (5000, 2.0)
    a.dataReceived(b"x" * 11 + b"\n")
    assert take_lines(ta) == [
        "*** Error: line too long (the limit is 10 bytes); it was not sent"
    ]
    chat.clock.advance(2)
    a.dataReceived(b"/who\n/who\n/who\n")
    assert take_lines(ta)[-1].startswith("*** Error: you are sending faster than 1 lines")
    chat.clock.advance(20)
    # A second reload shortens the running idle timer: it counts from the reload.
    policy.reconfigure(options("--idle-timeout", "15"))
    chat.clock.advance(14.9)
    assert not ta.disconnecting
    chat.clock.advance(0.1)
    assert take_lines(ta)[-1] == "*** Idle for 15 seconds; disconnecting."
    assert ta.disconnecting


def test_the_factory_holds_its_connected_clients() -> None:
    chat = MemoryChat()
    a, _ = chat.connect()
    b, _ = chat.connect()
    assert chat.factory.clients == {a, b}
    a.connectionLost(Failure(ConnectionDone()))
    assert chat.factory.clients == {b}
    assert chat.factory.limits.total == 1
    refused = chat.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    assert refused is not None
