"""What a one-room front-end's connection is to the commands and to the service, once.

The line front-end and the web socket differ in how they frame input and render output,
not in what a connection does for the command table (``Session``) and the chat service
(``ChatClient``): reply to its user in its wire format, say where the user talks, close,
and leave the chat when the edge says the connection is over. ``OneRoomSession`` is that
part, written once; a front-end mixes it in and names its wire format's ``Replies``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from chatd.edge import Edge
from chatd.errors import ChatError
from chatd.history import HistoryEntry
from chatd.rooms import Room
from chatd.service import ChatService, User


class Replies(Protocol):
    """A wire format's replies to one connection, as the bytes that go on the wire."""

    def notice(self, text: str, at: float | None = None) -> bytes: ...

    def error(self, text: str, at: float | None = None) -> bytes: ...

    def history_line(self, entry: HistoryEntry) -> bytes: ...

    def private_sent(self, nick: str, text: str, at: float | None = None) -> bytes: ...


class OneRoomSession:
    """``Session`` and ``ChatClient`` for a connection whose user talks in one room."""

    replies: ClassVar[Replies]
    factory: Any  # the front-end's factory: its ``service`` is the chat service
    edge: Edge
    user: User | None
    _quit_reason: str | None

    @property
    def service(self) -> ChatService:
        service: ChatService = self.factory.service
        return service

    @property
    def room(self) -> Room:
        if self.user is None:
            raise ChatError("you are not connected")
        return self.user.room

    def send(self, data: bytes) -> None:
        """Bytes the service rendered with this front-end's formatter."""
        self.edge.write(data)

    def notice(self, text: str) -> None:
        self.edge.write(self.replies.notice(text, self.service.stamp_for(self.user)))

    def error(self, text: str) -> None:
        self.edge.write(self.replies.error(text, self.service.stamp_for(self.user)))

    def history_line(self, entry: HistoryEntry) -> None:
        self.edge.write(self.replies.history_line(entry))

    def private_sent(self, nick: str, text: str) -> None:
        self.edge.write(self.replies.private_sent(nick, text, self.service.stamp_for(self.user)))

    def quit(self, reason: str) -> None:
        self._quit_reason = reason
        self.notice("Goodbye.")
        self.edge.close()

    def disconnect(self) -> None:
        self.edge.close()

    def abort(self) -> None:
        self.edge.abort()

    def tell_error(self, text: str) -> None:
        """The edge refuses something of this connection's: said as an error line."""
        self.error(text)

    def timed_out(self) -> None:
        self.notice(f"Idle for {self.factory.policy.idle_timeout:g} seconds; disconnecting.")
        self.edge.close()

    def finished(self, reason: str) -> None:
        """The edge says the connection is over: the user leaves the chat."""
        if self.user is not None:
            self.service.disconnect(self.user, self._quit_reason or reason)
            self.user = None
