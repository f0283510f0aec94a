"""Shared test helpers: an in-memory chat for unit tests, and real loopback clients."""

from __future__ import annotations

import datetime
import ipaddress
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from chatd.listening import ListeningService
from chatd.policy import EdgePolicy
from chatd.protocol import ChatFactory, ChatProtocol
from chatd.service import ChatService
from chatd.tap import Options, makeService

WAIT_SECONDS = 10.0  # every wait on the network has a deadline; this is the usual one
T = TypeVar("T")


def within(
    d: defer.Deferred[T], what: str | Callable[[], str], seconds: float = WAIT_SECONDS
) -> defer.Deferred[T]:
    """``d``'s result, or an AssertionError naming ``what`` if it has none after ``seconds``.

    Every Deferred a test waits for goes through this (or ``LineClient.wait_for``): a
    regression must fail the test with a message, not hang it until CI's limit.
    ``d`` itself is left alone (its result is passed on, not consumed). ``what`` may be a
    callable, to describe the state at the deadline rather than at the call.
    """
    result: defer.Deferred[T] = defer.Deferred()

    def expired() -> None:
        said = what() if callable(what) else what
        result.errback(AssertionError(f"{said}: not within {seconds:g} s"))

    timer = reactor.callLater(seconds, expired)  # type: ignore[attr-defined]

    def passed_on(outcome: Any) -> Any:
        if timer.active():
            timer.cancel()
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
        return outcome

    d.addBoth(passed_on)
    return result


