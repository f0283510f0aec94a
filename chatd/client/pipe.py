"""The plain front end, for when stdin or stdout is not a terminal.

Server lines go to stdout as plain text (control characters made visible, no
escape codes); the client's own status messages go to stderr. Input is read
line by line from stdin; when it ends the session sends what is left, waits a
moment for answers and quits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TextIO

from chatd.client.render import plain
from chatd.client.wire import Kind, Line

_STATUS = (Kind.STATUS, Kind.STATUS_ERROR)


class PipeUI:
    """Write lines as plain text: chat to ``out``, client status to ``err``."""

    def __init__(self, out: TextIO, err: TextIO, on_broken: Callable[[], Any]) -> None:
        self.out = out
        self.err = err
        self.on_broken = on_broken
        self.broken = False

    def show(self, line: Line) -> None:
        if line.kind in (Kind.SELF, Kind.SELF_ACTION):
            return  # the input already holds our own lines
        stream = self.err if line.kind in _STATUS else self.out
        try:
            stream.write(plain(line) + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            if not self.broken:
                self.broken = True
                self.on_broken()

    def changed(self) -> None:
        pass


class LineReader:
    """Read lines from a file descriptor in a thread, handing each to the reactor.

    A thread works for every kind of stdin (terminal, pipe, regular file, which
    the reactor's selector cannot watch). It reads with ``os.read`` so that no
    buffered file object is left locked when the process exits.
    """

    def __init__(
        self,
        call_from_thread: Callable[..., Any],
        on_line: Callable[[str], Any],
        on_eof: Callable[[], Any],
        fd: int = 0,
    ) -> None:
        self.call_from_thread = call_from_thread
        self.on_line = on_line
        self.on_eof = on_eof
        self.fd = fd

    def start(self) -> None:
        threading.Thread(target=self.run, name="chatd-client-stdin", daemon=True).start()

    def run(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                self.call_from_thread(self.on_line, _decode(raw))
        if buffer:
            self.call_from_thread(self.on_line, _decode(buffer))
        self.call_from_thread(self.on_eof)


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")
