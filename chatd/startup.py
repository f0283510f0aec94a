"""Start-up failures the admin can fix (a port in use, an unusable state file), reported as
one plain line instead of a traceback."""

from __future__ import annotations

import sys
from typing import Any


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix and names it."""


def report_plainly() -> None:
    """Makes an uncaught StartupError print one line instead of a traceback.

    twistd lets exceptions from starting the application propagate (after removing its
    pidfile and telling a daemonizing parent), so the last stop is Python's excepthook.
    """
    previous = sys.excepthook
    if getattr(previous, "chatd_plain", False):
        return

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, StartupError):
            sys.stderr.write(f"chatd: {value}\n")
        else:
            previous(kind, value, tb)

    excepthook.chatd_plain = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
