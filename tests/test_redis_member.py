"""chatd/cluster/member.py, the part that needs no Redis: guest numbers."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from chatd.cluster.member import GuestNumbers


class FakeState:
    def __init__(self) -> None:
        self.last = 0
        self.pending: list[defer.Deferred[int]] = []

    def reserve_guests(self, count: int) -> defer.Deferred[int]:
        d: defer.Deferred[int] = defer.Deferred()
        self.pending.append(d)
        return d

    def answer(self, count: int) -> None:
        self.last += count
        self.pending.pop(0).callback(self.last)


def test_guest_numbers_come_from_reserved_blocks_and_refill_early() -> None:
    state = FakeState()
    up = [True]
    numbers = GuestNumbers(state, lambda: up[0])  # type: ignore[arg-type]
    numbers.refill()
    numbers.refill()  # one reservation at a time
    assert len(state.pending) == 1
    state.answer(GuestNumbers.BLOCK)
    taken = [next(numbers) for _ in range(GuestNumbers.BLOCK - GuestNumbers.BLOCK // 4 + 1)]
    assert taken == list(range(1, len(taken) + 1))
    assert len(state.pending) == 1  # ran low: the next block is asked for before it runs out
    state.answer(GuestNumbers.BLOCK)
    rest = [next(numbers) for _ in range(GuestNumbers.BLOCK)]
    assert rest == list(range(len(taken) + 1, len(taken) + 1 + GuestNumbers.BLOCK))


def test_without_redis_guest_numbers_come_from_far_above() -> None:
    state: Any = FakeState()
    numbers = GuestNumbers(state, lambda: False)
    first, second = next(numbers), next(numbers)
    assert first >= 10**6 and second == first + 1 and state.pending == []
