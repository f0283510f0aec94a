"""chatd's logging: one JSON object per line for log shippers, and the start-up line.

``twistd --logger chatd.logs.json chatd ...`` replaces twistd's text log with lines such as::

    {"time": "2026-11-28T22:00:26.123Z", "level": "info", "event": "user.connected",
     "namespace": "chatd.service", "text": "alice connected from 127.0.0.1:50312",
     "nick": "alice", "peer": "127.0.0.1:50312"}

(one line each in the file). ``time`` is UTC, ISO 8601 with milliseconds; ``level`` is
``debug``, ``info``, ``warn``, ``error`` or ``critical``; ``event`` is the stable name every
chatd log call carries (Twisted's own lines, which have none, get their logger's namespace);
``text`` is the line the text log would show; every other field of the event follows as it
was logged (``peer``, ``nick``, ``room``, ``reason``...), and a logged failure adds
``traceback``. The file is the one twistd would write to: ``--logfile``, else ``twistd.log``
when daemonized, else standard output with ``-n`` (for journald).
"""

from __future__ import annotations

import getopt
import json as jsonlib
import math
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any, cast

from twisted.application import service
from twisted.logger import FileLogObserver, ILogObserver, LogEvent, Logger, formatEvent
from twisted.python.logfile import LogFile

from chatd.version import VERSION, describe

# Keys of Twisted's legacy log events that the flat shape carries differently or not at all.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure"})
_NATIVE = (str, int, bool, type(None))


def flatten(event: LogEvent) -> dict[str, Any]:
    """The flat JSON shape of one Twisted log event (see the module docstring)."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": _iso_time(event.get("log_time")),
        "level": level.name if level is not None else "info",
        "event": event.get("event") or event.get("log_namespace") or "log",
        "namespace": event.get("log_namespace"),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
            continue
        record[key] = _json_value(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return record


def format_json(event: LogEvent) -> str:
    return jsonlib.dumps(flatten(event), allow_nan=False) + "\n"


def json() -> ILogObserver:
    """The observer factory for ``twistd --logger chatd.logs.json``.

    twistd calls it with no arguments and, given a factory, ignores ``--logfile``; so the
    destination is worked out from twistd's own command line, exactly as twistd would.
    """
    return FileLogObserver(twistd_log_file(sys.argv[1:]), format_json)


def twistd_log_file(argv: Sequence[str]) -> IO[Any]:
    """Where twistd would log for this command line: a file (rotated on SIGUSR1, as twistd
    does) or standard output."""
    from twisted.scripts import twistd

    parser = twistd.ServerOptions()  # type: ignore[attr-defined]  # this platform's options
    try:
        # getopt stops at the first argument that is not an option: the subcommand (chatd).
        opts, _ = getopt.getopt(list(argv), parser.shortOpt, parser.longOpt)
    except getopt.GetoptError:
        opts = []
    names = {opt.lstrip("-"): value for opt, value in opts}
    path = names.get("logfile", names.get("l", ""))
    foreground = any(k in names for k in ("n", "nodaemon", "debug", "b"))
    if path == "-" or (not path and foreground):
        if not foreground:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout  # captured before twistd redirects it into the log
    logfile: LogFile = LogFile.fromFullPath(path or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):
        from twisted.internet import reactor

        def rotate(signum: int, frame: Any) -> None:
            reactor.callFromThread(logfile.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return cast(IO[Any], logfile)  # a LogFile has the write and flush an observer uses


def _iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_value(value: object) -> object:
    if isinstance(value, _NATIVE):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, _NATIVE) for v in value):
        return list(value)
    return str(value)


class StartupLine(service.Service):
    """Logs chatd's version once the daemon starts, so every log says what was running."""

    log = Logger()

    def startService(self) -> None:
        super().startService()
        self.log.info("{description} starting", event="chatd.start", version=VERSION,
                      description=describe())
