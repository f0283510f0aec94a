"""Command-line options and ``makeService``: the one place the daemon is assembled.

Both ``twistd chatd`` (through the plugin) and ``chatd.tac`` build the service tree here.
Nothing imports the reactor at module level, so loading the plugin never installs one.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IProtocolFactory, IReactorUDP, IStreamServerEndpoint
from twisted.python import usage

from chatd import config
from chatd.echo import DEFAULT_ECHO_IDLE_TIMEOUT, EchoDatagramProtocol, EchoFactory
from chatd.listening import Listen, ListeningService
from chatd.moderation_store import ModerationStore
from chatd.moderator import Moderator
from chatd.operators import OperatorAuthenticator
from chatd.protocol import DEFAULT_MAX_LINE, ChatFactory
from chatd.reloading import Reloader, ReloadOnHangup
from chatd.service import ChatService

DEFAULT_LISTEN = "tcp:7777"
DEFAULT_ECHO = "tcp:7007"
DEFAULT_ECHO_UDP = "udp:7007"
UDP_USAGE = "udp:PORT or udp:PORT:interface=ADDR"
MAX_DATAGRAM = 65535  # read whole datagrams; Twisted's default of 8192 would truncate them


def parse_udp(description: str) -> tuple[int, str]:
    """Parses ``udp:PORT[:interface=ADDR]`` into (port, interface); raises UsageError.

    Twisted has no UDP endpoint strings, so this is the one small form we accept.
    """
    kind, _, rest = description.partition(":")
    port_text, _, option = rest.partition(":")
    interface = ""
    if option:
        key, _, value = option.partition("=")
        if key != "interface" or not value:
            raise usage.UsageError(f"--echo-udp {description!r}: expected {UDP_USAGE}")
        interface = value.replace("\\:", ":")
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise usage.UsageError(
                f"--echo-udp {description!r}: interface must be an IP address"
            ) from None
    if kind != "udp" or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise usage.UsageError(f"--echo-udp {description!r}: expected {UDP_USAGE}")
    return int(port_text), interface


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is negative")
    return value


non_negative_int.coerceDoc = "A whole number, 0 or more."  # type: ignore[attr-defined]


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"{text} is not a number of seconds, 0 or more")
    return value


non_negative_float.coerceDoc = "Seconds, 0 or more."  # type: ignore[attr-defined]


class Options(usage.Options):
    synopsis = (
        "[--listen ENDPOINT]... [--echo ENDPOINT]... "
        "[--echo-udp udp:PORT[:interface=ADDR]]... [--no-echo]"
    )
    longdesc = (
        "A chat daemon: every line reaches everyone else. ENDPOINT is any Twisted server "
        "endpoint description (tcp:7777, tcp6:7777, unix:/run/chatd.sock, "
        "ssl:7778:privateKey=key.pem:certKey=cert.pem). Also runs an RFC 862 echo service."
    )
    optFlags: ClassVar[list[list[Any]]] = [
        ["no-echo", None, "Run no echo service at all."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["server-name", None, "chatd", "The name the greeting shows."],
        ["max-line", None, DEFAULT_MAX_LINE,
         "Longest line in bytes; longer ones are refused (0: no limit).", non_negative_int],
        ["echo-idle-timeout", None, DEFAULT_ECHO_IDLE_TIMEOUT,
         "Close TCP echo connections silent this long (0: never).", non_negative_float],
        ["config", None, None,
         "A TOML file setting any of these options; the command line wins over it."],
        ["state", None, None,
         "The SQLite state database (bans, mutes); without it they last until a restart."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["echo"] = []
        self["echo-udp"] = []
        self["operators"] = {}  # only the configuration file can set these
        self.argv: list[str] = []
        self.chat_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self.echo_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self.echo_udp_ports: list[tuple[str, int, str]] = []

    def opt_listen(self, description: str) -> None:
        """Chat endpoint; repeatable [default: tcp:7777]"""
        self["listen"].append(description)

    def opt_echo(self, description: str) -> None:
        """TCP echo endpoint; repeatable [default: tcp:7007]"""
        self["echo"].append(description)

    def opt_echo_udp(self, description: str) -> None:
        """UDP echo, udp:PORT[:interface=ADDR]; repeatable [default: udp:7007]"""
        self["echo-udp"].append(description)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Applies the --config file first, then the command line, which therefore wins."""
        self.argv = list(sys.argv[1:] if options is None else options)
        path, given = config.scan_command_line(self, self.argv)
        applied = config.apply_file(self, path, skip=given) if path is not None else set()
        try:
            super().parseOptions(self.argv)
        except usage.UsageError as e:
            raise config.blame_file(e, path, applied) if path is not None else e from None

    def postOptions(self) -> None:
        if self["no-echo"] and (self["echo"] or self["echo-udp"]):
            raise usage.UsageError("--no-echo cannot be combined with --echo or --echo-udp")
        self["listen"] = self["listen"] or [DEFAULT_LISTEN]
        if not self["no-echo"]:
            self["echo"] = self["echo"] or [DEFAULT_ECHO]
            self["echo-udp"] = self["echo-udp"] or [DEFAULT_ECHO_UDP]
        self.chat_endpoints = [(d, _stream_endpoint("--listen", d)) for d in self["listen"]]
        self.echo_endpoints = [(d, _stream_endpoint("--echo", d)) for d in self["echo"]]
        self.echo_udp_ports = [(d, *parse_udp(d)) for d in self["echo-udp"]]


