"""Thousands of clients against a real twistd: one broadcast reaches all, SIGTERM says
goodbye to each and the daemon exits within 5 seconds."""

from __future__ import annotations

import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.slow
CLIENTS = 2000
GOODBYE = b"*** Server is shutting down. Goodbye.\r\n"


def raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:
        pytest.skip(f"needs {wanted} open files")


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


def test_2000_clients_one_broadcast_and_a_quick_goodbye(tmp_path: Path) -> None:
    raise_open_file_limit(CLIENTS + 200)  # the daemon inherits the raised limit
    port = free_port()
    log = (tmp_path / "twistd.log").open("wb")
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen(
        [str(twistd), "--pidfile=", "-n", "chatd", "--no-echo",
         "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=2048",
         "--max-clients", "0", "--max-per-ip", "0", "--connect-rate", "0"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        for _ in range(CLIENTS - 1):
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
        process.send_signal(signal.SIGTERM)
        got = read_all_until(socks, GOODBYE, timeout=10, until_closed=True)
        assert process.wait(timeout=10) in (0, -signal.SIGTERM)
        elapsed = time.monotonic() - started
        without_goodbye = [s for s, data in got.items() if GOODBYE not in data]
        assert not without_goodbye, f"{len(without_goodbye)} clients got no goodbye"
        assert elapsed < 5, elapsed
    finally:
        for s in socks:
            s.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "twistd.log").read_text()
    assert "Traceback" not in output
