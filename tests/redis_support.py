"""A real ``redis-server`` for tests: on a free loopback port, in a temporary directory,
persisting nothing, and never outliving its test.

``redis_server`` (a pytest fixture) yields a started ``RedisServer``; tests that stop Redis
to see chatd cope call ``stop()`` and ``start()`` again, on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, reactor, task

from tests.support import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_SECONDS = 10.0  # from exec to answering PING
# A server whose test died without tearing it down still exits, after this long: redis has
# no lifetime option, so the fixture runs it under coreutils' timeout(1).
MAX_LIFETIME = 600


def ping(port: int, password: str | None = None, timeout: float = 0.5) -> bool:
    """Whether a Redis on 127.0.0.1:port answers PING (with AUTH first, if given)."""
    command = b""
    if password is not None:
        command += _resp("AUTH", password)
    command += _resp("PING")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(command)
            reply = b""
            deadline = time.monotonic() + timeout
            while b"+PONG" not in reply and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return b"+PONG" in reply
    except OSError:
        return False


def _resp(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """One redis-server process on 127.0.0.1, configured on its command line."""

    def __init__(self, directory: Path, password: str | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.password = password
        self.extra = extra
        self.port = free_port()
        # With TLS, clients use tls_port; the plain port stays, for readiness checks.
        self.tls_port = free_port() if any("tls" in word for word in extra) else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [
            "timeout", "-s", "KILL", str(MAX_LIFETIME), REDIS_SERVER,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            # Nothing persists: no RDB snapshots, no append-only file.
            "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
            *self.extra,
        ]
        if self.tls_port is not None:
            argv += ["--tls-port", str(self.tls_port)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> RedisServer:
        """Starts the server (again, on the same port) and waits until it answers PING."""
        assert self.process is None, "already running"
        # Its own process group: stop() kills timeout(1) and redis-server together.
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while not ping(self.port, self.password):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"redis-server did not start on {self.port}: {self.log()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Kills the server (SIGKILL: what a crash looks like to chatd) and reaps it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=START_SECONDS)
        self.process = None

    def log(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def start_redis(directory: Path, password: str | None = None,
                extra: tuple[str, ...] = ()) -> RedisServer:
    """A started RedisServer; a port taken between choosing and binding it is tried anew."""
    for attempt in range(3):
        server = RedisServer(directory, password, extra)
        try:
            return server.start()
        except AssertionError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = start_redis(directory)
    try:
        yield server
    finally:
        server.stop()


@defer.inlineCallbacks
def until(check: Callable[[], Any], what: str, seconds: float = 10.0) -> Any:
    """Polls ``check()`` while the reactor runs until it is truthy; fails naming ``what``."""
    deadline = time.monotonic() + seconds
    while not (outcome := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        yield task.deferLater(reactor, 0.01, lambda: None)
    return outcome


def sleep(seconds: float) -> defer.Deferred[None]:
    """Lets the reactor run (only to let time pass; to wait for an outcome, use until)."""
    return task.deferLater(reactor, seconds, lambda: None)
