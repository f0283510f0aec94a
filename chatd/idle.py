"""Idle timeouts for many connections on one timer.

A ``DelayedCall`` per connection costs about 600 bytes with its arguments and heap entry,
and every read moves it (``reset``); a connection here costs an ordered-dict entry and a
deadline, about 140. The connections of one front-end share one timeout, so the order in
which their deadlines fall is the order in which they were last active: ``IdleTimers``
keeps the connections in that order (an ``OrderedDict``: a read moves one to the end in
O(1)) and holds one ``DelayedCall``, for the earliest deadline. When it fires, every
connection whose deadline has passed times out, at the same clock time as its own timer
would have fired.

A reload can change the timeout while connections still run on the old one (the echo
service's live connections take a new ``--echo-idle-timeout`` at their next read): each
timeout in use has its own queue, so deadlines stay in order within each, and the timer is
set for the earliest head of them all. Normally there is one.

``Deadlines`` is the same structure for any deadline a connection re-arms, with the call to
make when one passes: the IRC front-end keeps its PING and registration deadlines on two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# Deadlines are sums of floats; a timer set for one may fire a rounding error before it.
_SLACK = 1e-9


class Idles(Protocol):
    def idle_timeout_reached(self) -> None:
        """This connection's deadline has passed."""


Conn = TypeVar("Conn")


class Deadlines(Generic[Conn]):
    """One front-end's connections, by deadline, and one timer for the earliest;
    ``reached(conn)`` when a connection's deadline passes."""

    __slots__ = ("_call", "_queues", "_reached", "clock")

    def __init__(self, clock: IReactorTime, reached: Callable[[Conn], None]) -> None:
        self.clock = clock
        self._reached = reached
        # timeout -> connections on it, each with its deadline, earliest first
        self._queues: dict[float, OrderedDict[Conn, float]] = {}
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __contains__(self, conn: object) -> bool:
        return any(conn in queue for queue in self._queues.values())

    def touch(self, conn: Conn, timeout: float) -> None:
        """``conn`` was active now: its deadline is ``timeout`` seconds from now, the latest
        of all the connections on that timeout."""
        queues = self._queues
        queue = queues.get(timeout)
        if queue is None or len(queues) > 1:
            self._drop(conn, keep=timeout)
            if queue is None:
                queue = queues[timeout] = OrderedDict()
        deadline = queue[conn] = self.clock.seconds() + timeout
        queue.move_to_end(conn)
        call = self._call
        if call is None or deadline < call.getTime():  # the first, or a shorter timeout
            self._schedule(timeout)

    def forget(self, conn: Conn) -> None:
        """``conn`` has no deadline any more (closing, gone, or the timeout was turned off)."""
        self._drop(conn)
        if not self._queues and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _drop(self, conn: Conn, keep: float | None = None) -> None:
        for timeout in [t for t in self._queues if t != keep]:
            queue = self._queues[timeout]
            queue.pop(conn, None)
            if not queue:
                del self._queues[timeout]

    def _expire(self) -> None:
        self._call = None
        now = self.clock.seconds()
        for queue in list(self._queues.values()):
            while queue:
                conn, deadline = next(iter(queue.items()))
                if deadline > now + _SLACK:
                    break
                del queue[conn]
                self._reached(conn)
        for timeout in [t for t, queue in self._queues.items() if not queue]:
            del self._queues[timeout]
        heads = [next(iter(queue.values())) for queue in self._queues.values()]
        if heads:
            self._schedule(min(heads) - now)

    def _schedule(self, delay: float) -> None:
        """The one timer, for ``delay`` seconds from now (a timeout may have touched a
        connection, and so set it, while ``_expire`` ran)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self.clock.callLater(max(delay, 0.0), self._expire)


def _idle_timeout_reached(conn: Idles) -> None:
    conn.idle_timeout_reached()


class IdleTimers(Deadlines[Idles]):
    """Idle timeouts: ``idle_timeout_reached()`` on each connection whose deadline passes."""

    __slots__ = ()

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__(clock, _idle_timeout_reached)
