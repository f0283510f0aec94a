"""Tab completion of commands and nicks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from chatd.client.nicks import fold


def candidates(
    before_cursor: str, commands: Sequence[str], nicks: Iterable[str]
) -> tuple[str, list[str]]:
    """The word being completed and what it may become.

    A word starting with ``/`` at the start of the line completes to a command;
    any other word to a known nick (``nick: `` when it opens the line, the way
    people address each other in chat).
    """
    word = before_cursor.rsplit(" ", 1)[-1]
    first = word == before_cursor
    if first and word.startswith("/"):
        low = word.lower()
        return word, [c for c in commands if c.startswith(low)]
    if first and not word:
        return word, []
    key = fold(word)
    matches = [n for n in nicks if fold(n).startswith(key)]
    if first:
        matches = [n + ": " for n in matches]
    return word, matches


class ChatCompleter(Completer):
    """prompt_toolkit completer over :func:`candidates`."""

    def __init__(self, commands: Sequence[str], nicks: Callable[[], Iterable[str]]) -> None:
        self.commands = commands
        self.nicks = nicks

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        word, found = candidates(document.text_before_cursor, self.commands, self.nicks())
        for text in found:
            yield Completion(text, start_position=-len(word), display=text.rstrip(": "))
