"""A token bucket: ``rate`` events per second on average, up to ``burst`` at once."""

from __future__ import annotations

_SLACK = 1e-9


class TokenBucket:
    __slots__ = ("burst", "filled_at", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self.rate = rate
        self.burst = max(burst, 1.0)  # a bucket that holds nothing would let nothing through
        self.tokens = self.burst
        self.filled_at = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.filled_at) * self.rate)
        self.filled_at = now

    def take(self, now: float) -> bool:
        """Spends one token if there is one."""
        self.refill(now)
        # Refilling for exactly wait() seconds can leave 0.9999999 tokens; without the slack a
        # timer set for wait() would find no token, set itself for ~0 s, and spin.
        if self.tokens >= 1 - _SLACK:
            self.tokens -= 1
            return True
        return False

    def wait(self) -> float:
        """Seconds until the next token, as of the last refill."""
        return max(0.0, (1 - self.tokens) / self.rate)

    def is_full(self, now: float) -> bool:
        self.refill(now)
        return self.tokens >= self.burst