def sleep(seconds: float) -> defer.Deferred[None]:
    """Lets the reactor run for ``seconds`` (only to let time pass, never to wait for an
    outcome: for that, poll a condition with ``until``)."""
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def until(
    check: Callable[[], Any], what: str | Callable[[], str], seconds: float = WAIT_SECONDS,
    every: float = 0.005,
) -> Any:
    """Polls ``check()`` while the reactor runs until it is truthy, and returns that; fails
    naming ``what`` (or what it returns, if callable) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (outcome := check()):
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not within {seconds:g} s")
        yield sleep(every)
    return outcome


# --- Unit level: protocols over StringTransport -------------------------------------------


class MemoryChat:
    """A chat service and factory with a fake clock, and clients on StringTransports."""

    def __init__(self, service_args: dict[str, Any] | None = None, **limits: Any) -> None:
        """``limits`` are EdgePolicy fields (max_line=10, flood_rate=5, ...)."""
        self.clock = Clock()
        self.service = ChatService(self.clock, **(service_args or {}))
        self.policy = EdgePolicy(**limits)
        self.factory = ChatFactory(self.service, self.policy)
        self._next_port = 40000

    def connect(self) -> tuple[ChatProtocol, StringTransport]:
        proto, transport = self.connect_to(self.factory)
        assert isinstance(proto, ChatProtocol)
        return proto, transport

    def connect_to(self, factory: ServerFactory) -> tuple[Any, StringTransport]:
        """A connection from a fresh port on 127.0.0.1 to ``factory`` (any front-end's)."""
        self._next_port += 1
        peer = IPv4Address("TCP", "127.0.0.1", self._next_port)
        proto = factory.buildProtocol(peer)
        assert proto is not None
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport


def take_lines(transport: StringTransport) -> list[str]:
    """Everything written to ``transport`` since the last call, as decoded lines."""
    data = transport.value()
    transport.clear()
    assert data == b"" or data.endswith(b"\r\n"), data
    return [line.decode("utf-8") for line in data.split(b"\r\n")[:-1]]


# --- Integration level: a real daemon on loopback ------------------------------------------


class RunningDaemon:
    """makeService() started in this process, listening on 127.0.0.1 with port 0."""

    def __init__(self, args: list[str]) -> None:
        self.options = Options()
        self.options.parseOptions(args)
        self.top: service.MultiService = makeService(self.options)
        self.top.startService()

    def listeners(self) -> Iterator[ListeningService]:
        for child in self.top:
            if isinstance(child, ListeningService):
                yield child

    def _port(self, index: int) -> int:
        port = list(self.listeners())[index].port
        assert port is not None
        return int(port.getHost().port)

    @property
    def chat_port(self) -> int:
        """The port of the first --listen."""
        return self._port(0)

    @property
    def echo_port(self) -> int:
        """The port of the first --echo."""
        return self._port(len(self.options["listen"]))

    @property
    def udp_port(self) -> int:
        """The port of the first --echo-udp."""
        return self._port(len(self.options["listen"]) + len(self.options["echo"]))

    @property
    def chat(self) -> ChatService:
        chat = self.top.getServiceNamed("chat")
        assert isinstance(chat, ChatService)
        return chat

    def stop(self) -> defer.Deferred[Any]:
        """Stops every service; fails if that takes longer than the shutdown's own bound."""
        return within(defer.maybeDeferred(self.top.stopService), "the daemon stopped", 15)


LOCAL = "interface=127.0.0.1"


def local_args(*extra: str) -> list[str]:
    return [
        "--listen", f"tcp:0:{LOCAL}",
        "--echo", f"tcp:0:{LOCAL}",
        "--echo-udp", "udp:0:interface=127.0.0.1",
        *(extra if "--state" in extra else ("--state", "none", *extra)),
    ]


class LineClient(protocol.Protocol):
    """A test client that records every line the server sends."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = b""
        # Each waiter with the index of the first line it has not looked at yet: lines are
        # only ever appended and consumed, so a line once passed over never matches later,
        # and each line is searched once per waiter (a 10,000-line paste is not searched
        # 10,000 times over).
        self._waiters: list[tuple[re.Pattern[str], defer.Deferred[str], list[int]]] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._consumed: set[int] = set()

    def dataReceived(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\r\n")
        for raw in complete:
            self.lines.append(raw.decode("utf-8"))
        self._check()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)
        for _, waiter, _ in self._waiters:
            if not waiter.called:
                waiter.errback(AssertionError(f"connection closed; lines: {self.lines}"))
        self._waiters = []

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def wait_closed(self, seconds: float = WAIT_SECONDS) -> defer.Deferred[None]:
        """Fires once the server has closed the connection; fails after ``seconds``."""
        return within(self.closed, lambda: f"connection still open; lines: {self.lines}", seconds)

    def wait_for(self, pattern: str) -> defer.Deferred[str]:
        """Fires with the first not-yet-consumed line matching ``pattern`` (re.search).

        Lines that arrive from different senders may interleave in any order; a line that
        does not match is left for a later wait_for.
        """
        d: defer.Deferred[str] = defer.Deferred()
        self._waiters.append((re.compile(pattern), d, [0]))
        self._check()
        timeout = reactor.callLater(  # type: ignore[attr-defined]
            WAIT_SECONDS, self._timeout, d, pattern
        )
        d.addBoth(lambda r: (timeout.active() and timeout.cancel(), r)[1])
        return d

    def _timeout(self, d: defer.Deferred[str], pattern: str) -> None:
        self._waiters = [waiting for waiting in self._waiters if waiting[1] is not d]
        d.errback(AssertionError(f"no line matching {pattern!r}; lines: {self.lines}"))

    def _check(self) -> None:
        for waiting in list(self._waiters):
            pattern, waiter, start = waiting
            if waiter.called:  # answered (or timed out) by a _check its callback ran
                continue
            for index in range(start[0], len(self.lines)):
                if index not in self._consumed and pattern.search(self.lines[index]):
                    self._consumed.add(index)
                    self._waiters.remove(waiting)
                    waiter.callback(self.lines[index])
                    break
            else:
                start[0] = len(self.lines)


@defer.inlineCallbacks
def connect_client(port: int, greeting: bool = True) -> Any:
    """A LineClient connected to 127.0.0.1:port, after its greeting when ``greeting``."""
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    client = yield within(endpoints.connectProtocol(endpoint, LineClient()),
                          f"a connection to 127.0.0.1:{port}")
    if greeting:
        yield client.wait_for(r"^\*\*\* Welcome")
    return client


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1/localhost signed by it.

    Returns (ca.pem, server-cert.pem, server-key.pem): clients trust ca.pem.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / "ca.pem"
    cert_pem = directory / "server-cert.pem"
    key_pem = directory / "server-key.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


# --- A real daemon in another process: ``twistd -n chatd`` -----------------------------------

VENV_TWISTD = Path(sys.executable).parent / "twistd"
# A listener's line once bound: "listening: chat tcp 127.0.0.1 port 41234 (...)".
_LISTENING = re.compile(r"listening: (\S+) \S+ \S+ port (\d+) \(")


class Twistd:
    """``twistd -n ARGV...`` in a subprocess, its output (stdout and stderr) in ``log``.

    Listen on port 0 and read the bound ports from the log with ``wait_listening``: a port
    picked beforehand (bind, close, hand the number over) races every other process on
    the machine for it. ``restart`` starts the same command again.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        executable: Path = VENV_TWISTD,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.executable = executable
        self.env = env
        self.log = cwd / "twistd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this run's output starts in the log

    def start(self) -> Twistd:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.executable), "--pidfile=", "-n", *self.argv],
                cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )
        return self

    def output(self) -> str:
        """What this run (since the last start) has logged so far."""
        with self.log.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, needle: str, seconds: float = WAIT_SECONDS) -> str:
        """This run's output, once it contains ``needle``; fails if the daemon exits first."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.output()
            if needle in text:
                return text
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"twistd exited before {needle!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged within {seconds:g} s:\n{text}")
            time.sleep(0.02)

    def wait_listening(self, *roles: str, seconds: float = 20.0) -> list[int]:
        """The bound port of each listener named, once all have logged their
        ``listening:`` line (README "Logs"): roles are ``chat``, ``irc``, ``web``, ``echo``,
        ``echo-udp`` and ``metrics``; a role named twice is its first and second listener
        (in the order of the options)."""
        deadline = time.monotonic() + seconds
        while True:
            text = self.output()
            bound: dict[str, list[int]] = {}
            for role, port in _LISTENING.findall(text):
                bound.setdefault(role, []).append(int(port))
            taken: dict[str, int] = {}
            ports = []
            for role in roles:
                index = taken[role] = taken.get(role, -1) + 1
                if index < len(bound.get(role, [])):
                    ports.append(bound[role][index])
            if len(ports) == len(roles):
                return ports
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"twistd exited before listening:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{roles} not all listening within {seconds:g} s:\n{text}")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        """The port of the first chat listener (--listen)."""
        return self.wait_listening("chat")[0]

    def send_signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 15.0) -> str:
        """Sends ``sig``, waits for the exit (killing after ``seconds``); returns the output."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"twistd ignored signal {sig} for {seconds:g} s:\n"
                                     f"{self.output()}") from None
        return self.output()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> Twistd:
        self.stop()
        return self.start()


