"""Command-line options and ``makeService``: the one place the daemon is assembled.

Both ``twistd chatd`` (through the plugin) and ``chatd.tac`` build the service tree here.
Nothing imports the reactor at module level, so loading the plugin never installs one.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from twisted.application import app, service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IProtocolFactory, IReactorUDP, IStreamServerEndpoint
from twisted.python import usage

from chatd import config
from chatd.addresses import DEFAULT_IPV6_PREFIX
from chatd.backpressure import DEFAULT_SEND_BUFFER, DEFAULT_SEND_GRACE
from chatd.cluster.address import redis_address
from chatd.commands import build_command_table
from chatd.echo import (
    DEFAULT_ECHO_IDLE_TIMEOUT,
    DEFAULT_UDP_MAX_SIZE,
    DEFAULT_UDP_RATE,
    DEFAULT_UDP_TOTAL_RATE,
    EchoDatagramProtocol,
    EchoFactory,
)
from chatd.flood import DEFAULT_FLOOD_BURST, DEFAULT_FLOOD_QUEUE, DEFAULT_FLOOD_RATE
from chatd.history import DEFAULT_HISTORY_MEMORY
from chatd.irc.factory import IRCFactory
from chatd.limits import DEFAULT_CONNECT_RATE, DEFAULT_MAX_PER_IP, default_max_clients
from chatd.listening import Listen, ListeningService
from chatd.logs import StartupLine
from chatd.moderation.moderator import DEFAULT_KICK_REJOIN_DELAY, Moderator
from chatd.moderation.operators import OperatorAuthenticator
from chatd.output import OutputBatch
from chatd.policy import DEFAULT_MAX_LINE, Policy
from chatd.protocol import ChatFactory
from chatd.ratelog import RateLimitedLog
from chatd.reloading import Reconfigurable, Reloader, ReloadOnHangup
from chatd.rooms import (
    DEFAULT_MAX_ROOMS,
    DEFAULT_ROOM_EXPIRY,
    DEFAULT_ROOM_RATE,
    InvalidRoomName,
    normalize_room,
)
from chatd.service import (
    DEFAULT_ANNOUNCE_LIMIT,
    DEFAULT_HISTORY,
    DEFAULT_REPLAY,
    DEFAULT_ROOM,
    ChatService,
)
from chatd.startup import exit_with_usage_error, report_daemon_start_errors_plainly
from chatd.stats import ECHO_TCP, ServerStats
from chatd.store import (
    DEFAULT_STATE,
    MEMORY_ONLY,
    MemoryStore,
    open_store,
    state_file_problem,
)
from chatd.text import clean_text
from chatd.version import describe as describe_version
from chatd.web.origin import InvalidOrigin, Origin, parse_origin

DEFAULT_LISTEN = "tcp:7777"
DEFAULT_ECHO = "tcp:7007"
DEFAULT_ECHO_UDP = "udp:7007"
METRICS_OFF = "none"
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
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("not a whole number, 0 or more")
    return value


non_negative_int.coerceDoc = "A whole number, 0 or more."  # type: ignore[attr-defined]


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError("not a number, 0 or more")
    return value


non_negative_float.coerceDoc = "A number, 0 or more."  # type: ignore[attr-defined]


class NamedParameter(usage.CoerceParameter):
    """Coerces a parameter like Twisted does, but the error names the option and the value
    (``--max-line '-5': not a whole number, 0 or more``), not only the value."""

    def dispatch(self, parameterName: str, value: str | None) -> None:
        if value is None:
            raise usage.UsageError(f"--{parameterName} needs a value")
        try:
            self.options.opts[parameterName] = self.coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{parameterName} {value!r}: {e}") from None


def ipv6_prefix(text: str) -> int:
    value = non_negative_int(text)
    if not 1 <= value <= 128:
        raise ValueError("not a prefix length from 1 to 128")
    return value


ipv6_prefix.coerceDoc = "A prefix length, 1 to 128."  # type: ignore[attr-defined]


class Options(usage.Options):
    synopsis = (
        "[--listen ENDPOINT]... [--irc ENDPOINT]... [--web ENDPOINT]... "
        "[--web-origin ORIGIN]... [--echo ENDPOINT]... "
        "[--echo-udp udp:PORT[:interface=ADDR]]... [--no-echo] [--default-room ROOM] "
        "[--history N] [--replay N] [--state PATH|none] [--motd FILE] [--redis URL]"
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
        ["flood-rate", None, DEFAULT_FLOOD_RATE,
         "Lines per second one connection may send; more wait in a queue (0: no limit).",
         non_negative_float],
        ["flood-burst", None, DEFAULT_FLOOD_BURST,
         "Lines one connection may send at once before --flood-rate applies.",
         non_negative_int],
        ["flood-queue", None, DEFAULT_FLOOD_QUEUE,
         "Lines held back per connection before further ones are dropped.", non_negative_int],
        ["max-clients", None, default_max_clients(),
         "Chat connections in total; more are refused (0: no limit). The default is the "
         "open-file limit less 100.", non_negative_int],
        ["max-per-ip", None, DEFAULT_MAX_PER_IP,
         "Connections from one address, for chat and for TCP echo each (0: no limit).",
         non_negative_int],
        ["ipv6-prefix", None, DEFAULT_IPV6_PREFIX,
         "IPv6 peers count against --max-per-ip by this many leading bits (128: by address).",
         ipv6_prefix],
        ["connect-rate", None, DEFAULT_CONNECT_RATE,
         "New connections a second from one address, in bursts of up to twice that, for "
         "chat and for TCP echo each; more are refused (0: no limit).", non_negative_float],
        ["send-buffer", None, DEFAULT_SEND_BUFFER,
         "Bytes of unsent output a chat client may pile up (0: no limit).", non_negative_int],
        ["send-grace", None, DEFAULT_SEND_GRACE,
         "Seconds a client may stay over --send-buffer before it is cut off (0: none).",
         non_negative_float],
        ["kick-rejoin-delay", None, DEFAULT_KICK_REJOIN_DELAY,
         "Seconds a kicked nickname is refused from the address it was kicked from "
         "(0: let it back at once).", non_negative_float],
        ["idle-timeout", None, 0.0,
         "Close chat connections silent this long (0: never).", non_negative_float],
        ["echo-udp-rate", None, DEFAULT_UDP_RATE,
         "UDP echo datagrams per second from one address (0: no limit).", non_negative_float],
        ["echo-udp-total-rate", None, DEFAULT_UDP_TOTAL_RATE,
         "UDP echo datagrams per second in all (0: no limit).", non_negative_float],
        ["echo-udp-max-size", None, DEFAULT_UDP_MAX_SIZE,
         "Largest UDP echo datagram answered, in bytes (0: no limit).", non_negative_int],
        ["config", None, None,
         "A TOML file setting any of these options; the command line wins over it."],
        ["state", None, DEFAULT_STATE,
         "The SQLite state database: rooms, topics, history, bans, mutes "
         "('none': keep them in memory only, until a restart)."],
        ["redis", None, None,
         "Share rooms, nicks, presence and history with every chatd on this Redis: "
         "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH "
         "(README: Running several processes). The cluster's state is then in Redis, "
         "not in --state."],
        ["default-room", None, DEFAULT_ROOM, "The room everyone starts in."],
        ["announce-limit", None, DEFAULT_ANNOUNCE_LIMIT,
         "Rooms with more members than this get no join and leave notices (0: always).",
         non_negative_int],
        ["max-rooms", None, DEFAULT_MAX_ROOMS,
         "Rooms kept at most; at the limit a new room replaces the one empty longest, and "
         "is refused if none is empty (0: no limit).", non_negative_int],
        ["room-expiry", None, DEFAULT_ROOM_EXPIRY,
         "Seconds a room may stay empty before it is forgotten with its history "
         "(0: never; rooms without a topic go when their last member leaves).",
         non_negative_float],
        ["room-rate", None, DEFAULT_ROOM_RATE,
         "Rooms one address may create a minute (0: no limit).", non_negative_float],
        ["history", None, DEFAULT_HISTORY,
         "Lines of history kept per room (0: none).", non_negative_int],
        ["history-memory", None, DEFAULT_HISTORY_MEMORY,
         "Bytes of history all rooms hold together; past it the room holding the most "
         "loses its oldest lines (0: no bound).", non_negative_int],
        ["replay", None, DEFAULT_REPLAY,
         "Lines of history shown on joining a room (0: none).", non_negative_int],
        ["motd", None, None, "A text file shown to each client after the greeting."],
        ["metrics", None, METRICS_OFF,
         "Serve Prometheus metrics at /metrics on this endpoint, e.g. "
         "tcp:9100:interface=127.0.0.1 ('none': off)."],
        ["topic", None, None,
         "The default room's topic, set at start and again on SIGHUP "
         "[default: keep the saved topic]."],
    ]

    def __init__(self) -> None:
        super().__init__()
        for name, handler in self._dispatch.items():
            if isinstance(handler, usage.CoerceParameter):
                self._dispatch[name] = NamedParameter(self, handler.coerce)
        self["listen"] = []
        self["irc"] = []
        self["echo"] = []
        self["echo-udp"] = []
        self["operators"] = {}  # only the configuration file can set these
        self.argv: list[str] = []
        self.chat_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self["web"] = []
        self["web-origin"] = []
        self.web_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self.web_origins: list[Origin] = []
        self.irc_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self.echo_endpoints: list[tuple[str, IStreamServerEndpoint]] = []
        self.echo_udp_ports: list[tuple[str, int, str]] = []
        self.metrics_endpoint: IStreamServerEndpoint | None = None
        self["motd-lines"] = []  # the --motd file's text, read anew on every parse (SIGHUP)

    def opt_listen(self, description: str) -> None:
        """Chat endpoint; repeatable [default: tcp:7777]"""
        self["listen"].append(description)

    def opt_web(self, description: str) -> None:
        """Web page and WebSocket endpoint (tcp:8080, ssl:8443:...); repeatable [default: none]"""
        self["web"].append(description)

    def opt_web_origin(self, origin: str) -> None:
        """Another origin (https://HOST[:PORT]) whose pages may use --web's socket; repeatable"""
        self["web-origin"].append(origin)

    def opt_irc(self, description: str) -> None:
        """IRC client endpoint (irssi, WeeChat, HexChat); repeatable [default: none]"""
        self["irc"].append(description)

    def opt_echo(self, description: str) -> None:
        """TCP echo endpoint; repeatable [default: tcp:7007]"""
        self["echo"].append(description)

    def opt_echo_udp(self, description: str) -> None:
        """UDP echo, udp:PORT[:interface=ADDR]; repeatable [default: udp:7007]"""
        self["echo-udp"].append(description)

    def opt_version(self) -> None:
        """Print chatd's version (with Twisted's and Python's) and exit."""
        print(describe_version())
        sys.exit(0)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Applies the --config file first, then the command line, which therefore wins.

        On twistd's command line a usage error is one line and a pointer to ``--help``
        (twistd itself would print its whole usage first); elsewhere it is raised.
        """
        parent = getattr(self, "parent", None)
        twistd_options = parent if isinstance(parent, app.ServerOptions) else None
        if twistd_options is not None:
            report_daemon_start_errors_plainly(twistd_options)
        try:
            self._parse(options)
        except usage.UsageError as e:
            if twistd_options is None:
                raise
            exit_with_usage_error(str(e))

    def _parse(self, options: Sequence[str] | None) -> None:
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
        if self["web"] and importlib.util.find_spec("autobahn") is None:
            raise usage.UsageError("--web needs autobahn: pip install 'chatd[web]'")
        self.web_endpoints = [(d, _stream_endpoint("--web", d)) for d in self["web"]]
        try:
            self.web_origins = [parse_origin(o) for o in self["web-origin"]]
        except InvalidOrigin as e:
            raise usage.UsageError(f"--web-origin: {e}") from None
        self.irc_endpoints = [(d, _stream_endpoint("--irc", d)) for d in self["irc"]]
        self.echo_endpoints = [(d, _stream_endpoint("--echo", d)) for d in self["echo"]]
        self.echo_udp_ports = [(d, *parse_udp(d)) for d in self["echo-udp"]]
        if self["metrics"] != METRICS_OFF:
            self.metrics_endpoint = _stream_endpoint("--metrics", self["metrics"])
        try:
            self["default-room"] = normalize_room(self["default-room"])
        except InvalidRoomName as e:
            raise usage.UsageError(f"--default-room: {e}") from None
        state = self["state"]
        if state != MEMORY_ONLY and not os.path.isdir(os.path.dirname(state) or "."):
            raise usage.UsageError(f"--state {state!r}: no such directory")
        problem = None if state == MEMORY_ONLY else state_file_problem(state)
        if problem is not None:
            raise usage.UsageError(f"--state {state!r}: {problem}")
        self["motd-lines"] = read_motd(self["motd"]) if self["motd"] else []
        self["redis-address"] = None if self["redis"] is None else redis_address(self["redis"])
        if self["topic"] is not None:
            self["topic"] = clean_text(self["topic"]).strip()


def read_motd(path: str) -> list[str]:
    """The lines of the MOTD file, cleaned like anything a client sends."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise usage.UsageError(f"--motd {path!r}: {e.strerror}") from None
    return [clean_text(line) for line in data.decode("utf-8", "replace").splitlines()]


# Twisted listens with a backlog of 50. When a restart sends thousands of clients back at
# once, the kernel drops the SYNs past the backlog and each client retries after 1, 2, 4...
# seconds: reconnecting 19,000 clients took minutes with chatd idle. The kernel caps this
# at net.core.somaxconn.
DEFAULT_BACKLOG = 1024
_BACKLOG_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_default_backlog(description: str) -> str:
    """``description`` with ``backlog=1024`` added, unless it sets one or cannot take one."""
    kind = description.partition(":")[0].lower()
    if kind not in _BACKLOG_TYPES or "backlog=" in description:
        return description
    return f"{description}:backlog={DEFAULT_BACKLOG}"


def _stream_endpoint(option: str, description: str) -> IStreamServerEndpoint:
    """Parses an endpoint description now, so a typo is a usage error and not a traceback."""
    from twisted.internet import endpoints, reactor

    try:
        endpoint: IStreamServerEndpoint = endpoints.serverFromString(
            reactor, with_default_backlog(description)
        )
        return endpoint
    except Exception as e:  # the parsers raise many kinds: ValueError, KeyError, SSL errors
        raise usage.UsageError(f"{option} {description!r}: {e}") from None


def makeService(options: Options) -> service.MultiService:
    """The whole daemon: the chat service, its listeners and the echo services."""
    from twisted.internet import reactor

    top = service.MultiService()
    StartupLine().setServiceParent(top)
    # With --redis the bus is Redis and the cluster's state is there (README: Running
    # several processes); SQLite is the store of a single process.
    bus: RedisBus | None = None
    if options["redis-address"] is not None:
        # Imported only here: txredisapi (and OpenSSL with it) is a third of a start's
        # imports, and only --redis needs it (chatd/cluster/__init__.py).
        from chatd.cluster.bus import RedisBus
        from chatd.cluster.member import ClusterMember

        bus = RedisBus(reactor, options["redis-address"], options["history"],
                       options["default-room"])
    # Children stop in reverse order: listeners close first, then the chat says goodbye.
    # Every log line a client can cause goes through this one rate limit.
    client_log = RateLimitedLog(reactor, ipv6_prefix=options["ipv6-prefix"])
    chat = ChatService(
        reactor,
        server_name=options["server-name"],
        default_room=options["default-room"],
        history_size=options["history"],
        replay_size=options["replay"],
        store=MemoryStore() if bus else open_store(options["state"], reactor,
                                                   options["history"],
                                                   options["history-memory"]),
        bus=bus,
        motd=options["motd-lines"],
        announce_limit=options["announce-limit"],
        topic=options["topic"],
        max_rooms=options["max-rooms"],
        room_expiry=options["room-expiry"],
        room_rate=options["room-rate"],
        ipv6_prefix=options["ipv6-prefix"],
        client_log=client_log,
        connect_rate=options["connect-rate"],
        history_memory=options["history-memory"],
    )
    chat.setServiceParent(top)
    if bus is not None:
        ClusterMember(chat, bus, reactor).setServiceParent(top)  # imported with RedisBus

    rejections = client_log
    policy = Policy(options)  # every edge limit; a SIGHUP changes them here only
    policy.subscribe(lambda: setattr(client_log, "ipv6_prefix", policy.chat.ipv6_prefix))
    authenticator = OperatorAuthenticator(
        reactor, options["operators"],
        run=lambda check: threads.deferToThreadPool(
            cast(Any, reactor), cast(Any, reactor).getThreadPool(), check
        ),
        rejections=rejections,
    )
    moderator = Moderator(chat, reactor, authenticator, options["kick-rejoin-delay"],
                          options["ipv6-prefix"])
    moderator.setServiceParent(top)
    # The one command table, handed to every front-end that runs /commands.
    commands = build_command_table(chat, moderator)
    # One output batch for the whole chat side: every chat front-end and the Redis bus.
    # A read on any front-end (or a flood-gate release, or a run of messages from Redis)
    # then joins the output of every recipient on every front-end into one write each, and
    # the held chat lines are delivered once, when the one outermost batch closes. Made
    # here, not in ChatService, because it holds connections' output and the service knows
    # nothing of connections. The echo front-end is not in it: an echo goes out at once.
    output_batch = OutputBatch(chat.chat_lines)
    if bus is not None:
        bus.output_batch = output_batch
    chat_factory = ChatFactory(chat, policy.chat, commands=commands, rejections=rejections,
                               output_batch=output_batch)
    policy.subscribe(chat_factory.policy_changed)
    for description, endpoint in options.chat_endpoints:
        _listener("chat", description, endpoint, chat_factory).setServiceParent(top)
    if options.web_endpoints:
        from chatd.web.frontend import build_web  # needs autobahn: only when asked for

        site, sockets = build_web(chat, policy.chat, commands, options.web_origins,
                                  rejections, reactor, output_batch)
        policy.subscribe(sockets.policy_changed)
        for description, endpoint in options.web_endpoints:
            _listener("web", description, endpoint, site).setServiceParent(top)

    echo_factory = EchoFactory(policy.echo, rejections=rejections)
    policy.subscribe(echo_factory.policy_changed)
    # The numbers behind /stats and --metrics; read when asked for.
    stats = ServerStats(chat, reactor, {"line": chat_factory, ECHO_TCP: echo_factory},
                        rejections, authenticator)
    if options.web_endpoints:
        stats.frontends["web"] = sockets
    stats.setServiceParent(top)
    commands.stats = stats
    for description, endpoint in options.echo_endpoints:
        _listener("echo", description, endpoint, echo_factory).setServiceParent(top)

    # Every UDP echo port of ours is a refused source port for all of them (no echo loops).
    own_udp_ports = {port for _, port, _ in options.echo_udp_ports}
    for description, port, interface in options.echo_udp_ports:
        echo_udp = EchoDatagramProtocol(
            reactor,
            rate=options["echo-udp-rate"],
            total_rate=options["echo-udp-total-rate"],
            max_size=options["echo-udp-max-size"],
            rejections=rejections,
            own_ports=own_udp_ports,
        )
        stats.echo_udp.append(echo_udp)
        udp_listen = _udp_listen(cast(IReactorUDP, reactor), port, interface, echo_udp)
        ListeningService(description, udp_listen, "echo-udp").setServiceParent(top)

    if options.irc_endpoints:
        # The same service, commands, limits and per-address counts as line users.
        irc_factory = IRCFactory(chat, policy.chat, commands=commands, rejections=rejections,
                                 limits=chat_factory.limits, output_batch=output_batch)
        policy.subscribe(irc_factory.policy_changed)
        stats.frontends["irc"] = irc_factory
        for description, endpoint in options.irc_endpoints:
            _listener("irc", description, endpoint, irc_factory).setServiceParent(top)

    if options.metrics_endpoint is not None:
        from chatd.metrics import MetricsService  # prometheus_client only when asked for

        MetricsService(options["metrics"], options.metrics_endpoint, stats, reactor
                       ).setServiceParent(top)

    reloadable: list[Reconfigurable] = [chat, policy, authenticator, moderator]
    ReloadOnHangup(reactor, Reloader(lambda: _reparse(options), options, reloadable)
                   ).setServiceParent(top)
    return top


def _reparse(options: Options) -> Options:
    """The same command line parsed again, so the file is read afresh (for SIGHUP)."""
    fresh = type(options)()
    fresh.parseOptions(options.argv)
    return fresh


def _listener(
    role: str, description: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory
) -> ListeningService:
    return ListeningService(description, lambda: endpoint.listen(factory), role)


def _udp_listen(
    reactor: IReactorUDP, port: int, interface: str, echo: EchoDatagramProtocol
) -> Listen:
    def listen() -> defer.Deferred[Any]:
        try:
            return defer.succeed(reactor.listenUDP(port, echo, interface, MAX_DATAGRAM))
        except Exception:
            return defer.fail()

    return listen
