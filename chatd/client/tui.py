"""The terminal front end: prompt_toolkit on Twisted's asyncio reactor.

The input line stays at the bottom of the screen; lines from the server are
printed above it (prompt_toolkit's ``run_in_terminal`` erases the prompt, prints,
and redraws it with whatever was half typed), so incoming messages never mix with
what is being typed.
"""

from __future__ import annotations

import asyncio

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText, StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.styles import Style

from chatd.client.commands import COMMANDS
from chatd.client.completion import ChatCompleter
from chatd.client.render import STYLE_RULES, nick_style, render, sanitize_fragments
from chatd.client.session import ChatSession
from chatd.client.wire import Line


class TerminalUI:
    """Show lines above a prompt_toolkit prompt; feed typed lines to the session."""

    def __init__(self) -> None:
        self.session: ChatSession | None = None
        self.style = Style.from_dict(STYLE_RULES)
        self.prompt: PromptSession[str] = PromptSession(
            history=InMemoryHistory(),
            completer=ChatCompleter(COMMANDS, self._nicks),
            complete_while_typing=False,
            erase_when_done=True,  # the accepted line is shown as an echo instead
            style=self.style,
            include_default_pygments_style=False,
        )

    def _nicks(self) -> list[str]:
        if self.session is None:
            return []
        book = self.session.book
        return [n for n in book.names() if not book.is_me(n)]

    # --- UserInterface ------------------------------------------------------------

    def show(self, line: Line) -> None:
        me = self.session.book.me if self.session is not None else None
        print_formatted_text(
            FormattedText(render(line, me)),
            style=self.style,
            include_default_pygments_style=False,
        )

    def changed(self) -> None:
        app = self.prompt.app
        if app.is_running:
            app.invalidate()

    # --- the prompt -----------------------------------------------------------------

    def message(self) -> StyleAndTextTuples:
        session = self.session
        out: StyleAndTextTuples = []
        if session is None or not session.online:
            out.append(("class:prompt.offline", "(offline) "))
        me = session.book.me if session is not None else None
        if me:
            out.extend(sanitize_fragments(me, f"class:prompt {nick_style(me)}"))
        out.append(("class:prompt", "> "))
        return out

    async def run(self, session: ChatSession) -> None:
        """Read lines until the user quits (/quit, Ctrl-C, Ctrl-D on an empty line)."""
        self.session = session
        while not session.quitting:
            try:
                text = await self.prompt.prompt_async(self.message)
            except (KeyboardInterrupt, EOFError):
                session.quit()
                break
            session.user_input(text)
        await session.finished.asFuture(asyncio.get_running_loop())

    def stop(self) -> None:
        """End the prompt (if it is showing) so the terminal is restored."""
        app = self.prompt.app
        if app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=EOFError())
