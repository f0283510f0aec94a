"""A per-connection flood limit that is kind to pastes, and the queue that keeps lines in order.

A token bucket (``rate`` lines per second, ``burst`` at once) decides when a line may go
through. Lines over the rate are not thrown away: they wait in a bounded queue and are
released at the rate, in order. Only lines past the queue bound are dropped. Drops less
than ``persistent_after`` seconds apart belong to one episode; the first drop of an
episode tells the sender, once, and a sender whose lines are still being dropped
``persistent_after`` seconds into an episode is flooding on purpose and gets disconnected.

The same queue keeps a connection's lines strictly in order while one of them waits for
something (``hold``/``resume``): an ``/oper`` password check, or output that the peer has
not read yet. A rate of 0 means no rate limit, but holding still queues.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd.bucket import TokenBucket

DEFAULT_FLOOD_RATE = 10.0
DEFAULT_FLOOD_BURST = 50
DEFAULT_FLOOD_QUEUE = 200
PERSISTENT_FLOOD_SECONDS = 10.0

T = TypeVar("T")


class FloodGate(Generic[T]):
    """Lets items through to ``deliver`` at ``rate`` per second, queueing the excess."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        queue_limit: int,
        deliver: Callable[[T], None],
        on_overflow: Callable[[], None],
        on_persistent: Callable[[], None],
        persistent_after: float = PERSISTENT_FLOOD_SECONDS,
    ) -> None:
        self.clock = clock
        self.bucket: TokenBucket | None = None
        self.queue_limit = queue_limit
        self.configure(rate, burst, queue_limit)
        self._deliver = deliver
        self._on_overflow = on_overflow
        self._on_persistent = on_persistent
        self.persistent_after = persistent_after
        # Made on the first line that has to wait: most connections never queue one, and
        # an empty deque costs 760 bytes (issue 16: memory per connection).
        self.queue: deque[T] | tuple[()] = ()
        self.dropped = 0  # in the current episode
        self.held = False
        self.on_empty: Callable[[], None] | None = None  # called when the queue drains
        # Entered around each release, so what one release lets through is handled as one
        # read is (the edge's output batch: one write per recipient).
        self.batch: AbstractContextManager[object] = nullcontext()
        self._episode_started: float | None = None
        self._last_drop = 0.0
        self._timer: IDelayedCall | None = None
        self._stopped = False

    @property
    def rate(self) -> float:
        return self.bucket.rate if self.bucket is not None else 0.0

    def configure(self, rate: float, burst: int, queue_limit: int) -> None:
        """New limits (a reload); the tokens a live connection has saved are kept."""
        self.queue_limit = queue_limit
        if not rate:
            self.bucket = None
            return
        now = self.clock.seconds()
        old = self.bucket
        self.bucket = TokenBucket(rate, burst, now)
        if old is not None:
            old.refill(now)
            self.bucket.tokens = min(old.tokens, self.bucket.burst)

    def _take(self) -> bool:
        return self.bucket is None or self.bucket.take(self.clock.seconds())

    def offer(self, item: T) -> None:
        """Delivers ``item`` now if the rate allows, else queues it, else drops it."""
        if self._stopped:
            return
        # A new item never overtakes queued ones, even when the bucket has a token again.
        if not self.queue and not self.held and self._take():
            self._deliver(item)
            return
        if len(self.queue) < self.queue_limit or (self.bucket is None and self.held):
            if not isinstance(self.queue, deque):
                self.queue = deque()
            self.queue.append(item)
            self._schedule()
            return
        self._drop()

    def hold(self) -> None:
        """Queues everything from now on until ``resume``."""
        self.held = True

    def resume(self) -> None:
        if self.held:
            self.held = False
            self._release()

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing held."""
        return not self.queue and not self.held

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
        if self._timer is None and self.queue and not self.held and not self._stopped:
            wait = self.bucket.wait() if self.bucket is not None else 0.0
            self._timer = self.clock.callLater(wait, self._release)

    def _release(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        with self.batch:
            while self.queue and not self.held and not self._stopped and self._take():
                assert isinstance(self.queue, deque)
                self._deliver(self.queue.popleft())
        self._schedule()
        if self.idle and not self._stopped and self.on_empty is not None:
            self.on_empty()

    def stop(self) -> None:
        """Forgets the queue and the timer: the connection is going away."""
        self._stopped = True
        self.queue = ()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
