"""What the daemon has done since it started: the numbers behind ``/stats`` and ``/metrics``.

The hot path only adds to plain integers (``Traffic``, once per read, per write batch or per
broadcast, never per byte); everything else is read when asked for: connections from each
front-end's set of clients, users and rooms from the service, the store's backlog. The one
timer samples the message count once a second for the rate over the last minute.
"""

from __future__ import annotations

import os
import resource
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime

from chatd.commands import plural
from chatd.events import Acted, Event, PrivateMessage, Said
from chatd.moderation.rules import format_duration
from chatd.ratelog import RateLimitedLog
from chatd.version import VERSION

ECHO_TCP = "echo-tcp"  # the TCP echo front-end's name in ServerStats.frontends
RATE_WINDOW = 60.0  # seconds the message rate is averaged over
SAMPLE_INTERVAL = 1.0


class Traffic:
    """One front-end's counters; its protocols add to them."""

    __slots__ = ("bytes_received", "bytes_sent")

    def __init__(self) -> None:
        self.bytes_received = 0  # added once per read
        # Bytes sent on connections that have closed: each edge counts its own while it
        # lives (``Edge.handed``) and adds them here when it goes, so writing costs nothing.
        self.bytes_sent = 0


def bytes_sent(frontend: Any) -> int:
    """All bytes a front-end has sent: closed connections' and its live clients'."""
    live: int = sum(client.edge.handed for client in getattr(frontend, "clients", ()))
    closed: int = frontend.traffic.bytes_sent
    return closed + live


class MessageCounter:
    """Counts the messages this process accepted (lines, actions, private messages): its
    own events on the bus, so a line said elsewhere on a shared bus is not counted here."""

    def __init__(self, chat: Any) -> None:
        self.count = 0
        self.origin: str = chat.origin
        chat.bus.subscribe(self._event)

    def _event(self, event: Event) -> None:
        if isinstance(event, Said | Acted | PrivateMessage) and event.origin == self.origin:
            self.count += 1


class MessageRate:
    """Messages per second over the last minute, from a count sampled once a second."""

    def __init__(self, clock: IReactorTime, count: Callable[[], int],
                 window: float = RATE_WINDOW) -> None:
        self.clock = clock
        self.count = count
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()
        self._call = task.LoopingCall(self.sample)
        self._call.clock = clock

    def start(self) -> None:
        self._call.start(SAMPLE_INTERVAL, now=True)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def sample(self) -> None:
        now = self.clock.seconds()
        self._samples.append((now, self.count()))
        # Keep one sample at least a window old, so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def per_second(self) -> float:
        """The rate from the oldest kept sample (about a minute ago) to now."""
        if not self._samples:
            return 0.0
        then, counted = self._samples[0]
        elapsed = self.clock.seconds() - then
        return (self.count() - counted) / elapsed if elapsed > 0 else 0.0


def resident_memory() -> int:
    """Bytes of memory the process has resident now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class Snapshot:
    """Everything ``/stats`` shows, read at one moment."""

    uptime: float
    connections: dict[str, int]  # by front-end
    users: int
    rooms: int
    messages: int
    messages_per_second: float
    memory: int
    pending_writes: int
    write_errors: int


class ServerStats(service.Service):
    """The daemon's numbers, for ``/stats`` and the metrics endpoint."""

    def __init__(
        self,
        chat: Any,
        clock: IReactorTime,
        frontends: Mapping[str, Any] | None = None,
        rejections: RateLimitedLog | None = None,
        authenticator: Any = None,
    ) -> None:
        self.setName("stats")
        self.chat = chat
        self.clock = clock
        # name -> factory with .limits and .traffic: "line", "echo-tcp" (irc, web to come)
        self.frontends: dict[str, Any] = dict(frontends or {})
        self.rejections = rejections  # counts every refusal and cut-off by kind
        self.authenticator = authenticator  # counts failed /oper attempts
        self.echo_udp: list[Any] = []  # EchoDatagramProtocols, counting what they answer
        self.counter = MessageCounter(chat)
        self.started = clock.seconds()
        self.rate = MessageRate(clock, self.messages)

    def messages(self) -> int:
        return self.counter.count

    def startService(self) -> None:
        super().startService()
        self.started = self.clock.seconds()
        self.rate.start()

    def stopService(self) -> Any:
        self.rate.stop()
        return super().stopService()

    def connections(self) -> dict[str, int]:
        """Live connections by front-end: its clients, or (echo) what its limits count.
        The line and IRC front-ends share their limits, so those count both."""
        return {
            name: len(frontend.clients) if hasattr(frontend, "clients") else frontend.limits.total
            for name, frontend in self.frontends.items()
        }

    def snapshot(self) -> Snapshot:
        backlog = self.chat.store.backlog()
        return Snapshot(
            uptime=self.clock.seconds() - self.started,
            connections=self.connections(),
            users=len(self.chat.users),
            rooms=len(self.chat.rooms),
            messages=self.messages(),
            messages_per_second=self.rate.per_second(),
            memory=resident_memory(),
            pending_writes=backlog.pending_writes,
            write_errors=backlog.write_errors,
        )


def stats_lines(snapshot: Snapshot) -> list[str]:
    """``/stats`` for an operator: a few lines, each within 79 columns with ``*** ``."""
    connections = ", ".join(f"{count} {name}" for name, count in snapshot.connections.items())
    return [
        f"chatd {VERSION}, up {format_duration(snapshot.uptime)}",
        f"Connections: {connections or 'none'}",
        f"Users: {snapshot.users} in {plural(snapshot.rooms, 'room')}",
        f"Messages: {snapshot.messages_per_second:.1f}/s over the last minute, "
        f"{snapshot.messages} since start",
        f"Memory: {snapshot.memory / (1024 * 1024):.1f} MiB resident",
        f"Store: {plural(snapshot.pending_writes, 'write')} pending, "
        f"{plural(snapshot.write_errors, 'write error')} since start",
    ]
