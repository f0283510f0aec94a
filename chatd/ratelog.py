"""Logging of rejections and disconnections for cause, rate-limited per reason.

An attacker controls how often these happen, so each reason may log at most ``limit``
lines per ``window`` seconds; the rest are counted, and one summary line says how many were
left out once the window is over. Every line names the peer and the reason.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

DEFAULT_LIMIT = 10
DEFAULT_WINDOW = 60.0


class _Window:
    __slots__ = ("logged", "started", "summary", "suppressed")

    def __init__(self, started: float) -> None:
        self.started = started
        self.logged = 0
        self.suppressed = 0
        self.summary: IDelayedCall | None = None


class RateLimitedLog:
    """Logs ``peer: reason`` lines, at most ``limit`` per reason per ``window`` seconds."""

    log = Logger(namespace="chatd.limits")

    def __init__(
        self, clock: IReactorTime, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self._windows: dict[str, _Window] = {}
        self.counts: Counter[str] = Counter()  # every event by kind, logged or not (metrics)

    def count(self, kind: str) -> None:
        """Counts an event of ``kind`` that is not worth a log line (an over-long line)."""
        self.counts[kind] += 1

    def event(self, kind: str, peer: str, detail: str = "") -> None:
        """Records that ``peer`` was refused or cut off for reason ``kind``.

        ``kind`` is a short fixed phrase (the rate limit is per kind, so it must not contain
        the address); ``detail`` is free text added to the line.
        """
        self.counts[kind] += 1
        now = self.clock.seconds()
        window = self._windows.get(kind)
        if window is None or now - window.started >= self.window:
            window = self._windows[kind] = _Window(now)
        if window.logged < self.limit:
            window.logged += 1
            self.log.info(
                "{peer}: {reason}{details}", event="refusal", peer=peer, reason=kind,
                detail=detail, details=f" ({detail})" if detail else "",
            )
            return
        window.suppressed += 1
        if window.summary is None:
            remaining = window.started + self.window - now
            window.summary = self.clock.callLater(remaining, self._summarise, kind, window)

    def _summarise(self, kind: str, window: _Window) -> None:
        window.summary = None
        self.log.info(
            "{count} more '{reason}' events in the last {window:g} s were not logged",
            event="refusal.suppressed", count=window.suppressed, reason=kind, window=self.window,
        )
        if self._windows.get(kind) is window:
            del self._windows[kind]

    def stop(self) -> None:
        """Cancels pending summaries (so a stopping daemon leaves no timers behind)."""
        for window in self._windows.values():
            if window.summary is not None and window.summary.active():
                window.summary.cancel()
                window.summary = None
