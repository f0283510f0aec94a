"""Where we are and whether we are away: what a server forgets when the connection ends.

The session feeds it the server's notices about our own /join, /away and /back, and
after a reconnect sends the commands that put us back where we were.
"""

from __future__ import annotations

from chatd.client.wire import AwayCleared, AwaySet, Kind, Line, Moved, PresenceEvent


class Presence:
    """Our room and away text, as the server last told us.

    ``room`` stays None until we move: the room a connection starts in is the server's
    choice (``--default-room``), and the server puts us back there by itself.
    """

    def __init__(self) -> None:
        self.room: str | None = None
        self.away: str | None = None
        self._rejoining: str | None = None

    def apply(self, event: PresenceEvent) -> None:
        if isinstance(event, Moved):
            self.room = event.room
            self._rejoining = None
        elif isinstance(event, AwaySet):
            self.away = event.text
        elif isinstance(event, AwayCleared):
            self.away = None

    def restore(self) -> list[str]:
        """The commands that restore this presence on a fresh connection."""
        lines = []
        self._rejoining = self.room
        if self.room is not None:
            lines.append(f"/join {self.room}")
        if self.away is not None:
            lines.append(f"/away {self.away}")
        return lines

    def answers_rejoin(self, line: Line) -> bool:
        """Whether ``line`` says our rejoin was not needed (we start in that room).

        Such an error answers a command the user did not type, so it is not shown.
        """
        if self._rejoining is None or line.kind is not Kind.ERROR:
            return False
        if line.text.lower() != f"you are already in {self._rejoining}".lower():
            return False
        self._rejoining = None
        return True
