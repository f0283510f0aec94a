"""What this process's users said while it was cut off from Redis, to give the cluster.

While Redis is unreachable a process serves its own users locally (chatd/cluster/member.py),
and their chat lines reach nobody else. ``OutageBacklog`` keeps them, per room, so that
when the process rejoins it can append them to the cluster's history (the BACKFILL script
in chatd/cluster/state.py), with their own times, before it reads the cluster's snapshot.

Bounded as a room's history is, by the same parts (chatd/history.py): at most ``--history``
lines per room (older ones fall off), and counted against ``--history-memory`` with the
rooms' history (the chat service's ``HistoryBudget``: the biggest room's oldest lines go
first, backlog or history). The lines are the objects the rooms' history holds as well, so
they are counted twice while both hold them: the bound is kept with room to spare. And in
at most ``--max-rooms`` rooms (the room first said in goes, with its lines, to make way),
a room going when the budget has taken its last line: the rooms someone makes one after
another while cut off, to say a line in each and leave, cost no more than the rooms
themselves may.

Lines leave the backlog in numbered parts of at most ``most`` lines. A part stays
``pending`` until Redis has answered for it; if the link fails first it is sent again, with
the same number, and the script, which remembers the last number it took per process,
does not append it twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from chatd.events import ChatLine
from chatd.history import HistoryBudget, HistoryEntry, RoomHistory
from chatd.rooms import room_key


class OutageBacklog:
    """Chat lines said here while Redis was away, oldest room first, each room in order."""

    def __init__(self, history_size: int, budget: HistoryBudget,
                 max_rooms: Callable[[], int] = lambda: 0) -> None:
        self.history_size = history_size
        self.budget = budget
        self.max_rooms = max_rooms  # --max-rooms as it is now (0: no limit)
        self._rooms: dict[str, RoomHistory] = {}  # by room_key, in the order first said in
        self._numbers = itertools.count(1)
        # The part sent and not yet answered for: (its number, its lines).
        self.pending: tuple[int, list[ChatLine]] | None = None

    def __len__(self) -> int:
        pending = len(self.pending[1]) if self.pending is not None else 0
        return pending + sum(len(history) for history in self._rooms.values())

    @property
    def rooms(self) -> int:
        """How many rooms have lines waiting (the pending part's aside)."""
        return len(self._rooms)

    def record(self, line: ChatLine) -> None:
        if not self.history_size:
            return  # history is off: there is nothing to add the line to
        key = room_key(line.room)
        history = self._rooms.get(key)
        if history is None:
            most = self.max_rooms()
            while most and len(self._rooms) >= most:
                self._rooms.pop(next(iter(self._rooms))).clear()
            history = self._rooms[key] = RoomHistory(self.history_size, budget=self.budget)
            history.dropped = lambda trimmed, key=key: self._trimmed(key, trimmed)
        history.append(HistoryEntry(line.at, line))

    def _trimmed(self, key: str, history: RoomHistory) -> None:
        """The budget took lines from ``history``: a room left with none goes."""
        if not len(history) and self._rooms.get(key) is history:
            del self._rooms[key]

    def next_part(self, most: int) -> tuple[int, list[ChatLine]] | None:
        """The part to send now: the pending one again, or up to ``most`` lines taken out
        of the backlog under a new number; None when there is nothing left."""
        if self.pending is not None:
            return self.pending
        lines: list[ChatLine] = []
        for key, history in list(self._rooms.items()):
            taken = history.last(len(history))[:most - len(lines)]  # the oldest
            for _ in taken:
                history.drop_oldest()
            lines += [entry.line for entry in taken]
            if not len(history):
                del self._rooms[key]
            if len(lines) >= most:
                break
        if not lines:
            return None
        self.pending = (next(self._numbers), lines)
        return self.pending

    def done(self, number: int) -> None:
        """Redis has answered for part ``number``: it is not sent again."""
        if self.pending is not None and self.pending[0] == number:
            self.pending = None
