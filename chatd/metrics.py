"""Prometheus metrics: ``--metrics ENDPOINT`` serves them as text at ``/metrics``.

Nothing here runs on the chat's hot path. Gauges (users, rooms, the store's backlog) are
read from the service when Prometheus scrapes; the one timer is the reactor-lag probe,
a ``LoopingCall`` twice a second.

The page is rendered on the reactor thread with prometheus_client's own encoder, not with
its Twisted resource (``prometheus_client.twisted.MetricsResource``): that one runs the
WSGI app in the reactor's thread pool, where reading the service's state would race the
reactor changing it, and where a scrape during shutdown could wait on a reactor that no
longer runs. A scrape costs about a millisecond of the reactor's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.application import service
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint
from twisted.web import resource, server

from chatd.listening import ListeningService
from chatd.stats import ECHO_TCP, ServerStats, bytes_sent

LAG_INTERVAL = 0.5  # seconds between reactor-lag probes
# Seconds late: a healthy reactor is within a millisecond; past a second people notice.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCRAPE_TIMEOUT = 30  # seconds an idle metrics connection stays open


# What the edge and the echo services call their refusals and cut-offs (RateLimitedLog
# kinds), as the ``reason`` label of chatd_refusals_total. Connections refused for the
# connection limits are counted by the limits themselves ("full", "per-address").
REFUSAL_REASONS = {
    "connection refused: banned": "banned",
    "disconnected for flooding": "flood",
    "flooding: lines dropped": "flood lines dropped",
    "line too long": "line too long",
    "disconnected: not reading its output": "send-buffer cut-off",
    "disconnected: idle": "idle",
    "disconnected for bad input": "bad input",
    "echo connection cut off: total echo backlog reached": "echo backlog",
}
# Counted elsewhere: by the connection limits, and as chatd_oper_failures_total.
_COUNTED_ELSEWHERE = frozenset({"connection refused", "echo connection refused", "failed /oper"})
UDP_DROP_PREFIX = "udp echo: "


class ChatCollector(Collector):
    """The daemon's numbers as Prometheus families, read from ``ServerStats`` when scraped."""

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        chat = stats.chat
        connections = GaugeMetricFamily("chatd_connections", "Open connections.",
                                        labels=["frontend"])
        for name, count in stats.connections().items():
            connections.add_metric([name], count)
        yield connections
        yield GaugeMetricFamily("chatd_users", "Users connected to the chat.",
                                value=len(chat.users))
        yield GaugeMetricFamily("chatd_rooms", "Rooms that exist (with members or saved).",
                                value=len(chat.rooms))
        yield CounterMetricFamily("chatd_messages", "Chat lines, actions and private messages "
                                  "accepted.", value=stats.messages())
        chat_frontends = {n: f for n, f in stats.frontends.items() if n != ECHO_TCP}
        yield CounterMetricFamily("chatd_deliveries", "Chat events (lines, notices) handed to "
                                  "a recipient.", value=chat.deliveries)
        sent = CounterMetricFamily("chatd_bytes_sent", "Bytes sent to chat clients.",
                                   labels=["frontend"])
        received = CounterMetricFamily("chatd_bytes_received",
                                       "Bytes received from chat clients.", labels=["frontend"])
        for name, frontend in chat_frontends.items():
            sent.add_metric([name], bytes_sent(frontend))
            received.add_metric([name], frontend.traffic.bytes_received)
        yield sent
        yield received
        yield from self._refusals()
        if stats.authenticator is not None:
            yield CounterMetricFamily("chatd_oper_failures", "Failed /oper attempts.",
                                      value=stats.authenticator.failed_logins)
        yield from self._echo()
        backlog = chat.store.backlog()
        yield GaugeMetricFamily("chatd_store_pending_writes",
                                "Writes queued for the state file and not yet committed.",
                                value=backlog.pending_writes)
        yield CounterMetricFamily("chatd_store_write_errors",
                                  "Failed attempts to commit to the state file, and writes "
                                  "it refused.", value=backlog.write_errors)

    def _refusals(self) -> Iterator[Metric]:
        stats = self.stats
        counts: dict[str, int] = dict.fromkeys(("full", "per-address"), 0)
        # Front-ends may share one ConnectionLimits (line and IRC): count each once.
        for limits in {id(f.limits): f.limits for f in stats.frontends.values()}.values():
            for reason, count in limits.refused.items():
                counts[reason] = counts.get(reason, 0) + count
        for reason in REFUSAL_REASONS.values():
            counts.setdefault(reason, 0)
        kinds = stats.rejections.counts if stats.rejections is not None else {}
        for kind, count in kinds.items():
            if kind in _COUNTED_ELSEWHERE or kind.startswith(UDP_DROP_PREFIX):
                continue
            reason = REFUSAL_REASONS.get(kind, kind)
            counts[reason] = counts.get(reason, 0) + count
        refusals = CounterMetricFamily(
            "chatd_refusals", "Connections refused, lines refused and connections cut off, by "
            "reason.", labels=["reason"])
        for reason, count in counts.items():
            refusals.add_metric([reason], count)
        yield refusals

    def _echo(self) -> Iterator[Metric]:
        stats = self.stats
        echo = stats.frontends.get(ECHO_TCP)
        yield CounterMetricFamily("chatd_echo_bytes", "Bytes echoed over TCP.",
                                  value=echo.traffic.bytes_received if echo is not None else 0)
        yield CounterMetricFamily("chatd_echo_datagrams", "UDP datagrams echoed.",
                                  value=sum(udp.echoed for udp in stats.echo_udp))
        dropped = CounterMetricFamily("chatd_echo_dropped_datagrams",
                                      "UDP datagrams not answered, by reason.",
                                      labels=["reason"])
        kinds = stats.rejections.counts if stats.rejections is not None else {}
        for kind, count in kinds.items():
            if kind.startswith(UDP_DROP_PREFIX):
                dropped.add_metric([kind.removeprefix(UDP_DROP_PREFIX)], count)
        yield dropped


