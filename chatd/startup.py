"""Start-up failures the admin can fix (a bad option, a port in use, an unusable state file),
reported as one plain line instead of a traceback or a page of usage.

The same line reaches the terminal whether twistd runs in the foreground (``-n``) or
daemonizes, where the failure happens in a child process that only has a status pipe back
to the parent that still holds the terminal.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Mapping
from typing import IO, Any, NoReturn

from twisted.logger import Logger

USAGE_HINT = "see: twistd chatd --help"
# What the daemonizing parent reads from its status pipe at once. Writes of up to PIPE_BUF
# (at least 512 bytes by POSIX, 4096 on Linux) arrive whole, so one read gets the message.
STATUS_MESSAGE_MAX = 512


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix and names it."""


def start_error_line(error: BaseException) -> str:
    """The one line that tells the admin why chatd did not start."""
    if isinstance(error, StartupError):
        return f"chatd: {error}"
    # Anything else is a bug or an environment problem: its type helps, the log has the rest.
    kind = traceback.format_exception_only(type(error), error)[-1].strip()
    return f"chatd: could not start: {kind} (the log file has the traceback)"


def exit_with_usage_error(message: str) -> NoReturn:
    """One line naming the option and the value, the pointer to ``--help``, exit status 2."""
    sys.stderr.write(f"chatd: {message}\n{USAGE_HINT}\n")
    sys.exit(2)


def report_plainly() -> None:
    """Makes an uncaught StartupError print one line instead of a traceback.

    twistd lets exceptions from starting the application propagate (after removing its
    pidfile and telling a daemonizing parent), so the last stop is Python's excepthook.
    """
    previous = sys.excepthook
    if getattr(previous, "chatd_plain", False):
        return

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not isinstance(value, StartupError):
            previous(kind, value, tb)
            return
        line = start_error_line(value)
        # twistd has pointed sys.stderr into the log by now; the admin is at the real one.
        terminal = sys.__stderr__ or sys.stderr
        terminal.write(line + "\n")
        terminal.flush()
        if sys.stderr is not terminal and not _log_goes_to_stdout:  # else it would show twice
            Logger(namespace="chatd").error("{line}", event="chatd.start_failed", line=line,
                                            reason=str(value))

    excepthook.chatd_plain = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


# Whether twistd logs to standard output (-n without --logfile): the terminal already
# gets the plain line then, and a log entry would repeat it.
_log_goes_to_stdout = False


def report_daemon_start_errors_plainly(twistd_options: Mapping[str, Any]) -> None:
    """Makes a daemonizing twistd print the same one line as ``twistd -n`` when start fails.

    twistd's daemon child writes at most 100 bytes of ``Type: message`` to the status pipe,
    and the parent prints their Python ``repr`` (``An error has occurred: b"chatd.listen...``).
    twistd offers no hook for this, so while parsing chatd's options (in the process that
    will become the parent) the application runner twistd is about to use is swapped for a
    subclass with both ends of the status pipe replaced. Nothing else of twistd changes.
    """
    from twisted.scripts import twistd

    global _log_goes_to_stdout
    _log_goes_to_stdout = bool(twistd_options.get("nodaemon")) and (
        twistd_options.get("logfile") in (None, "", "-")
    )
    runner = getattr(twistd, "_SomeApplicationRunner", None)
    if (
        runner is None
        or getattr(runner, "chatd_plain", False)
        or not hasattr(runner, "_waitForStart")
        or not hasattr(runner, "_formatChildException")
    ):
        return  # already swapped, or a Twisted whose runner works differently: keep it

    class PlainStartErrorsRunner(runner):  # type: ignore[misc, valid-type]
        chatd_plain = True

        def _formatChildException(self, exception: BaseException) -> bytes:
            return status_message(exception)

        def _waitForStart(self, readPipe: int) -> int:
            return wait_for_start(readPipe)

    setattr(twistd, "_SomeApplicationRunner", PlainStartErrorsRunner)  # noqa: B010


def status_message(exception: BaseException) -> bytes:
    """What the daemon child writes to the status pipe: ``1 `` and the line, in UTF-8."""
    data = b"1 " + start_error_line(exception).encode("utf-8", "replace")
    if len(data) > STATUS_MESSAGE_MAX:
        data = data[: STATUS_MESSAGE_MAX - 3].decode("utf-8", "ignore").encode("utf-8") + b"..."
    return data


def wait_for_start(read_pipe: int, terminal: IO[str] | None = None) -> int:
    """The daemonizing parent: 0 once the child reports success, else print its line, 1."""
    data = os.read(read_pipe, STATUS_MESSAGE_MAX)  # retried on EINTR by Python (PEP 475)
    if data == b"0":
        return 0
    line = data[2:].decode("utf-8", "replace") if data else "chatd: the daemon died starting"
    terminal = terminal or sys.__stderr__ or sys.stderr  # the parent's own, not the log's
    terminal.write(line + "\n")
    terminal.flush()
    return 1
