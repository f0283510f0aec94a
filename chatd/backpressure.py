"""A bound on how much output may pile up for one connection that does not read.

``SendBufferGuard`` is registered as the connection's streaming producer. The transport
calls ``pauseProducing`` once its own buffer passes its threshold (and again on every
write while it stays there, so pausing is idempotent), and ``resumeProducing`` once the
buffer has drained. While paused the guard counts the bytes written since the pause (it
never reads the transport's private buffer); once that count passes ``limit`` a grace timer
starts, and a peer that has not drained its buffer when the timer fires is cut off. A peer
whose backlog reaches twice ``limit`` is cut off at once, which bounds memory however fast
the chat flows during the grace period.

The guard does not stop reading from the peer while paused: TLS pauses its producer while
the handshake is under way, and not reading then would stall the handshake for good. A peer
that makes output for itself without reading it (a ``/help`` loop) meets the same bound.
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
    """Cuts off a connection whose unsent output stays above ``limit`` bytes too long."""

    def __init__(
        self,
        clock: IReactorTime,
        limit: int,
        grace: float,
        on_overrun: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.grace = grace
        self._on_overrun = on_overrun
        self.paused = False
        self.backlog = 0  # bytes written since the transport paused us
        self._timer: IDelayedCall | None = None
        self._done = False

    # --- IPushProducer, called by the transport --------------------------------------------

    def pauseProducing(self) -> None:
        if self.paused or self._done:
            return
        self.paused = True
        self.backlog = 0

    def resumeProducing(self) -> None:
        if not self.paused or self._done:
            return
        self.paused = False
        self.backlog = 0
        self._cancel_timer()

    def stopProducing(self) -> None:
        self.stop()

    # --- Called by the protocol ------------------------------------------------------------

    def wrote(self, size: int) -> None:
        """Accounts for ``size`` bytes just written to the transport."""
        if not self.paused or self._done:
            return
        self.backlog += size
        if self.backlog > self.limit * HARD_LIMIT_FACTOR:
            self._overrun()
        elif self.backlog > self.limit and self._timer is None:
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
        if self.paused and self.backlog > self.limit:
            self._overrun()

    def _overrun(self) -> None:
        self.stop()
        self._on_overrun()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
