"""Idle timeouts for many connections on one timer.

A ``DelayedCall`` per connection costs about 300 bytes and a heap entry, and every read
moves it (``reset``). Every connection of one front-end has the same ``--idle-timeout``,
so the order in which their deadlines fall is the order in which they were last active:
``IdleTimers`` keeps the connections in that order (an ``OrderedDict``: a read moves one
to the end in O(1)) and holds one ``DelayedCall``, for the earliest deadline. When it
fires, every connection whose deadline has passed times out, at the same clock time as
its own timer would have fired.

The order holds because every deadline is "last activity + the same timeout": a reload
that changes the timeout touches every live connection again (``Edge.policy_changed``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# Deadlines are sums of floats; a timer set for one may fire a rounding error before it.
_SLACK = 1e-9


class Idles(Protocol):
    def idle_timeout_reached(self) -> None:
        """This connection's deadline has passed."""


class IdleTimers:
    """One front-end's connections, by deadline, and one timer for the earliest."""

    __slots__ = ("_call", "_deadlines", "clock")

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._deadlines: OrderedDict[Idles, float] = OrderedDict()
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, conn: object) -> bool:
        return conn in self._deadlines

    def touch(self, conn: Idles, timeout: float) -> None:
        """``conn`` was active now: its deadline is ``timeout`` seconds from now, the latest
        of all (every connection here has the same timeout)."""
        deadlines = self._deadlines
        deadline = deadlines[conn] = self.clock.seconds() + timeout
        deadlines.move_to_end(conn)
        call = self._call
        if call is None or deadline < call.getTime():  # the first, or a shorter timeout
            self._schedule(timeout)

    def forget(self, conn: Idles) -> None:
        """``conn`` has no deadline any more (closing, gone, or the timeout was turned off)."""
        self._deadlines.pop(conn, None)
        if not self._deadlines and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _expire(self) -> None:
        self._call = None
        deadlines = self._deadlines
        now = self.clock.seconds()
        while deadlines:
            conn, deadline = next(iter(deadlines.items()))
            if deadline > now + _SLACK:
                self._schedule(deadline - now)
                return
            del deadlines[conn]
            conn.idle_timeout_reached()

    def _schedule(self, delay: float) -> None:
        """The one timer, for ``delay`` seconds from now (a timeout may have touched a
        connection, and so set it, while ``_expire`` ran)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self.clock.callLater(delay, self._expire)
