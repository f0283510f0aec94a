"""Where we are and whether we are away: what a server forgets when the connection ends.

The session feeds it the server's notices about our own /join, /away and /back, and
after a reconnect sends the commands that put us back where we were.
"""

from __future__ import annotations

from chatd.client.wire import AwayCleared, AwaySet, Moved, PresenceEvent

# Every new connection starts here (the server's chatd.service.DEFAULT_ROOM; a test
# checks they agree): no /join is needed to come back to it.
HOME_ROOM = "#lobby"


class Presence:
    """Our room and away text, as the server last told us."""

    def __init__(self) -> None:
        self.room = HOME_ROOM
        self.away: str | None = None

    def apply(self, event: PresenceEvent) -> None:
        if isinstance(event, Moved):
            self.room = event.room
        elif isinstance(event, AwaySet):
            self.away = event.text
        elif isinstance(event, AwayCleared):
            self.away = None

    def restore(self) -> list[str]:
        """The commands that restore this presence on a fresh connection."""
        lines = []
        if self.room.lower() != HOME_ROOM:  # room names compare case-insensitively
            lines.append(f"/join {self.room}")
        if self.away is not None:
            lines.append(f"/away {self.away}")
        return lines
