"""Rooms' recent lines: a bounded, time-stamped record of what was said in each room, and
the one bound on what all rooms' history holds together (``--history-memory``)."""

from __future__ import annotations

import heapq
import itertools
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice

from chatd.events import ChatLine

DEFAULT_HISTORY_MEMORY = 32 * 1024 * 1024  # bytes of history all rooms may hold together
# What one line costs besides its text: the entry, the event with its float and its
# strings' references, the deque slot, and the nick (shared with the user while they stay).
# Measured with tracemalloc at about 170 bytes on CPython 3.12; rounded up.
LINE_OVERHEAD = 256


def line_cost(line: ChatLine) -> int:
    """The bytes one line of history is counted at: its text as CPython stores it (a
    single emoji makes a whole line four bytes a character, so not its UTF-8 length) plus
    ``LINE_OVERHEAD``."""
    return LINE_OVERHEAD + sys.getsizeof(line.text)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of history: when it was said (seconds since the epoch) and what."""

    at: float
    line: ChatLine


class RoomHistory:
    """The last ``size`` lines of one room; older lines fall off the front. Every line is
    counted in ``budget``, which may take the oldest ones away to keep within its bound."""

    __slots__ = ("_budget", "_costs", "_entries", "bytes", "dropped")

    def __init__(self, size: int, entries: Iterable[HistoryEntry] = (),
                 budget: HistoryBudget | None = None) -> None:
        self._entries: deque[HistoryEntry] = deque(maxlen=size)
        self._costs: deque[int] = deque()
        self._budget = budget if budget is not None else HistoryBudget(0)
        self.bytes = 0  # what this room's lines cost together (see line_cost)
        # Called after the budget has taken lines away (the service has the store forget
        # them too, so a restart does not bring them back).
        self.dropped: Callable[[RoomHistory], None] | None = None
        for entry in entries:
            self.append(entry)

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def append(self, entry: HistoryEntry) -> None:
        if not self._entries.maxlen:
            return
        if len(self._entries) == self._entries.maxlen:
            self._entries.popleft()
            self._release(self._costs.popleft())
        cost = line_cost(entry.line)
        self._entries.append(entry)
        self._costs.append(cost)
        self.bytes += cost
        self._budget.charge(self, cost)

    def drop_oldest(self) -> None:
        """Forgets the oldest line (the budget's way to make room)."""
        self._entries.popleft()
        self._release(self._costs.popleft())

    def clear(self) -> None:
        """Forgets every line: the room is gone, and so is what its history cost."""
        self._entries.clear()
        self._costs.clear()
        self._release(self.bytes)

    def _release(self, cost: int) -> None:
        self.bytes -= cost
        self._budget.used -= cost

    def last(self, count: int) -> list[HistoryEntry]:
        """The newest ``count`` entries (or all there are), oldest first."""
        count = max(0, min(count, len(self._entries)))
        return list(islice(self._entries, len(self._entries) - count, None))

    def __len__(self) -> int:
        return len(self._entries)


class HistoryBudget:
    """The bytes of history all rooms hold together, kept within ``limit`` (0: no bound).

    When a new line takes the total over the bound, the room holding the most bytes loses
    its oldest lines until the total fits. Not the globally oldest line: then one person
    flooding many rooms would wipe every quiet room's few lines first, since theirs are
    the oldest. Taking from the biggest room means a flooded room loses its own old lines
    first, and a room never loses a line while it holds no more than its share (the bound
    divided by the rooms holding history: 32 KiB a room with the defaults).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        # Rooms by how much they hold, biggest first: (-bytes, tie-break, room). A room is
        # pushed again whenever it grows; entries whose bytes are out of date are skipped
        # and, when they outnumber the rooms, swept (``_rebuild``).
        self._heap: list[tuple[int, int, RoomHistory]] = []
        self._rooms: dict[int, RoomHistory] = {}  # by id(): the rooms with lines now
        self._ties = itertools.count()

    def charge(self, room: RoomHistory, cost: int) -> None:
        """Counts a line ``room`` has just taken in, then trims to the bound."""
        self.used += cost
        self._rooms[id(room)] = room
        heapq.heappush(self._heap, (-room.bytes, next(self._ties), room))
        self.enforce()

    def enforce(self) -> None:
        """Takes lines away, the biggest room's oldest first, until the total fits."""
        trimmed: dict[int, RoomHistory] = {}
        while self.limit and self.used > self.limit and self._heap:
            negative, _, room = self._heap[0]
            if -negative != room.bytes or not room.bytes:
                heapq.heappop(self._heap)  # out of date: the room changed since
                continue
            room.drop_oldest()
            heapq.heapreplace(self._heap, (-room.bytes, next(self._ties), room))
            trimmed[id(room)] = room
        for room in trimmed.values():
            if room.dropped is not None:
                room.dropped(room)
        if len(self._heap) > 2 * len(self._rooms) + 64:
            self._rebuild()

    def _rebuild(self) -> None:
        self._rooms = {key: room for key, room in self._rooms.items() if room.bytes}
        self._heap = [(-room.bytes, next(self._ties), room) for room in self._rooms.values()]
        heapq.heapify(self._heap)
