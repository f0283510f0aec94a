"""Prometheus metrics: the reactor-lag probe, the store's backlog, and a real scrape."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from chatd.events import Said
from chatd.history import HistoryEntry
from chatd.metrics import SCRAPE_TIMEOUT, ReactorLag, build_registry, metrics_site
from chatd.rooms import Room
from chatd.service import ChatService
from chatd.stats import ServerStats
from chatd.store import SQLiteStore, StoreBacklog
from tests.support import Twistd, connect, read_until


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample of an exposition."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_reactor_lag_is_how_late_the_looping_call_ran() -> None:
    clock = task.Clock()
    registry, histogram = build_registry(ServerStats(ChatService(clock), clock))
    lag = ReactorLag(clock, histogram, interval=0.5)
    lag.start()
    clock.advance(0.5)  # on time: 0
    clock.advance(0.8)  # due at 1.0, runs at 1.3: 0.3 late
    clock.advance(1.4)  # due at 1.5, runs at 2.7 (the reactor was busy): 1.2 late
    clock.advance(0.3)  # due at 3.0, on time again
    lag.stop()
    clock.advance(5)
    value = registry.get_sample_value
    assert value("chatd_reactor_lag_seconds_count") == 4
    assert value("chatd_reactor_lag_seconds_sum") == pytest.approx(1.5)
    bucket = "chatd_reactor_lag_seconds_bucket"
    assert [value(bucket, {"le": le}) for le in ("0.001", "0.25", "0.5", "1.0", "2.5")] == [
        2, 2, 3, 3, 4
    ]


@pytest_twisted.inlineCallbacks
def test_store_backlog_counts_pending_and_failed_writes(tmp_path: Path) -> Any:
    store = SQLiteStore(str(tmp_path / "s.sqlite3"), reactor, 100, flush_interval=60)
    store.open()
    registry, _ = build_registry(ServerStats(ChatService(reactor, store=store), reactor))
    for i in range(3):
        store.save_room(Room(f"#room{i}", 100))
    assert store.backlog() == StoreBacklog(3, 0)
    assert registry.get_sample_value("chatd_store_pending_writes") == 3
    flushing = store.flush()
    assert store.backlog() == StoreBacklog(3, 0)  # being committed: still pending
    yield flushing
    assert store.backlog() == StoreBacklog(0, 0)

    # A full database (SQLite's own SQLITE_FULL): the batch is kept and tried again.
    pages = yield store.read(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    yield store.read(lambda db: db.execute(f"PRAGMA max_page_count = {pages}").fetchall())
    room = Room("#room0", 100)
    for i in range(20):
        store.add_line(room, HistoryEntry(i, Said("#room0", "a", f"{i} " + "x" * 500)))
    yield store.flush()
    assert store.backlog() == StoreBacklog(20, 1)
    # A read waits for what is queued, so the batch fails once more before there is room.
    yield store.read(lambda db: db.execute("PRAGMA max_page_count = 100000").fetchall())
    assert store.backlog() == StoreBacklog(20, 2)
    yield store.flush()
    assert store.backlog() == StoreBacklog(0, 2)
    assert registry.get_sample_value("chatd_store_pending_writes") == 0
    assert registry.get_sample_value("chatd_store_write_errors_total") == 2
    yield store.close()


def test_an_idle_metrics_connection_is_closed_after_30_seconds() -> None:
    clock = MemoryReactorClock()
    registry, _ = build_registry(ServerStats(ChatService(clock), clock))
    site = metrics_site(registry, clock)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert protocol is not None
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /metr")  # and then nothing more
    clock.advance(SCRAPE_TIMEOUT - 1)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return samples(response.read().decode())


def wait_for_sample(port: int, name: str, value: float) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while True:
        found = scrape(port)
        if found.get(name) == value or time.monotonic() > deadline:
            assert found.get(name) == value, (name, found.get(name))
            return found
        time.sleep(0.1)


LOCAL = "tcp:0:interface=127.0.0.1"


def test_scraping_a_running_daemon_shows_what_the_test_did(
    twistd: Callable[..., Twistd],
) -> None:
    daemon = twistd("chatd", "--no-echo", "--state", "chat.sqlite3", "--listen", LOCAL,
                    "--metrics", LOCAL)
    chat_port, metrics_port = daemon.wait_listening("chat", "metrics")
    alice, bob = connect(chat_port), connect(chat_port)
    for sock in (alice, bob):
        read_until(sock, b"/help")
    alice.sendall(b"/join #dev\r\n")
    read_until(alice, b"#dev")
    alice.sendall(b"hello dev\r\n")
    found = wait_for_sample(metrics_port, "chatd_users", 2)
    assert found["chatd_rooms"] == 2  # #lobby and #dev
    assert found["process_resident_memory_bytes"] > 10_000_000
    assert found["process_open_fds"] >= 5
    assert "python_info{" in "".join(found)
    found = wait_for_sample(metrics_port, "chatd_store_pending_writes", 0)  # committed
    assert found["chatd_store_write_errors_total"] == 0
    time.sleep(1.1)  # two reactor-lag probes, 0.5 s apart
    found = scrape(metrics_port)
    assert found["chatd_reactor_lag_seconds_count"] >= 2
    assert found['chatd_reactor_lag_seconds_bucket{le="+Inf"}'] >= 2
    bob.close()
    wait_for_sample(metrics_port, "chatd_users", 1)
    alice.close()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=10)
    assert missing.value.code == 404


class Reader:
    """A chat connection that keeps count of every byte it read."""

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.read = b""

    def until(self, needle: bytes) -> bytes:
        got = read_until(self.sock, needle)
        self.read += got
        return got

    def drain(self) -> None:
        self.sock.settimeout(0.2)
        try:
            while chunk := self.sock.recv(65536):
                self.read += chunk
        except TimeoutError:
            pass

    def send(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)


def test_counters_match_what_the_test_did(
    tmp_path: Path, twistd: Callable[..., Twistd]
) -> None:
    from chatd.passwd import hash_password
    from chatd.version import VERSION

    (tmp_path / "chatd.toml").write_text(f'[operators]\nop = "{hash_password("pw")}"\n')
    daemon = twistd("chatd", "--config", "chatd.toml", "--state", "none", "--listen", LOCAL,
                    "--max-per-ip", "3", "--max-line", "100", "--echo", LOCAL,
                    "--echo-udp", "udp:0:interface=127.0.0.1", "--echo-udp-max-size", "100",
                    "--metrics", LOCAL)
    chat_port, echo_port, udp_port, metrics_port = daemon.wait_listening(
        "chat", "echo", "echo-udp", "metrics")
    sent = 0
    alice = Reader(chat_port)
    alice.until(b"commands.")
    bob = Reader(chat_port)
    bob.until(b"commands.")
    alice.until(b"has joined")
    sent += alice.send(b"hello\r\n")
    bob.until(b"<guest1> hello")
    sent += bob.send(b"/me waves\n")
    alice.until(b"waves")
    sent += alice.send(b"/msg guest2 psst\n")
    bob.until(b"psst")
    sent += alice.send(b"x" * 150 + b"\n")  # over --max-line
    alice.until(b"line too long")
    carol = Reader(chat_port)
    carol.until(b"commands.")
    with connect(chat_port) as dave:  # the fourth from one address
        assert b"too many connections" in read_until(dave, b"\n")
    carol.drain()
    carol.sock.close()
    bob.until(b"guest3 has left")
    sent += bob.send(b"/stats\n")
    bob.until(b"only operators can do that")
    sent += bob.send(b"/oper op wrong\n")
    bob.until(b"wrong operator name or password")
    sent += bob.send(b"/oper op pw\n/stats\n")
    stats = bob.until(b"write errors since start").decode()
    assert f"*** chatd {VERSION}, up " in stats
    assert "*** Connections: 2 line, 0 echo-tcp\r\n" in stats
    assert "*** Messages: " in stats and "/s over the last minute, 3 since start" in stats
    assert "*** Store: 0 writes pending, 0 write errors since start" in stats

    with connect(echo_port) as echo:
        echo.sendall(b"e" * 1000)
        read_until(echo, b"e" * 1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        for size in (10, 20, 200):  # the last is over --echo-udp-max-size
            udp.sendto(b"u" * size, ("127.0.0.1", udp_port))
        assert [len(udp.recv(1000)) for _ in range(2)] == [10, 20]

    found = wait_for_sample(metrics_port, "chatd_echo_dropped_datagrams_total"
                            '{reason="datagram too large"}', 1)
    assert found['chatd_connections{frontend="line"}'] == 2
    assert found["chatd_users"] == 2
    assert found["chatd_messages_total"] == 3
    assert found["chatd_bytes_received_total{frontend=\"line\"}"] == sent
    assert found['chatd_refusals_total{reason="per-address"}'] == 1
    assert found['chatd_refusals_total{reason="line too long"}'] == 1
    assert found['chatd_refusals_total{reason="full"}'] == 0
    assert found["chatd_oper_failures_total"] == 1
    assert found["chatd_echo_bytes_total"] == 1000
    assert found["chatd_echo_datagrams_total"] == 2
    assert found["chatd_deliveries_total"] >= 4  # joins, hello, waves, psst, a leave
    # Every byte the clients read, and nothing more, counted as sent.
    deadline = time.monotonic() + 10
    while True:
        for reader in (alice, bob):
            reader.drain()
        counted = scrape(metrics_port)['chatd_bytes_sent_total{frontend="line"}']
        read = len(alice.read) + len(bob.read) + len(carol.read)
        if counted == read or time.monotonic() > deadline:
            break
    assert counted == read


def test_irc_connections_and_bytes_are_counted_apart(twistd: Callable[..., Twistd]) -> None:
    daemon = twistd("chatd", "--no-echo", "--state", "none", "--listen", LOCAL,
                    "--irc", LOCAL, "--metrics", LOCAL)
    chat_port, irc_port, metrics_port = daemon.wait_listening("chat", "irc", "metrics")
    line = Reader(chat_port)
    line.until(b"commands.")
    irc = Reader(irc_port)
    sent = irc.send(b"NICK ircy\r\nUSER ircy 0 * :Irc User\r\n")
    irc.until(b" 001 ")
    found = wait_for_sample(metrics_port, 'chatd_connections{frontend="irc"}', 1)
    assert found['chatd_connections{frontend="line"}'] == 1
    assert found['chatd_bytes_received_total{frontend="irc"}'] == sent
    assert found['chatd_bytes_received_total{frontend="line"}'] == 0
