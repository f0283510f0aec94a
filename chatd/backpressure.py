"""A bound on how much output may pile up for one connection that does not read.

``SendBufferGuard`` is registered as the connection's streaming producer. The transport
calls ``pauseProducing`` once its own buffer passes its threshold (and again on every
write while it stays there, so pausing is idempotent), and ``resumeProducing`` once the
buffer has drained.

What counts is every byte queued for the peer wherever it waits: the connection's batch
not yet handed to the transport, and the transport's own buffer. The edge passes a
``backlog`` function that measures both (exactly, for TCP); without one, the guard counts
the bytes written since the transport paused it, the write that made it pause included.
Once the backlog passes ``limit`` a grace timer starts; a peer still over the limit when it
fires is cut off, whether or not anything more was written meanwhile. A backlog of twice
``limit`` is cut off at once, which bounds memory however fast output is made.

The guard never stops reading from the peer: TLS pauses its producer while the handshake is
under way, and not reading then would stall the handshake for good.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

DEFAULT_SEND_BUFFER = 1024 * 1024
DEFAULT_SEND_GRACE = 10.0
HARD_LIMIT_FACTOR = 2


@implementer(IPushProducer)
class SendBufferGuard:
    """Cuts off a connection whose unsent output stays above ``limit`` bytes too long.

    Slotted: one per connection. A subclass may override ``measure``, ``_overrun`` and
    ``_drained`` instead of passing callables (the edge's guard does, chatd/edge.py).
    """

    __slots__ = ("_done", "_measure", "_on_drained", "_on_overrun", "_timer", "clock", "grace",
                 "limit", "paused", "written")

    def __init__(
        self,
        clock: IReactorTime,
        limit: int,
        grace: float,
        on_overrun: Callable[[], None],
        backlog: Callable[[bool], int] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.limit = limit  # the edge updates limit and grace on a reload
        self.grace = grace
        self._on_overrun = on_overrun
        self._measure = backlog
        self._on_drained = on_drained
        self.paused = False
        self.written = 0  # bytes written since the transport paused us
        self._timer: IDelayedCall | None = None
        self._done = False

    def measure(self, exact: bool = False) -> int:
        """Bytes queued for the peer now; ``exact`` asks the backlog function not to use a
        figure it may have cached (the kernel's share, which costs a system call)."""
        if self._measure is not None:
            return self._measure(exact)
        return self.written if self.paused else 0

    @property
    def backlog(self) -> int:
        return self.measure()

    # --- IPushProducer, called by the transport --------------------------------------------

    def pauseProducing(self) -> None:
        if self.paused or self._done:
            return
        self.paused = True
        self.written = 0
        self.check(exact=True)

    def resumeProducing(self) -> None:
        if not self.paused or self._done:
            return
        self.paused = False
        self.written = 0
        if self.measure(exact=True) <= self.limit:
            self._cancel_timer()
        self._drained()

    def stopProducing(self) -> None:
        self.stop()

    # --- Called by the edge ----------------------------------------------------------------

    def wrote(self, size: int) -> None:
        """Accounts for ``size`` bytes just handed to the transport.

        A transport that has not paused us holds less than its 64 KiB threshold, so there
        is nothing to decide unless this one write alone is over the limit: measuring (a
        system call for the kernel's share) is kept for peers that fall behind.
        """
        if self.paused:
            self.written += size
            self.check()
        elif size > self.limit:
            self.check()

    def check(self, exact: bool = False) -> None:
        """Decides on the backlog as it is now."""
        if self._done or not self.limit:
            return
        backlog = self.measure(exact)
        if backlog > self.limit * HARD_LIMIT_FACTOR:
            self._overrun()
        elif backlog > self.limit and self._timer is None:
            if self.grace > 0:
                self._timer = self.clock.callLater(self.grace, self._grace_over)
            else:
                self._overrun()

    def stop(self) -> None:
        """The connection is closing: no more timers, no more decisions."""
        self._done = True
        self._cancel_timer()

    # --- Internals -------------------------------------------------------------------------

    def _grace_over(self) -> None:
        self._timer = None
        if self.measure(exact=True) > self.limit:
            self._overrun()

    def _overrun(self) -> None:
        self.stop()
        self._on_overrun()

    def _drained(self) -> None:
        if self._on_drained is not None:
            self._on_drained()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