class ReactorLag:
    """Observes how late a ``LoopingCall`` runs: time the reactor spent on other work."""

    def __init__(self, clock: IReactorTime, histogram: Histogram,
                 interval: float = LAG_INTERVAL) -> None:
        self.clock = clock
        self.histogram = histogram
        self.interval = interval
        self._due = 0.0
        self._call = task.LoopingCall(self._tick)
        self._call.clock = clock

    def start(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call.start(self.interval, now=False)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        self.histogram.observe(max(0.0, now - self._due))
        # LoopingCall next runs at the first point of its grid (start + n * interval) after
        # now; a reactor blocked past several points shows as one long lag, not a short one.
        started = self._call.starttime
        assert started is not None  # set by start(), before any tick
        self._due = now + self.interval - (now - started) % self.interval


class MetricsPage(resource.Resource):
    """``/metrics``: the registry in the format the scraper asks for (text or OpenMetrics)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:
        accept = request.getHeader("accept")
        encode, content_type = choose_encoder(accept or "")
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        page: bytes = encode(self.registry)
        return page


class MetricsSite(server.Site):
    """No access log line per scrape: one every 15 s would drown the daemon's log."""

    def log(self, request: Any) -> None:
        pass


def build_registry(stats: ServerStats) -> tuple[CollectorRegistry, Histogram]:
    """A registry of its own (tests build several daemons in one process) with the
    standard ``process_*``, ``python_gc_*`` and ``python_info`` metrics and chatd's."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ChatCollector(stats))
    lag = Histogram("chatd_reactor_lag_seconds",
                    "How late a timer due every 0.5 s ran: time the reactor spent elsewhere.",
                    buckets=LAG_BUCKETS, registry=registry)
    return registry, lag


def metrics_site(registry: CollectorRegistry, reactor: Any) -> server.Site:
    """``/metrics`` (and a 404 for anything else), closing connections idle 30 s."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    site = MetricsSite(root, timeout=SCRAPE_TIMEOUT, reactor=reactor)
    site.noisy = False
    return site


class MetricsService(service.MultiService):
    """Serves ``/metrics`` on one endpoint and runs the reactor-lag probe."""

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, stats: ServerStats,
                 reactor: Any) -> None:
        super().__init__()
        self.setName("metrics")
        self.registry, lag = build_registry(stats)
        self.lag = ReactorLag(reactor, lag)
        site = metrics_site(self.registry, reactor)
        self.listener = ListeningService(description, lambda: endpoint.listen(site), "metrics")
        self.listener.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        self.lag.start()

    def stopService(self) -> Any:
        self.lag.stop()
        return super().stopService()
