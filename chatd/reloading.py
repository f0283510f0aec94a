"""SIGHUP: re-read the configuration and apply what can change while the daemon runs.

Every part of the daemon that can take a new setting without dropping a connection exposes
the small ``Reconfigurable`` interface: the option names it can take, and a method that
takes them. The reloader parses the same command line again (so the file is re-read and
the command line still wins), compares old and new values, hands each part the options it
cares about, and logs every change. A file that no longer parses changes nothing: the old
configuration stays and the log says why.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any, Protocol

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage


class Reconfigurable(Protocol):
    """Something that can take new option values while running."""

    @property
    def reloadable_options(self) -> frozenset[str]:
        """The option names ``reconfigure`` applies."""

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        """Takes the new values of ``reloadable_options`` from ``options``."""


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(value)) + "}"  # operator names, never their hashes
    return repr(value)


class Reloader:
    """Re-parses the configuration on demand and applies the differences."""

    log = Logger()

    def __init__(
        self,
        parse: Callable[[], usage.Options],
        current: Mapping[str, Any],
        targets: Iterable[Reconfigurable],
    ) -> None:
        self._parse = parse
        self.current = dict(current)
        self.targets = list(targets)

    def reload(self) -> list[str]:
        """Applies a fresh configuration; returns the names of the options that changed."""
        try:
            fresh = dict(self._parse())
        except usage.UsageError as e:
            self.log.error("Configuration not reloaded, keeping the old one: {reason}",
                           event="config.reload_failed", reason=str(e))
            return []
        changed = sorted(
            key for key in fresh.keys() | self.current.keys()
            if fresh.get(key) != self.current.get(key)
        )
        if not changed:
            self.log.info("Configuration reloaded: nothing changed", event="config.unchanged")
            return []
        applied: set[str] = set()
        for target in self.targets:
            mine = target.reloadable_options.intersection(changed)
            if mine:
                target.reconfigure(fresh)
                applied |= mine
        for key in changed:
            old, new = _describe(self.current.get(key)), _describe(fresh.get(key))
            if key in applied:
                self.log.info("Configuration reloaded: {key} changed from {old} to {new}",
                              event="config.changed", key=key, old=old, new=new)
                self.current[key] = fresh[key]
            else:
                self.log.warn("Configuration: {key} changed from {old} to {new}, but that "
                              "takes a restart; still using {old}", event="config.needs_restart",
                              key=key, old=old, new=new)
        return [key for key in changed if key in applied]


class ReloadOnHangup(service.Service):
    """Installs the SIGHUP handler while the daemon runs."""

    def __init__(self, reactor: Any, reloader: Reloader) -> None:
        self.setName("reload")
        self.reactor = reactor
        self.reloader = reloader
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_hangup)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        # A Python signal handler runs between two bytecodes of whatever the main thread was
        # doing, possibly in the middle of the reactor's own work; callFromThread only queues
        # the call and wakes the reactor, which runs it at a safe point.
        self.reactor.callFromThread(self.reloader.reload)
