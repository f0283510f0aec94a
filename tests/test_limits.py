"""The limit pieces on their own and in the line protocol, over StringTransport and a Clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from chatd.backpressure import SendBufferGuard
from chatd.bucket import TokenBucket
from chatd.flood import FloodGate
from chatd.idle import IdleTimers
from chatd.limits import ConnectionLimits
from chatd.protocol import ChatProtocol
from chatd.ratelog import RateLimitedLog
from tests.support import MemoryChat, take_lines


@pytest.fixture
def logged() -> Any:
    """Every log event emitted during the test, formatted."""
    from twisted.logger import formatEvent

    events: list[str] = []

    def observer(event: LogEvent) -> None:
        events.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


def peer(host: str = "10.0.0.1", port: int = 5000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


# --- TokenBucket ---------------------------------------------------------------------------


def test_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait() == pytest.approx(0.5)
    assert not bucket.take(0.4)
    assert bucket.take(0.5)
    assert bucket.is_full(100)


# --- ConnectionLimits ----------------------------------------------------------------------


def test_per_host_limit_and_release() -> None:
    limits = ConnectionLimits(max_total=0, max_per_host=2)
    assert limits.admit(peer(port=1)) is None
    assert limits.admit(peer(port=2)) is None
    assert limits.admit(peer(port=3)) == (
        "too many connections from your address (the limit is 2)"
    )
    assert limits.admit(peer("10.0.0.2")) is None  # another address is not affected
    limits.release(peer(port=1))
    assert limits.admit(peer(port=4)) is None  # the released slot, and only that one
    assert limits.admit(peer(port=5)) is not None
    assert limits.total == 3 and limits.per_host["10.0.0.1"] == 2


def test_reconfigured_bounds_apply_to_the_next_newcomer() -> None:
    from twisted.internet.address import IPv6Address

    limits = ConnectionLimits(max_total=1, max_per_host=1, ipv6_prefix=128)
    assert limits.admit(IPv6Address("TCP", "2001:db8::1", 1)) is None
    assert limits.admit(IPv6Address("TCP", "2001:db8::2", 1)) is not None  # full
    limits.reconfigure(max_total=4, max_per_host=1, ipv6_prefix=64)
    # A /64 is one address now: its second newcomer is refused, though the server has room.
    assert limits.admit(IPv6Address("TCP", "2001:db8::2", 2)) is None
    assert limits.admit(IPv6Address("TCP", "2001:db8::3", 1)) == (
        "too many connections from your address (the limit is 1)")
    assert limits.admit(peer("10.0.0.9")) is None
    limits.reconfigure(max_total=3, max_per_host=0, ipv6_prefix=64)
    assert limits.admit(peer("10.0.0.10")) == "the server is full (the limit is 3 connections)"


def test_total_limit() -> None:
    limits = ConnectionLimits(max_total=2, max_per_host=0)
    assert limits.admit(peer("10.0.0.1")) is None
    assert limits.admit(peer("10.0.0.2")) is None
    assert limits.admit(peer("10.0.0.3")) == (
        "the server is full (the limit is 2 connections)"
    )


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    from twisted.internet.address import IPv6Address

    limits = ConnectionLimits(max_total=0, max_per_host=1)
    assert limits.admit(peer("10.0.0.1")) is None
    assert limits.admit(IPv6Address("TCP", "::ffff:10.0.0.1", 1)) is not None


def test_unix_peers_count_toward_total_only() -> None:
    limits = ConnectionLimits(max_total=3, max_per_host=1)
    assert [limits.admit(UNIXAddress(None)) for _ in range(3)] == [None, None, None]
    assert limits.admit(UNIXAddress(None)) is not None
    assert not limits.per_host


def test_released_hosts_are_forgotten() -> None:
    limits = ConnectionLimits(max_total=100)
    limits.admit(peer())
    limits.release(peer())
    assert not limits.per_host and limits.total == 0


# --- FloodGate -----------------------------------------------------------------------------


class GateHarness:
    def __init__(self, rate: float = 10, burst: int = 2, queue: int = 3) -> None:
        self.clock = Clock()
        self.delivered: list[bytes] = []
        self.overflows = 0
        self.persistent = 0
        self.gate = FloodGate(
            self.clock, rate, burst, queue, self.delivered.append, self._overflow,
            self._persistent, persistent_after=10,
        )

    def _overflow(self) -> None:
        self.overflows += 1

    def _persistent(self) -> None:
        self.persistent += 1


def test_flood_gate_queues_at_the_rate_in_order() -> None:
    h = GateHarness(rate=10, burst=2, queue=3)
    for i in range(5):
        h.gate.offer(b"%d" % i)
    assert h.delivered == [b"0", b"1"]  # the burst
    h.clock.advance(0.1)
    assert h.delivered == [b"0", b"1", b"2"]
    h.clock.advance(0.2)
    assert h.delivered == [b"0", b"1", b"2", b"3", b"4"]
    assert h.overflows == 0 and not h.clock.getDelayedCalls()


def test_flood_gate_drops_past_the_queue_and_says_so_once() -> None:
    h = GateHarness(rate=10, burst=2, queue=3)
    for i in range(10):
        h.gate.offer(b"%d" % i)
    assert h.overflows == 1 and h.gate.dropped == 5
    h.clock.pump([0.1] * 5)
    assert h.delivered == [b"%d" % i for i in range(5)]  # nothing inside the bound is lost


def test_a_new_episode_after_a_quiet_spell_notifies_again() -> None:
    h = GateHarness(rate=10, burst=1, queue=1)
    for _ in range(3):
        h.gate.offer(b"x")
    h.clock.pump([0.1] * 3)
    for _ in range(3):
        h.gate.offer(b"y")  # within 10 s of the last drop: the same episode
    assert h.overflows == 1
    h.clock.pump([1] * 10)
    for _ in range(3):
        h.gate.offer(b"z")
    assert h.overflows == 2 and h.persistent == 0


def test_persistent_flooding_is_reported_and_the_gate_stops() -> None:
    h = GateHarness(rate=1, burst=1, queue=1)
    for second in range(12):
        h.clock.advance(1 if second else 0)
        for _ in range(5):
            h.gate.offer(b"spam")
    assert h.overflows == 1 and h.persistent == 1
    assert not h.gate.queue and not h.clock.getDelayedCalls()


def test_flooding_is_persistent_after_ten_seconds_whatever_the_clock_says() -> None:
    h = GateHarness(rate=1, burst=1, queue=1)
    h.clock.advance(1000)  # an episode that starts late: only its own length counts
    for second in range(11):
        h.clock.advance(1 if second else 0)
        for _ in range(5):
            h.gate.offer(b"spam")
        # Dropping for 10 s (from t=1000 to t=1010) is persistent; 9 s is not yet.
        assert h.persistent == (1 if second == 10 else 0), second


def test_zero_queue_drops_everything_over_the_rate() -> None:
    h = GateHarness(rate=10, burst=1, queue=0)
    h.gate.offer(b"a")
    h.gate.offer(b"b")
    assert h.delivered == [b"a"] and h.overflows == 1


# --- SendBufferGuard -----------------------------------------------------------------------


class GuardHarness:
    def __init__(self, limit: int = 100, grace: float = 5) -> None:
        self.clock = Clock()
        self.overruns = 0
        self.guard = SendBufferGuard(self.clock, limit, grace, self._overrun)

    def _overrun(self) -> None:
        self.overruns += 1


def test_guard_ignores_writes_while_not_paused() -> None:
    h = GuardHarness()
    h.guard.wrote(10_000)
    h.clock.advance(100)
    assert h.overruns == 0


def test_guard_pause_is_idempotent() -> None:
    h = GuardHarness()
    h.guard.pauseProducing()
    h.guard.wrote(60)
    h.guard.pauseProducing()  # Twisted calls this again on every write while over
    h.guard.wrote(60)
    assert h.guard.backlog == 120


def test_guard_cuts_off_after_the_grace_period() -> None:
    h = GuardHarness(limit=100, grace=5)
    h.guard.pauseProducing()
    h.guard.wrote(150)
    h.clock.advance(4.9)
    assert h.overruns == 0
    h.clock.advance(0.1)
    assert h.overruns == 1


def test_guard_forgives_a_peer_that_catches_up() -> None:
    h = GuardHarness(limit=100, grace=5)
    h.guard.pauseProducing()
    h.guard.wrote(150)
    h.guard.resumeProducing()
    h.clock.advance(10)
    assert h.overruns == 0 and h.guard.backlog == 0
    assert not h.clock.getDelayedCalls()


def test_guard_cuts_off_at_once_at_twice_the_limit() -> None:
    h = GuardHarness(limit=100, grace=5)
    h.guard.pauseProducing()
    h.guard.wrote(201)
    assert h.overruns == 1
    h.guard.wrote(500)
    assert h.overruns == 1  # decided once


def test_guard_without_grace_cuts_off_when_over() -> None:
    h = GuardHarness(limit=100, grace=0)
    h.guard.pauseProducing()
    h.guard.wrote(101)
    assert h.overruns == 1


# --- RateLimitedLog ------------------------------------------------------------------------


def test_rate_limited_log_limits_each_address_then_summarises(logged: list[str]) -> None:
    clock = Clock()
    log = RateLimitedLog(clock, per_address_burst=2, per_address_rate=1 / 30, window=60)
    for i in range(5):
        log.event("connection refused", f"10.0.0.1:{i}", "full")
    log.event("idle", "10.0.0.9:1")  # another address has its own allowance
    ours = [line for line in logged if "10.0.0." in line]
    assert ours == [
        "10.0.0.1:0: connection refused (full)",
        "10.0.0.1:1: connection refused (full)",
        "10.0.0.9:1: idle",
    ]
    clock.advance(60)
    assert logged[-1] == (
        "3 more client log lines in the last 60 s were not logged (3 about 10.0.0.1)"
    )
    log.event("connection refused", "10.0.0.1:7")  # two tokens back after 60 s
    assert logged[-1] == "10.0.0.1:7: connection refused"


def test_rate_limited_log_counts_ipv6_by_prefix(logged: list[str]) -> None:
    log = RateLimitedLog(Clock(), per_address_burst=1)
    for i in range(4):
        log.event("refused", f"2001:db8::{i}:1")  # one /64: one address
    log.event("refused", "2001:db8:0:1::1:1")  # the next /64
    assert [line for line in logged if "refused" in line] == [
        "2001:db8::0:1: refused", "2001:db8:0:1::1:1: refused"]


def test_rate_limited_log_has_an_overall_limit(logged: list[str]) -> None:
    clock = Clock()
    log = RateLimitedLog(clock, per_address_burst=1, overall_burst=3, overall_rate=0.01)
    for i in range(6):
        log.event("refused", f"10.0.1.{i}:1")
    assert len([line for line in logged if "refused" in line]) == 3
    clock.advance(60)
    assert logged[-1].startswith("3 more client log lines in the last 60 s were not logged (")


def test_rate_limited_log_cuts_user_text(logged: list[str]) -> None:
    log = RateLimitedLog(Clock())
    log.emit("10.0.0.1:1", "{peer} left: {reason}", reason="x" * 4000)
    assert logged[-1] == f"10.0.0.1:1 left: {'x' * 200}... (3800 more characters)"


def test_rate_limited_log_stop_cancels_summaries() -> None:
    clock = Clock()
    log = RateLimitedLog(clock, per_address_burst=1)
    log.event("x", "10.0.0.1:1")
    log.event("x", "10.0.0.1:1")
    assert clock.getDelayedCalls()
    log.stop()
    assert not clock.getDelayedCalls()


# --- In the line protocol ------------------------------------------------------------------


def test_flood_in_the_protocol_queues_then_drops_with_one_notice(logged: list[str]) -> None:
    chat = MemoryChat(flood_rate=10, flood_burst=2, flood_queue=3)
    a, ta = chat.connect()
    _, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    a.dataReceived(b"".join(b"line %d\n" % i for i in range(10)))
    assert take_lines(tb) == ["<guest1> line 0", "<guest1> line 1"]
    [notice] = take_lines(ta)
    assert notice.startswith("*** Error: you are sending faster than 10 lines a second")
    chat.clock.pump([0.1] * 5)
    assert take_lines(tb) == [f"<guest1> line {i}" for i in range(2, 5)]
    assert [line for line in logged if "flooding" in line] == [
        "127.0.0.1:40001: flooding: lines dropped (guest1; 3 lines queued)"]


def test_persistent_flood_disconnects(logged: list[str]) -> None:
    chat = MemoryChat(flood_rate=1, flood_burst=1, flood_queue=1)
    a, ta = chat.connect()
    _, tb = chat.connect()
    for _ in range(12):
        a.dataReceived(b"spam\n" * 5)
        chat.clock.advance(1)
    assert ta.disconnecting
    assert take_lines(ta)[-1] == "*** Error: disconnected for flooding"
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb)[-1] == "*** guest1 has left #lobby (flooding)"
    assert "127.0.0.1:40001: disconnected for flooding (guest1)" in logged


def test_quit_waiting_in_the_flood_queue_still_works() -> None:
    chat = MemoryChat(flood_rate=10, flood_burst=1, flood_queue=10)
    a, ta = chat.connect()
    a.dataReceived(b"one\n/quit bye\n")
    assert not ta.disconnecting
    chat.clock.advance(0.1)
    assert ta.disconnecting


def test_stalled_reader_is_aborted_after_grace(logged: list[str]) -> None:
    chat = MemoryChat(send_buffer=1000, send_grace=5)
    a, _ = chat.connect()
    stalled, ts = chat.connect()
    _, tc = chat.connect()
    assert isinstance(ts.producer, SendBufferGuard) and ts.streaming
    ts.producer.pauseProducing()  # as the transport does when its buffer is full
    for _ in range(20):
        a.dataReceived(b"x" * 80 + b"\n")
    assert not ts.disconnecting
    chat.clock.advance(5)
    assert ts.disconnecting  # StringTransport marks abortConnection this way
    written = len(ts.value())
    a.dataReceived(b"after\n")
    assert len(ts.value()) == written  # nothing more is written to a cut-off peer
    assert take_lines(tc)[-1] == "<guest1> after"  # everyone else carries on
    stalled.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tc)[-1] == "*** guest2 has left #lobby (not reading)"
    assert any("disconnected: not reading its output" in line for line in logged)


def test_close_unregisters_the_producer_so_the_connection_can_close() -> None:
    chat = MemoryChat(send_buffer=1000)
    a, ta = chat.connect()
    assert ta.producer is not None
    a.dataReceived(b"/quit\n")
    assert ta.producer is None and ta.disconnecting


def test_closing_peer_that_never_drains_is_aborted() -> None:
    chat = MemoryChat(send_buffer=1000, send_grace=5)
    a, ta = chat.connect()
    aborted: list[bool] = []
    ta.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    a.dataReceived(b"/quit\n")
    chat.clock.advance(5)
    assert aborted == [True]


def test_idle_timeout_says_why_and_closes(logged: list[str]) -> None:
    chat = MemoryChat(idle_timeout=30)
    a, ta = chat.connect()
    b, tb = chat.connect()
    take_lines(ta), take_lines(tb)
    chat.clock.advance(20)
    a.dataReceived(b"\xff\xf1")  # any bytes count as activity, even a telnet NOP
    b.dataReceived(b"\n")
    chat.clock.advance(20)
    assert not ta.disconnecting
    b.dataReceived(b"\n")
    chat.clock.advance(10)
    assert take_lines(ta) == ["*** Idle for 30 seconds; disconnecting."]
    assert ta.disconnecting
    a.connectionLost(Failure(ConnectionDone()))
    assert take_lines(tb) == ["*** guest1 has left #lobby (idle timeout)"]
    assert "127.0.0.1:40001: disconnected: idle (guest1; 30 s)" in logged


def test_idle_timeout_off_by_default() -> None:
    chat = MemoryChat()
    _, ta = chat.connect()
    chat.clock.advance(10**6)
    assert not ta.disconnecting


def test_refused_newcomer_gets_one_line_and_is_closed(logged: list[str]) -> None:
    chat = MemoryChat(max_per_ip=1)
    a, _ = chat.connect()
    refused = chat.factory.buildProtocol(peer("127.0.0.1"))
    assert refused is not None and not isinstance(refused, ChatProtocol)
    transport = StringTransport()
    refused.makeConnection(transport)
    assert take_lines(transport) == [
        "*** Error: too many connections from your address (the limit is 1); try again later"
    ]
    assert transport.disconnecting
    assert len(chat.service.users) == 1
    a.connectionLost(Failure(ConnectionDone()))
    assert chat.factory.limits is not None and chat.factory.limits.total == 0
    assert any("connection refused" in line for line in logged)


# --- UDP echo guards -----------------------------------------------------------------------


class RecordingUDP:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def udp_echo(**kwargs: Any) -> tuple[Any, RecordingUDP, Clock]:
    from chatd.echo import EchoDatagramProtocol

    clock = Clock()
    echo = EchoDatagramProtocol(clock, rejections=RateLimitedLog(clock), **kwargs)
    echo.transport = RecordingUDP()
    return echo, echo.transport, clock


@pytest.mark.parametrize(
    "source",
    ["255.255.255.255", "224.0.0.1", "239.1.2.3", "0.0.0.0", "0.1.2.3", "::", "ff02::1",
     "::ffff:0.0.0.5", "::ffff:224.0.0.9", "not an address"],
)
def test_udp_echo_ignores_bogus_sources(source: str) -> None:
    echo, sent, _ = udp_echo()
    echo.datagramReceived(b"ping", (source, 40000))
    assert sent.sent == []


@pytest.mark.parametrize("source", ["10.1.2.3", "192.168.1.255", "::1", "fe80::1%eth0"])
def test_udp_echo_answers_ordinary_sources(source: str) -> None:
    echo, sent, _ = udp_echo()
    echo.datagramReceived(b"ping", (source, 40000))
    assert sent.sent == [(b"ping", (source, 40000))]


def test_udp_echo_size_bound() -> None:
    echo, sent, _ = udp_echo(max_size=10)
    echo.datagramReceived(b"x" * 11, ("10.0.0.1", 4000))
    echo.datagramReceived(b"x" * 10, ("10.0.0.1", 4000))
    assert [data for data, _ in sent.sent] == [b"x" * 10]


def test_udp_echo_rate_per_source(logged: list[str]) -> None:
    echo, sent, clock = udp_echo(rate=3, total_rate=0)
    for _ in range(5):
        echo.datagramReceived(b"a", ("10.0.0.1", 4000))
        echo.datagramReceived(b"b", ("10.0.0.2", 4000))
    assert [d for d, _ in sent.sent].count(b"a") == 3
    assert [d for d, _ in sent.sent].count(b"b") == 3  # one source does not starve another
    clock.advance(1)
    echo.datagramReceived(b"a", ("10.0.0.1", 4000))
    assert [d for d, _ in sent.sent].count(b"a") == 4
    assert any("udp echo: source over its rate" in line for line in logged)


def test_udp_echo_total_cap() -> None:
    echo, sent, _ = udp_echo(rate=0, total_rate=5)
    for i in range(20):
        echo.datagramReceived(b"x", (f"10.0.0.{i}", 4000))
    assert len(sent.sent) == 5


def test_udp_echo_source_table_is_bounded() -> None:
    from chatd import echo as echo_module

    echo, sent, clock = udp_echo(rate=1, total_rate=0)
    for i in range(echo_module.MAX_TRACKED_SOURCES + 5):
        echo.datagramReceived(b"x", (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 4000))
    assert len(echo.sources) == echo_module.MAX_TRACKED_SOURCES
    clock.advance(2)  # every bucket is full again: the old sources can be forgotten
    echo.datagramReceived(b"new", ("172.16.0.1", 4000))
    assert sent.sent[-1] == (b"new", ("172.16.0.1", 4000))
    assert len(echo.sources) == 1


def test_idle_timeouts_of_many_connections_run_on_one_timer_and_fire_on_time() -> None:
    """One DelayedCall for a front-end's idle timeouts, not one per connection (issue 16),
    and each connection still times out exactly its timeout after its last activity."""
    chat = MemoryChat(idle_timeout=30)
    timers_before = len(chat.clock.getDelayedCalls())
    clients = [chat.connect() for _ in range(20)]
    assert len(chat.clock.getDelayedCalls()) == timers_before + 1
    assert len(chat.factory.idle_timers) == 20

    def timers() -> int:  # the idle timers' (the logs' summary timers aside)
        return sum(c.func == chat.factory.idle_timers._expire
                   for c in chat.clock.getDelayedCalls())

    chat.clock.advance(10)
    first, t_first = clients[0]
    first.dataReceived(b"\n")  # the earliest deadline moves to the back: 40 s
    assert timers() == 1
    chat.clock.advance(19.9)
    assert not any(t.disconnecting for _, t in clients)
    chat.clock.advance(0.1)  # 30 s: all but the one that spoke
    assert [t.disconnecting for _, t in clients] == [False] + [True] * 19
    for proto, _ in clients[1:]:
        proto.connectionLost(Failure(ConnectionDone()))
    chat.clock.advance(9.9)
    assert not t_first.disconnecting
    chat.clock.advance(0.1)
    assert t_first.disconnecting
    first.connectionLost(Failure(ConnectionDone()))
    assert len(chat.factory.idle_timers) == 0
    assert timers() == 0  # no timer left behind


def test_a_reload_that_shortens_the_idle_timeout_reaches_every_live_connection() -> None:
    chat = MemoryChat(idle_timeout=60)
    _, ta = chat.connect()
    _, tb = chat.connect()
    chat.clock.advance(1)
    chat.policy.idle_timeout = 15
    chat.factory.policy_changed()  # counts from the reload: 16 s
    chat.clock.advance(14.9)
    assert not ta.disconnecting and not tb.disconnecting
    chat.clock.advance(0.1)
    assert ta.disconnecting and tb.disconnecting


def test_connections_that_go_before_their_idle_timeout_leave_no_timer() -> None:
    chat = MemoryChat(idle_timeout=30)
    people = [chat.connect() for _ in range(3)]
    for proto, _ in people:
        proto.connectionLost(Failure(ConnectionDone()))
    assert not any(c.func == chat.factory.idle_timers._expire
                   for c in chat.clock.getDelayedCalls())


def test_idle_timers_keep_each_timeout_on_time_when_a_reload_mixes_them() -> None:
    """The echo service's live connections take a new timeout at their next read, so two
    timeouts can be in use at once; each connection still times out on its own."""
    clock = Clock()
    timers = IdleTimers(clock)
    fired: list[tuple[str, float]] = []

    class Conn:
        def __init__(self, name: str) -> None:
            self.name = name

        def idle_timeout_reached(self) -> None:
            fired.append((self.name, clock.seconds()))

    a, b, c = Conn("a"), Conn("b"), Conn("c")
    timers.touch(a, 300)
    clock.advance(1)
    timers.touch(b, 300)
    clock.advance(1)
    timers.touch(b, 10)  # read after a reload to 10 s: due at 12, not 301
    timers.touch(c, 10)
    assert len(timers) == 3 and b in timers
    clock.advance(10)
    assert fired == [("b", 12), ("c", 12)]
    clock.advance(287.9)
    assert len(fired) == 2
    clock.advance(0.1)
    assert fired[-1] == ("a", 300) and len(timers) == 0 and not clock.getDelayedCalls()
