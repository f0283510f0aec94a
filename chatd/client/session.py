"""The client's core, shared by the terminal and the pipe front ends.

It sits between a :class:`Connector` (the network side) and a user interface:
server lines are classified and shown, nicks are tracked, typed lines are sent
and echoed, the nickname, room and away text are asked for again after each
reconnect, a kick or a ban stops the reconnecting until ``/reconnect``, and
quitting closes the connection cleanly.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.python.failure import Failure

from chatd.client._types import Clock, DelayedCall
from chatd.client.commands import RECONNECT, interpret, split_lines
from chatd.client.connection import Connector
from chatd.client.nicks import NickBook
from chatd.client.presence import Presence
from chatd.client.wire import (
    REMOVALS,
    Kind,
    Line,
    Renamed,
    classify,
    nick_event,
    presence_event,
)


class UserInterface(Protocol):
    def show(self, line: Line) -> None:
        """Show one line (server line, local echo or client status)."""

    def changed(self) -> None:
        """Our nick or the connection state changed (e.g. redraw the prompt)."""


def _status(text: str, error: bool = False) -> Line:
    return Line(Kind.STATUS_ERROR if error else Kind.STATUS, text)


def _reason(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ConnectError) and value.osError is not None and value.args[0]:
        # Twisted's text says it twice ("Connection was refused by other side: 111:
        # Connection refused"); the system's own words say it once.
        return str(value.args[0])
    message = reason.getErrorMessage().strip().rstrip(".")
    return message or reason.type.__name__  # type: ignore[union-attr]


_REMOVED_WORD = {Kind.KICKED: "kicked", Kind.BANNED: "banned"}


class ChatSession:
    """Glue between the connection and the user.

    ``queue_offline``: lines typed while disconnected wait for the next connection
    (pipe mode) instead of being refused (terminal mode). ``linger``: after input
    ends, how long to wait for the server's answers before quitting.
    ``quit_grace``: after sending /quit, how long to let the server close first.
    """

    def __init__(
        self,
        ui: UserInterface,
        clock: Clock,
        address: str,
        nick: str | None = None,
        queue_offline: bool = False,
        who_on_connect: bool = False,
        linger: float = 0.5,
        quit_grace: float = 0.5,
    ) -> None:
        self.ui = ui
        self.clock = clock
        self.address = address
        self.wanted_nick = nick
        self.queue_offline = queue_offline
        self.who_on_connect = who_on_connect
        self.linger = linger
        self.quit_grace = quit_grace
        self.book = NickBook()
        self.presence = Presence()
        self.removed: Kind | None = None  # KICKED or BANNED: the server sent us away
        self.connector: Connector | None = None
        self.queue: list[str] = []
        self.quitting = False
        self.input_ended = False
        self.exit_code = 0
        self.finished: Deferred[int] = Deferred()
        self._linger_call: DelayedCall | None = None

    @property
    def online(self) -> bool:
        return self.connector is not None and self.connector.is_connected

    def start(self, connector: Connector) -> None:
        self.connector = connector
        connector.start()

    # --- the network side (Listener) ---------------------------------------------

    def connecting(self, attempt: int) -> None:
        if attempt == 1:
            self.ui.show(_status(f"Connecting to {self.address} ..."))
        else:
            self.ui.show(_status(f"Reconnecting to {self.address} (attempt {attempt}) ..."))

    def connected(self) -> None:
        self.book = NickBook()
        self.removed = None
        self.ui.show(_status(f"Connected to {self.address}"))
        if self.wanted_nick:
            self._send("/nick " + self.wanted_nick)
        for text in self.presence.restore():  # back to our room, away again
            self._send(text)
        if self.who_on_connect:
            self._send("/who")
        queued, self.queue = self.queue, []
        for text in queued:
            self._send(text)
        self.ui.changed()
        if self.input_ended:
            self._linger_then_quit()

    def line_received(self, text: str) -> None:
        line = classify(text)
        if self.presence.answers_rejoin(line):
            return  # back in the room every connection starts in: nothing to say
        if line.kind in REMOVALS and self.connector is not None:
            # Coming straight back would undo the operator's kick or ban.
            self.removed = line.kind
            self.connector.hold()
        moved = presence_event(line)
        if moved is not None:
            self.presence.apply(moved)
        event = nick_event(line)
        if event is not None:
            if isinstance(event, Renamed) and self.book.is_me(event.old):
                # Our own rename: ask for this nick again after a reconnect.
                self.wanted_nick = event.new
            before = self.book.me
            self.book.apply(event)
            if self.book.me != before:
                self.ui.changed()
        elif line.nick is not None and line.kind in (Kind.CHAT, Kind.ACTION, Kind.PRIVATE):
            self.book.saw(line.nick)
        self.ui.show(line)

    def connect_failed(self, reason: Failure, retry_in: float | None) -> None:
        message = f"Cannot connect to {self.address}: {_reason(reason)}"
        if self.input_ended:
            if self.queue:
                message += f"; giving up, {len(self.queue)} line(s) not sent"
            self.ui.show(_status(message, error=True))
            self._finish(1)
            return
        if retry_in is not None:
            message += f"; retrying in {retry_in:.1f}s"
        self.ui.show(_status(message, error=True))
        if retry_in is None:
            self._finish(1)

    def disconnected(self, reason: Failure, retry_in: float | None) -> None:
        self.ui.changed()
        if self.quitting:
            self.ui.show(_status("Disconnected"))
            return
        message = f"Connection lost: {_reason(reason)}"
        if self.removed is not None:
            self.ui.show(_status(message, error=True))
            self.ui.show(
                _status(
                    f"You were {_REMOVED_WORD[self.removed]}: not reconnecting. "
                    f"{RECONNECT} or a restart of chatd-client brings you back.",
                    error=True,
                )
            )
            if self.input_ended:
                self._give_up()
            return
        if self.input_ended and not self.queue:
            self.ui.show(_status(message, error=True))
            self.quit()
            return
        if retry_in is not None:
            message += f"; reconnecting in {retry_in:.1f}s"
        self.ui.show(_status(message, error=True))
        if retry_in is None:
            self._finish(1)

    # --- the user side ------------------------------------------------------------

    def user_input(self, text: str) -> None:
        """A line (or a paste of several) the user typed."""
        for part in split_lines(text):
            if self.quitting:
                return
            self._user_line(part)

    def _user_line(self, text: str) -> None:
        out = interpret(text, self.book.me)
        if out.reconnect:
            self.reconnect()
            return
        if out.send is None:
            return
        if self.online:
            self._send(out.send)
            if out.echo is not None:
                self.ui.show(out.echo)
        elif self.queue_offline and not out.quit:
            self.queue.append(out.send)
        elif not out.quit:
            hint = f"; {RECONNECT} to connect again" if self.removed is not None else ""
            self.ui.show(_status("Not connected: line not sent" + hint, error=True))
        if out.quit:
            self.quit(already_sent=True)

    def reconnect(self) -> None:
        """``/reconnect``: connect now, after a kick or a ban or instead of waiting."""
        if self.connector is None or self.quitting:
            return
        if self.online:
            self.ui.show(_status("Already connected", error=True))
        elif not self.connector.reconnect():
            self.ui.show(_status("Already connecting", error=True))

    def end_of_input(self) -> None:
        """Input ended (pipe mode): send what is left, wait a moment, then quit."""
        if self.input_ended or self.quitting:
            return
        self.input_ended = True
        if self.online:
            self._linger_then_quit()
        elif self.connector is not None and self.connector.held:
            self._give_up()
        elif self.connector is not None and not self.connector.retry:
            self.quit()
        # else: the next connection sends the queue, or the next failure gives up.

    def quit(self, already_sent: bool = False) -> Deferred[int]:
        """Leave: send /quit (unless the user's own /quit was sent), then close."""
        if self.quitting:
            return self.finished
        self.quitting = True
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        grace = self.quit_grace if self.online else 0.0
        if not already_sent and self.online:
            self._send("/quit")
        if self.connector is None:
            self._finish(self.exit_code)
        else:
            self.connector.stop(grace=grace).addBoth(lambda _: self._finish(self.exit_code))
        return self.finished

    # --- internals ----------------------------------------------------------------

    def _send(self, text: str) -> None:
        assert self.connector is not None
        self.connector.send(text)

    def _linger_then_quit(self) -> None:
        if self._linger_call is None:
            self._linger_call = self.clock.callLater(self.linger, self.quit)

    def _give_up(self) -> None:
        """Input has ended and no connection will come: say what is lost, exit 1."""
        if self.queue:
            self.ui.show(_status(f"Giving up: {len(self.queue)} line(s) not sent", error=True))
        self._finish(1)

    def _finish(self, code: int) -> None:
        self.exit_code = code
        if not self.quitting:
            self.quitting = True
            if self.connector is not None:
                self.connector.stop()
        if not self.finished.called:
            self.finished.callback(code)
