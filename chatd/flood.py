"""A per-connection flood limit that is kind to pastes.

A token bucket (``rate`` lines per second, ``burst`` at once) decides when a line may go
through. Lines over the rate are not thrown away: they wait in a bounded queue and are
released at the rate, in order. Only lines past the queue bound are dropped. Drops less
than ``persistent_after`` seconds apart belong to one episode; the first drop of an
episode tells the sender, once, and a sender whose lines are still being dropped
``persistent_after`` seconds into an episode is flooding on purpose and gets disconnected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd.bucket import TokenBucket

DEFAULT_FLOOD_RATE = 10.0
DEFAULT_FLOOD_BURST = 50
DEFAULT_FLOOD_QUEUE = 200
PERSISTENT_FLOOD_SECONDS = 10.0


class FloodGate:
    """Lets lines through to ``deliver`` at ``rate`` per second, queueing the excess."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        queue_limit: int,
        deliver: Callable[[bytes], None],
        on_overflow: Callable[[], None],
        on_persistent: Callable[[], None],
        persistent_after: float = PERSISTENT_FLOOD_SECONDS,
    ) -> None:
        self.clock = clock
        self.bucket = TokenBucket(rate, burst, clock.seconds())
        self.queue_limit = queue_limit
        self._deliver = deliver
        self._on_overflow = on_overflow
        self._on_persistent = on_persistent
        self.persistent_after = persistent_after
        self.queue: deque[bytes] = deque()
        self.dropped = 0  # in the current episode
        self._episode_started: float | None = None
        self._last_drop = 0.0
        self._timer: IDelayedCall | None = None
        self._stopped = False

    def offer(self, line: bytes) -> None:
        """Delivers ``line`` now if the rate allows, else queues it, else drops it."""
        if self._stopped:
            return
        if not self.queue and self.bucket.take(self.clock.seconds()):
            self._deliver(line)
            return
        if len(self.queue) < self.queue_limit:
            self.queue.append(line)
            self._schedule()
            return
        self._drop()

    def _drop(self) -> None:
        now = self.clock.seconds()
        quiet_since_last = now - self._last_drop >= self.persistent_after
        self._last_drop = now
        if self._episode_started is None or quiet_since_last:
            self._episode_started = now
            self.dropped = 1
            self._on_overflow()
            return
        self.dropped += 1
        if now - self._episode_started >= self.persistent_after:
            self.stop()
            self._on_persistent()

    def _schedule(self) -> None:
        if self._timer is None and self.queue and not self._stopped:
            self._timer = self.clock.callLater(self.bucket.wait(), self._release)

    def _release(self) -> None:
        self._timer = None
        while self.queue and not self._stopped and self.bucket.take(self.clock.seconds()):
            self._deliver(self.queue.popleft())
        self._schedule()

    def stop(self) -> None:
        """Forgets the queue and the timer: the connection is going away."""
        self._stopped = True
        self.queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
