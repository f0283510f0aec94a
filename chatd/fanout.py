"""Fan-out per read, not per line: one speaker's consecutive chat lines in one room, held
while a read (or one flood-gate release) is handled and delivered as one block.

Without it every line is a fan-out of its own: the recipients are picked, checked
(skip the speaker, ignore lists, timestamps, front-end) and written to once per line, so
a 600-line paste to 200 people costs 120,000 of each. Held, the 600 lines cost one pick,
one render per front-end and one write per recipient, and each line is still rendered,
recorded and sent in order.

What keeps it exact:

- Only an unbroken run of Said/Acted events with the same room, speaker and origin is
  held. Any other event, a chat line from someone else or for another room, and any
  command (``ChatService.deliver_held``, called by the command table before it runs
  one, and by the IRC front-end before each of its own commands: commands can write to
  other users directly, rename the speaker or change who is in the room) delivers the
  held run first, so every recipient sees everything in the order it happened.
- The recipients are picked once per run, when it is delivered; nothing that decides
  who receives a line (membership, ignore lists, timestamps) can change inside a run,
  since only the speaker's own commands could, and those deliver the run first.
- Every byte of the block goes through the recipient's edge like a line did, so the
  send-buffer bound counts it all (one write, one check).
- Held lines are always delivered before the read's output is flushed: the batch is
  entered and left with the chat side's one ``OutputBatch`` (chatd/output.py).
"""

from __future__ import annotations

from collections.abc import Callable

from chatd.events import ChatLine


class ChatLineBatch:
    """While active (reentrant), holds the current run of one speaker's lines in one room."""

    __slots__ = ("_deliver", "_depth", "_key", "_lines")

    def __init__(self, deliver: Callable[[list[ChatLine]], None]) -> None:
        self._deliver = deliver
        self._depth = 0
        self._key: tuple[str, str, str] | None = None
        self._lines: list[ChatLine] = []

    def __enter__(self) -> ChatLineBatch:
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if not self._depth:
            self.flush()

    def hold(self, line: ChatLine) -> bool:
        """Holds ``line`` while a batch is active; False: deliver it now yourself."""
        if not self._depth:
            return False
        key = (line.room, line.nick, line.origin)
        if key != self._key:
            self.flush()
            self._key = key
        self._lines.append(line)
        return True

    def flush(self) -> None:
        """Delivers the held run now (before anything that must come after it)."""
        if self._lines:
            lines, self._lines, self._key = self._lines, [], None
            self._deliver(lines)