def _stream_endpoint(option: str, description: str) -> IStreamServerEndpoint:
    """Parses an endpoint description now, so a typo is a usage error and not a traceback."""
    from twisted.internet import endpoints, reactor

    try:
        endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, description)
        return endpoint
    except Exception as e:  # the parsers raise many kinds: ValueError, KeyError, SSL errors
        raise usage.UsageError(f"{option} {description!r}: {e}") from None


def makeService(options: Options) -> service.MultiService:
    """The whole daemon: the chat service, its listeners and the echo services."""
    from twisted.internet import reactor

    top = service.MultiService()
    # Children stop in reverse order: listeners close first, then the chat says goodbye.
    chat = ChatService(reactor, server_name=options["server-name"])
    chat.setServiceParent(top)

    chat_factory = ChatFactory(chat, max_line=options["max-line"])
    authenticator = OperatorAuthenticator(
        reactor, options["operators"],
        run=lambda check: threads.deferToThreadPool(
            cast(Any, reactor), cast(Any, reactor).getThreadPool(), check
        ),
    )
    store = ModerationStore(reactor, options["state"]) if options["state"] else None
    moderator = Moderator(chat, reactor, authenticator, store)
    moderator.setServiceParent(top)
    chat_factory.moderator = moderator
    reloader = Reloader(lambda: _reparse(options), options, [chat, chat_factory, authenticator])
    ReloadOnHangup(reactor, reloader).setServiceParent(top)
    for description, endpoint in options.chat_endpoints:
        _listener(description, endpoint, chat_factory).setServiceParent(top)

    echo_factory = EchoFactory(idle_timeout=options["echo-idle-timeout"])
    for description, endpoint in options.echo_endpoints:
        _listener(description, endpoint, echo_factory).setServiceParent(top)

    for description, port, interface in options.echo_udp_ports:
        udp_listen = _udp_listen(cast(IReactorUDP, reactor), port, interface)
        ListeningService(description, udp_listen).setServiceParent(top)
    return top


def _reparse(options: Options) -> Options:
    """The same command line parsed again, so the file is read afresh (for SIGHUP)."""
    fresh = type(options)()
    fresh.parseOptions(options.argv)
    return fresh


def _listener(
    description: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory
) -> ListeningService:
    return ListeningService(description, lambda: endpoint.listen(factory))


def _udp_listen(reactor: IReactorUDP, port: int, interface: str) -> Listen:
    def listen() -> defer.Deferred[Any]:
        try:
            return defer.succeed(
                reactor.listenUDP(port, EchoDatagramProtocol(), interface, MAX_DATAGRAM)
            )
        except Exception:
            return defer.fail()

    return listen