def start_on_a_named_port(
    start: Callable[[], Twistd], *roles: str, seconds: float = WAIT_SECONDS,
) -> tuple[Twistd, list[int]]:
    """``start()``'s daemon once it listens, and the ports of ``roles`` (wait_listening).

    For a daemon told a port in advance (a restart keeps the port its first run was given,
    since a client reconnects to its address): any other process may take that port in
    between (a port-0 listener, an outgoing connection's local port; other tests run in
    parallel). That shows as a refused start, "cannot listen", and is tried again until
    ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        daemon = start()
        try:
            return daemon, daemon.wait_listening(*roles)
        except AssertionError:
            if "cannot listen" not in daemon.output() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_twistd(
    argv: Sequence[str], cwd: Path, executable: Path = VENV_TWISTD, seconds: float = 30.0,
    **popen_args: Any,
) -> subprocess.CompletedProcess[str]:
    """``twistd -n ARGV...`` expected to exit by itself (a refused start): its outcome."""
    return subprocess.run(
        [str(executable), "--pidfile=", "-n", *argv], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=seconds, **popen_args,
    )


# --- Blocking sockets, for tests that drive a daemon in another process -------------------


def read_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in {data!r}")
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed before {needle!r}; got {data!r}")
        data += chunk
    return data


def waiting_datagrams(sock: socket.socket) -> list[tuple[bytes, Any]]:
    """Every datagram waiting on the non-blocking ``sock`` now, with its source address."""
    got = []
    try:
        while True:
            got.append(sock.recvfrom(65536))
    except BlockingIOError:
        return got


def connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
