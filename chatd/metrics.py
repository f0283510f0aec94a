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
from chatd.service import ChatService

LAG_INTERVAL = 0.5  # seconds between reactor-lag probes
# Seconds late: a healthy reactor is within a millisecond; past a second people notice.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCRAPE_TIMEOUT = 30  # seconds an idle metrics connection stays open


class ChatCollector(Collector):
    """The service's state as gauges and counters, read when scraped."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def collect(self) -> Iterator[Metric]:
        chat = self.chat
        yield GaugeMetricFamily("chatd_users", "Users connected to the chat.",
                                value=len(chat.users))
        yield GaugeMetricFamily("chatd_rooms", "Rooms that exist (with members or saved).",
                                value=len(chat.rooms))
        backlog = chat.store.backlog()
        yield GaugeMetricFamily("chatd_store_pending_writes",
                                "Writes queued for the state file and not yet committed.",
                                value=backlog.pending_writes)
        yield CounterMetricFamily("chatd_store_write_errors",
                                  "Batches of writes that failed to commit to the state file.",
                                  value=backlog.write_errors)


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


def build_registry(chat: ChatService) -> tuple[CollectorRegistry, Histogram]:
    """A registry of its own (tests build several daemons in one process) with the
    standard ``process_*``, ``python_gc_*`` and ``python_info`` metrics and chatd's."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(ChatCollector(chat))
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

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, chat: ChatService,
                 reactor: Any) -> None:
        super().__init__()
        self.setName("metrics")
        self.registry, lag = build_registry(chat)
        self.lag = ReactorLag(reactor, lag)
        site = metrics_site(self.registry, reactor)
        self.listener = ListeningService(description, lambda: endpoint.listen(site))
        self.listener.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        self.lag.start()

    def stopService(self) -> Any:
        self.lag.stop()
        return super().stopService()
