"""Memory per connection (issue 16): what an idle connection does without, until it needs it."""

from __future__ import annotations

from collections import deque

from tests.support import MemoryChat, take_lines


def test_an_idle_connection_has_no_queues_holds_or_ignore_list_until_it_needs_them() -> None:
    chat = MemoryChat(flood_rate=1, flood_burst=1)
    a, ta = chat.connect()
    b, _ = chat.connect()
    assert a.user is not None and b.user is not None
    # Each of these was an empty deque, set or WeakSet per connection: 700-760 bytes each.
    assert a._held == () and a.edge.gate.queue == () and a.edge._holds == frozenset()
    assert a.user.ignoring == frozenset()
    a.dataReceived(b"one\ntwo\n/ignore guest2\n")  # over the flood rate: the gate queues
    assert isinstance(a._held, deque) and isinstance(a.edge.gate.queue, deque)
    for _ in range(3):
        chat.clock.advance(1)  # a line a second
    assert take_lines(ta)[-1] == "*** You are now ignoring guest2"
    assert b.user in a.user.ignoring
    assert chat.connect()[0].edge.gate.queue == ()  # nothing shared leaked into a newcomer


def test_an_idle_line_connection_makes_nothing_it_has_not_used_yet() -> None:
    """What an idle connection holds (issue 16): slotted objects, no closures, and none of
    the parts it makes on first use: flood gate, bad-input bucket, pre-filter, telnet
    state, pending-output list."""
    chat = MemoryChat(flood_rate=1, flood_burst=5, send_buffer=10_000)
    a, _ = chat.connect()
    b, _ = chat.connect()
    edge = a.edge
    assert edge._gate is None and edge._bad_input is None and a._input is None
    assert edge.output._pending is None
    for part in (edge, edge.guard, edge.output):
        assert not hasattr(part, "__dict__"), f"{type(part).__name__} has an instance dict"
    # No closure per connection: the guard calls the edge, the factory releases the count.
    assert edge.guard is not None and edge.guard.edge is edge and edge._release is None
    assert a.user is not None and b.user is not None
    assert a.user.key is a.user.nick  # one string when the nick is its own key
    assert a.user.host is b.user.host  # one string per address (peer_host's cache)
    assert edge.peer is a.user.peer  # one string for the edge and the user
    # The admission count: the protocol holds its key; the limits hold no address.
    assert a.counted_key == "127.0.0.1" and not chat.factory.limits._counted
    a.dataReceived(b"\xff\xfd\x01hello\n")  # telnet DO ECHO, then a line
    assert edge._gate is not None and isinstance(a.input.telnet._refused, set)
    assert b.edge._gate is None and b._input is None  # made for the one that needed it
    b.dataReceived(b"hello\n")
    assert not isinstance(b.input.telnet._refused, set)  # it never refused an option
