"""Operator login: one uniform error, and guessing slowed down per address and overall.

Checking a password costs tens of milliseconds of scrypt, so it runs in the reactor's
thread pool, never in the reactor thread. After a few free failures each further attempt
from the same address waits twice as long as the one before (up to a minute), and an
address gets one attempt at a time, so guessing is slow and cannot pile up work. Many
addresses together are bounded too: all checks share one token bucket (``CHECK_BURST`` at
once, then ``CHECK_RATE`` a second), and an attempt that finds it empty is refused without a
check. Failures are logged through the rate-limited log, so guessing cannot flood it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.bucket import TokenBucket
from chatd.errors import ChatError
from chatd.moderation.rules import audit
from chatd.passwd import hash_password, verify_password
from chatd.ratelog import RateLimitedLog

LOGIN_FAILED = "wrong operator name or password"
FREE_FAILURES = 3
BASE_DELAY = 2.0
MAX_DELAY = 60.0
FORGET_AFTER = 15 * 60.0  # a quiet quarter of an hour wipes an address's record
# Password checks for every address together: a burst, then this many a second. 100
# addresses guessing flat out get CHECK_BURST + 5 * CHECK_RATE checks in 5 s, not 300.
CHECK_RATE = 1.0
CHECK_BURST = 10

Verifier = Callable[[str, str], bool]
# Runs a blocking check off the reactor thread; tests pass one that runs it at once.
Runner = Callable[[Callable[[], bool]], "defer.Deferred[bool]"]


@functools.cache
def _decoy() -> str:
    """Unknown names are checked against this hash, so they cost as much as known ones."""
    return hash_password("not anyone's password")


@dataclass
class _Failures:
    count: int
    last: float


class OperatorAuthenticator:
    """Checks /oper credentials against the configured ``[operators]`` table."""

    log = Logger()
    reloadable_options = frozenset({"operators"})

    def __init__(
        self,
        clock: IReactorTime,
        operators: Mapping[str, str],
        run: Runner,
        verify: Verifier = verify_password,
        rejections: RateLimitedLog | None = None,
    ) -> None:
        self.clock = clock
        self.rejections = rejections if rejections is not None else RateLimitedLog(clock)
        self._checks = TokenBucket(CHECK_RATE, CHECK_BURST, clock.seconds())
        self._exhausted = False  # the bucket ran dry and that was logged
        self.operators = dict(operators)
        self._run = run
        self._verify = verify
        self._failures: dict[str, _Failures] = {}
        self.failed_logins = 0  # since start, for the metrics
        self._busy: set[str] = set()

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.operators = dict(options["operators"])

    def delay_for(self, address: str) -> float:
        """How long the next attempt from ``address`` is held back."""
        record = self._failures.get(address)
        if record is None:
            return 0.0
        if self.clock.seconds() - record.last > FORGET_AFTER:
            del self._failures[address]
            return 0.0
        extra = record.count - FREE_FAILURES
        return 0.0 if extra < 0 else min(MAX_DELAY, BASE_DELAY * 2**extra)

    def login(self, address: str, name: str, password: str) -> defer.Deferred[str]:
        """Fires with the operator's name, or fails with ChatError(LOGIN_FAILED)."""
        if address in self._busy:
            return defer.fail(ChatError("an /oper attempt is already being checked; wait"))
        self._busy.add(address)
        return defer.ensureDeferred(self._login(address, name, password))

    async def _login(self, address: str, name: str, password: str) -> str:
        try:
            delay = self.delay_for(address)
            if delay:
                await task.deferLater(self.clock, delay)
            if not self._checks.take(self.clock.seconds()):
                if not self._exhausted:  # one line per episode, not one per attempt
                    self._exhausted = True
                    self.rejections.event("/oper checks exhausted for all addresses", address)
                wait = math.ceil(self._checks.wait())
                raise ChatError("too many /oper attempts on this server; "
                                f"try again in {wait} s")
            self._exhausted = False
            encoded = self.operators.get(name)
            matched = await self._run(
                lambda: self._verify(password, encoded if encoded is not None else _decoy())
            )
            return self._decide(matched, address, name, encoded is not None)
        finally:
            self._busy.discard(address)

    def _decide(self, matched: bool, address: str, name: str, known: bool) -> str:
        if matched and known:
            self._failures.pop(address, None)
            audit.info("operator {operator} logged in from {address}", event="oper.login",
                       operator=name, address=address)
            return name
        self.failed_logins += 1
        record = self._failures.setdefault(address, _Failures(0, 0.0))
        record.count += 1
        record.last = self.clock.seconds()
        self.rejections.event("failed /oper", address,
                              f"as {name[:40]!r}, {record.count} in a row")
        raise ChatError(LOGIN_FAILED)
