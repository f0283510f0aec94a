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
