"""Thousands of clients against a real twistd: one broadcast reaches all, SIGTERM says
goodbye to each and the daemon exits within 5 seconds."""

from __future__ import annotations

import resource
import selectors
import signal
import socket
import time
from collections.abc import Callable

import pytest

from tests.support import Twistd

pytestmark = pytest.mark.slow
CLIENTS = 2000
GOODBYE = b"*** Server is shutting down. Goodbye.\r\n"


def raise_open_file_limit(wanted: int) -> None:
    """Raises this process's soft limit on open files (the daemon inherits it) up to the
    hard limit; a machine whose hard limit is lower fails here, loudly, rather than skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        wanted_or_all = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted_or_all, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        pytest.fail(f"needs {wanted} open files; the hard limit is {hard} (raise it: "
                    "ulimit -Hn, or LimitNOFILE= under systemd)")


def read_all_until(socks: list[socket.socket], needle: bytes, timeout: float,
                   until_closed: bool = False) -> dict[socket.socket, bytes]:
    """Reads every socket until each has seen ``needle`` (and, if asked, end of file)."""
    received = {s: b"" for s in socks}
    pending = set(socks)
    with selectors.DefaultSelector() as selector:
        for s in socks:
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(0.5):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except (BlockingIOError, ConnectionResetError):
                    continue
                received[s] = (received[s] + data)[-4096:]
                done = needle in received[s] and (data == b"" or not until_closed)
                if data == b"" or done:
                    selector.unregister(s)
                    pending.discard(s)
    return received


def test_2000_clients_one_broadcast_and_a_quick_goodbye(twistd: Callable[..., Twistd]) -> None:
    raise_open_file_limit(CLIENTS + 200)  # the daemon inherits the raised limit
    daemon = twistd("chatd", "--no-echo", "--state", "none",
                    "--listen", "tcp:0:interface=127.0.0.1:backlog=2048",
                    "--max-clients", "0", "--max-per-ip", "0", "--connect-rate", "0")
    port = daemon.port
    socks: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # Everyone is in once the last one's greeting arrives; then one line to all.
        last = read_all_until(socks[-1:], b"Type /help", timeout=60)
        assert b"Type /help" in last[socks[-1]]
        socks[-1].setblocking(True)
        socks[-1].sendall(b"one line for everyone\n")
        got = read_all_until(socks[:-1], b"> one line for everyone\r\n", timeout=60)
        missing = [s for s, data in got.items() if b"> one line for everyone" not in data]
        assert not missing, f"{len(missing)} clients did not get the broadcast"

        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        got = read_all_until(socks, GOODBYE, timeout=10, until_closed=True)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=10) in (0, -signal.SIGTERM)
        elapsed = time.monotonic() - started
        without_goodbye = [s for s, data in got.items() if GOODBYE not in data]
        assert not without_goodbye, f"{len(without_goodbye)} clients got no goodbye"
        assert elapsed < 5, elapsed
    finally:
        for s in socks:
            s.close()
    assert "Traceback" not in daemon.output()
