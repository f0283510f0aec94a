"""chatd/cluster/backlog.py: what a process cut off from Redis keeps for the cluster."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatd.cluster.backlog import OutageBacklog
from chatd.events import Acted, ChatLine, Said
from chatd.history import LINE_OVERHEAD, HistoryBudget, line_cost


def line(room: str, n: int, text: str = "") -> ChatLine:
    return Said(room, "alice", text or f"line {n}", at=float(n))


def test_parts_take_the_oldest_lines_room_by_room_in_order() -> None:
    backlog = OutageBacklog(10, HistoryBudget(0))
    said = [line("#a", 1), line("#b", 2), line("#a", 3), Acted("#b", "bob", "waves", 4.0)]
    for each in said:
        backlog.record(each)
    assert len(backlog) == 4
    assert backlog.next_part(3) == (1, [said[0], said[2], said[1]])
    # Not answered for yet: the same part, with the same number, again.
    assert backlog.next_part(3) == (1, [said[0], said[2], said[1]])
    backlog.record(line("#a", 5))
    backlog.done(2)  # not the pending part's number: changes nothing
    assert backlog.next_part(3) is not None and backlog.next_part(3)[0] == 1  # type: ignore
    backlog.done(1)
    assert backlog.next_part(3) == (2, [said[3], line("#a", 5)])
    backlog.done(2)
    assert backlog.next_part(3) is None and len(backlog) == 0


def test_at_most_history_lines_a_room_the_newest_kept() -> None:
    backlog = OutageBacklog(3, HistoryBudget(0))
    for n in range(10):
        backlog.record(line("#a", n))
    assert len(backlog) == 3
    assert backlog.next_part(100) == (1, [line("#a", n) for n in (7, 8, 9)])


def test_no_history_nothing_kept() -> None:
    backlog = OutageBacklog(0, HistoryBudget(0))
    backlog.record(line("#a", 1))
    assert len(backlog) == 0 and backlog.next_part(10) is None


def test_counted_against_history_memory_with_the_rooms_history() -> None:
    budget = HistoryBudget(10 * (LINE_OVERHEAD + 100))
    backlog = OutageBacklog(1000, budget)
    for n in range(50):
        backlog.record(line("#a", n, "x" * 40))
    assert budget.used <= budget.limit
    assert len(backlog) * line_cost(line("#a", 0, "x" * 40)) == budget.used
    kept = backlog.next_part(1000)
    assert kept is not None and kept[1][-1] == line("#a", 49, "x" * 40)  # the newest stay
    backlog.done(kept[0])
    assert budget.used == 0  # what the backlog gave out is no longer counted


@given(st.lists(st.tuples(st.sampled_from(["#a", "#b", "#c"]), st.integers(1, 5)),
                max_size=60), st.integers(1, 7))
def test_every_line_kept_leaves_once_in_its_rooms_order(
        said: list[tuple[str, int]], most: int) -> None:
    backlog = OutageBacklog(8, HistoryBudget(0))
    lines = [line(room, n) for n, (room, _) in enumerate(said)]
    for each in lines:
        backlog.record(each)
    out: list[ChatLine] = []
    numbers = []
    while (part := backlog.next_part(most)) is not None:
        assert 0 < len(part[1]) <= most
        numbers.append(part[0])
        out += part[1]
        backlog.done(part[0])
    assert numbers == list(range(1, len(numbers) + 1))
    for room in ("#a", "#b", "#c"):
        mine = [each for each in lines if each.room == room][-8:]
        assert [each for each in out if each.room == room] == mine


def test_a_room_the_budget_emptied_is_not_kept() -> None:
    """Many rooms of one line each, past --history-memory: the rooms the budget took the
    lines of go too (their bookkeeping is not counted in the budget)."""
    budget = HistoryBudget(10 * line_cost(line("#r", 0)))
    backlog = OutageBacklog(100, budget)
    for n in range(1000):
        backlog.record(line(f"#r{n}", n))
    assert len(backlog) == 10 and backlog.rooms == 10


def test_at_most_max_rooms_rooms_the_newest_kept() -> None:
    """Like the rooms themselves (--max-rooms): someone making a room after another while
    cut off, to say a line in each, holds at most that many rooms' lines here."""
    budget = HistoryBudget(0)
    backlog = OutageBacklog(100, budget, max_rooms=lambda: 5)
    for n in range(100):
        backlog.record(line(f"#r{n}", n))
    assert backlog.rooms == 5 and len(backlog) == 5
    assert budget.used == sum(line_cost(line(f"#r{n}", n)) for n in range(95, 100))
    part = backlog.next_part(100)
    assert part is not None and [each.room for each in part[1]] == [
        f"#r{n}" for n in range(95, 100)]
