"""A real ``redis-server`` for tests: on a free loopback port, in a temporary directory,
persisting nothing, and never outliving its test.

``redis_server`` (a pytest fixture) yields a started ``RedisServer``; tests that stop Redis
to see chatd cope call ``stop()`` and ``start()`` again, on the same port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_SECONDS = 10.0  # from exec to answering PING
# A server whose test died without tearing it down still exits, after this long: redis has
# no lifetime option, so the fixture runs it under coreutils' timeout(1).
MAX_LIFETIME = 600


def free_port() -> int:
    """A loopback port free a moment ago. redis-server cannot listen on port 0 and say
    which port it got, so one is picked here; start_redis tries again if it was taken."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def command(port: int, *words: str, timeout: float = 5.0) -> bytes:
    """Sends one command to the Redis on 127.0.0.1:port; returns the start of its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(_resp(*words))
        return s.recv(4096)


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
        # A PING answered is not enough: when the port was taken meanwhile, it may be
        # another test's redis-server answering (tests run in several processes) while this
        # one exits. This one's own log says it is ready, once more than before this start.
        ready_before = self._ready_count()
        # Its own process group: stop() kills timeout(1) and redis-server together.
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while self._ready_count() == ready_before or not ping(self.port, self.password):
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

    def _ready_count(self) -> int:
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return 0
        return text.count("Ready to accept connections")

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


class Chatter:
    """A blocking line client of a chatd in another process (a twistd subprocess)."""

    def __init__(self, port: int, seconds: float = 10.0, source: str | None = None) -> None:
        """``source``: the loopback address to connect from (127.0.0.2, ...)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=seconds,
                                             source_address=None if source is None
                                             else (source, 0))
        self.lines: list[str] = []
        self._partial = b""
        self._taken: set[int] = set()  # lines an expect has returned
        self.last_index = -1  # of the line the last expect returned
        self.nick = self.greeted()

    def greeted(self) -> str:
        """Waits for the greeting; returns the nick it gives."""
        welcome = self.expect(r"^\*\*\* Welcome to .* You are \S+?\.")
        return welcome.split(" You are ")[1].split(".")[0]

    def say(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, pattern: str, seconds: float = 10.0) -> str:
        """The first line no expect has returned yet that matches ``pattern`` (re.search):
        lines from different processes may come in any order. Fails, showing what came,
        after ``seconds``."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + seconds
        while True:
            for index, line in enumerate(self.lines):
                if index not in self._taken and wanted.search(line):
                    self._taken.add(index)
                    self.last_index = index
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {seconds:g} s; "
                                     f"got {self.lines}")
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError(f"closed while waiting for {pattern!r}: {self.lines}")
            *complete, self._partial = (self._partial + data).split(b"\r\n")
            self.lines += [line.decode("utf-8", "replace") for line in complete]

    def rename(self, nick: str) -> Chatter:
        self.say(f"/nick {nick}")
        self.expect(rf"is now known as {re.escape(nick)}$")
        self.nick = nick
        return self

    def who_until(self, check: Callable[[str], bool], seconds: float = 20.0) -> str:
        """Asks /who every half second until ``check(the reply)``; returns the reply."""
        deadline = time.monotonic() + seconds
        while True:
            self.say("/who")
            reply = self.expect(r"^\*\*\* Users in ")
            if check(reply):
                return reply
            if time.monotonic() > deadline:
                raise AssertionError(f"/who never satisfied the check: {reply}")
            time.sleep(0.5)

    def history(self) -> list[str]:
        """The lines ``/history`` shows, in order."""
        self.say("/history")
        if "No history" in self.expect(r"^\*\*\* (History of |No history)"):
            return []
        start = self.last_index
        self.expect(r"^\*\*\* End of history\.$")
        return self.lines[start + 1:self.last_index]

    def close(self) -> None:
        self.sock.close()


class IrcChatter(Chatter):
    """A blocking IRC client: registered as ``nick`` (NICK and USER), in no room."""

    def __init__(self, port: int, nick: str, seconds: float = 10.0) -> None:
        self.wanted = nick
        super().__init__(port, seconds)

    def greeted(self) -> str:
        self.say(f"NICK {self.wanted}")
        self.say(f"USER {self.wanted} 0 * :{self.wanted}")
        self.expect(rf"^:\S+ 001 {re.escape(self.wanted)} ")
        return self.wanted


VENV_TWISTD = Path(sys.executable).parent / "twistd"
_STARTED = re.compile(r"\] (.+?) starting on (\d+)$", re.MULTILINE)


class ChatdProcess:
    """``twistd -n chatd ARGV...`` in a subprocess, logging to ``twistd.log`` in its own
    directory; a test stops (or SIGKILLs) it, and the fixture kills what is left."""

    def __init__(self, argv: list[str], directory: Path) -> None:
        self.directory = directory
        self.log = directory / "twistd.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(VENV_TWISTD), "--pidfile=", "-n", "chatd", *argv], cwd=directory,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self) -> str:
        return self.log.read_bytes().decode("utf-8", "replace")

    def wait_for_log(self, needle: str, seconds: float = 20.0) -> str:
        deadline = time.monotonic() + seconds
        while needle not in (text := self.output()):
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited before {needle!r}:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {seconds:g} s:\n{text}")
            time.sleep(0.02)
        return text

    @property
    def port(self) -> int:
        """The first port it listens on (its --listen)."""
        match = _STARTED.search(self.wait_for_log(" starting on "))
        assert match is not None
        return int(match.group(2))

    def port_of(self, factory: str) -> int:
        """The port the listener of ``factory`` (a class name: "IRCFactory") is on."""
        self.wait_for_log(f"{factory} starting on ")
        ports = [int(port) for name, port in _STARTED.findall(self.output()) if name == factory]
        return ports[0]

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 15.0) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"twistd ignored signal {sig}:\n{self.output()}") from None
        return self.output()


def start_chatd(started: list[ChatdProcess], server: RedisServer, tmp_path: Path, name: str,
                *extra: str, url: str | None = None) -> ChatdProcess:
    """A chatd called ``name`` on ``server`` (at ``url`` if given: another Redis user),
    listening on a free loopback port and on whatever ``extra`` adds, once it has joined
    the cluster."""
    directory = tmp_path / name
    directory.mkdir()
    daemon = ChatdProcess(["--listen", "tcp:0:interface=127.0.0.1", "--no-echo",
                           "--server-name", name, "--redis", url or server.url, *extra],
                          directory)
    started.append(daemon)
    daemon.wait_for_log("Joined the cluster", seconds=20)
    return daemon


@pytest.fixture
def chatd_processes() -> Iterator[list[ChatdProcess]]:
    """Every ChatdProcess a test appends here is killed when the test ends."""
    started: list[ChatdProcess] = []
    yield started
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
