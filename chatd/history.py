"""A room's recent lines: a bounded, time-stamped record of what was said there."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from chatd.events import ChatLine


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of history: when it was said (seconds since the epoch) and what."""

    at: float
    line: ChatLine


class RoomHistory:
    """The last ``size`` lines of one room; older lines fall off the front."""

    __slots__ = ("_entries",)

    def __init__(self, size: int, entries: Iterable[HistoryEntry] = ()) -> None:
        self._entries: deque[HistoryEntry] = deque(entries, maxlen=size)

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def append(self, entry: HistoryEntry) -> None:
        if self._entries.maxlen:
            self._entries.append(entry)

    def last(self, count: int) -> list[HistoryEntry]:
        """The newest ``count`` entries (or all there are), oldest first."""
        count = max(0, min(count, len(self._entries)))
        return list(islice(self._entries, len(self._entries) - count, None))

    def __len__(self) -> int:
        return len(self._entries)
