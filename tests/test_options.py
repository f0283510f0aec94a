"""The command line: defaults, repeatable endpoints, the UDP form, and usage errors."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest
from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.protocol import Factory, Protocol
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions

from chatd.listening import ListeningService
from chatd.tap import Options, makeService, parse_udp


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    options = parse()
    assert options["listen"] == ["tcp:7777"]
    assert options["echo"] == ["tcp:7007"]
    assert options["echo-udp"] == ["udp:7007"]
    assert options["max-line"] == 4096


def test_listen_is_repeatable_and_replaces_the_default(tmp_path: object) -> None:
    options = parse("--listen", "tcp:7000", "--listen", "tcp6:7001", "--listen",
                    "unix:/tmp/chatd-test.sock")
    assert options["listen"] == ["tcp:7000", "tcp6:7001", "unix:/tmp/chatd-test.sock"]
    assert [d for d, _ in options.chat_endpoints] == options["listen"]


def test_no_echo() -> None:
    options = parse("--no-echo")
    assert options["echo"] == [] and options["echo-udp"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--no-echo", "--echo", "tcp:7"],
        ["--listen", "tcp:notaport"],
        ["--listen", "nosuchtype:1"],
        ["--listen", "ssl:7778:privateKey=/nonexistent/key.pem"],
        ["--echo", "tcp:"],
        ["--echo-udp", "tcp:7007"],
        ["--echo-udp", "udp:"],
        ["--echo-udp", "udp:70000"],
        ["--echo-udp", "udp:7007:iface=127.0.0.1"],
        ["--echo-udp", "udp:7007:interface=localhost"],
        ["--max-line", "-1"],
        ["--max-line", "lots"],
        ["--echo-idle-timeout", "nan"],
        ["--bogus"],
    ],
)
def test_malformed_options_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(usage.UsageError):
        parse(*args)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("udp:7007", (7007, "")),
        ("udp:0", (0, "")),
        ("udp:7:interface=127.0.0.1", (7, "127.0.0.1")),
        ("udp:7007:interface=::1", (7007, "::1")),
        ("udp:7007:interface=\\:\\:1", (7007, "::1")),
    ],
)
def test_udp_form(text: str, parsed: tuple[int, str]) -> None:
    assert parse_udp(text) == parsed


def test_privileged_ports_with_dropped_privileges_parse() -> None:
    """The documented way to serve RFC 862 on port 7: twistd binds, then drops root."""
    config = ServerOptions()
    config.parseOptions(
        ["--uid=nobody", "--gid=nogroup", "chatd", "--echo", "tcp:7", "--echo-udp", "udp:7"]
    )
    assert config.subCommand == "chatd"
    assert config.subOptions["echo"] == ["tcp:7"]
    assert config.subOptions["echo-udp"] == ["udp:7"]


def test_service_tree() -> None:
    top = makeService(parse("--listen", "tcp:1", "--listen", "tcp:2", "--echo-udp", "udp:3"))
    listeners = [s.description for s in top if isinstance(s, ListeningService)]
    assert listeners == ["tcp:1", "tcp:2", "tcp:7007", "udp:3"]
    assert top.getServiceNamed("chat") is not None


def test_plugin_is_found_without_importing_the_reactor() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "names = [p.tapname for p in getPlugins(IServiceMaker)]\n"
        "assert 'chatd' in names, names\n"
        "assert 'twisted.internet.reactor' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def service_shape(top: Any) -> list[tuple[str, str | None, str | None]]:
    """Every service in the tree: its type, name and (for listeners) endpoint, in order."""
    shape = []
    for child in top:
        shape.append((type(child).__name__, child.name, getattr(child, "description", None)))
        if isinstance(child, service.MultiService):
            shape.extend(service_shape(child))
    return shape


@pytest.mark.parametrize("with_config", [False, True])
def test_tac_builds_the_same_service_as_the_plugin(
    with_config: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chatd.tac and ``twistd chatd`` (the plugin's ServiceMaker) agree on every option
    and build the same tree of services, on the defaults and on a configuration file."""
    import runpy

    from twisted.plugins.chatd_plugin import chatd as plugin

    args: list[str] = []
    monkeypatch.delenv("CHATD_CONFIG", raising=False)
    if with_config:
        config = tmp_path / "chatd.toml"
        config.write_text('listen = ["tcp:1", "tcp:2"]\nmax-line = 77\nstate = "none"\n')
        monkeypatch.setenv("CHATD_CONFIG", str(config))
        args = ["--config", str(config)]
    tac = runpy.run_path(str(Path(__file__).parent.parent / "chatd.tac"))
    options = plugin.options()
    options.parseOptions(args)
    assert dict(tac["options"]) == dict(options)
    [tac_top] = list(service.IServiceCollection(tac["application"]))
    assert service_shape(tac_top) == service_shape(plugin.makeService(options))


def test_room_and_state_defaults() -> None:
    options = parse()
    assert options["default-room"] == "#lobby"
    assert (options["history"], options["replay"]) == (100, 20)
    assert options["state"] == "chatd.sqlite3"
    assert options["motd-lines"] == []


def test_room_and_state_options(tmp_path: Path) -> None:
    motd = tmp_path / "motd"
    motd.write_bytes(b"line one\n\x1b[31mred\x1b[0m\n")
    options = parse("--default-room", "main", "--history", "0", "--replay", "5",
                    "--state", "none", "--motd", str(motd))
    assert options["default-room"] == "#main"
    assert (options["history"], options["replay"], options["state"]) == (0, 5, "none")
    assert options["motd-lines"] == ["line one", "[31mred[0m"]  # controls stripped like client text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--default-room", "#no room"], "--default-room: invalid room name"),
        (["--history", "-1"], "not a whole number, 0 or more"),
        (["--replay", "many"], "not a whole number, 0 or more"),
        (["--state", "/nonexistent/dir/chat.sqlite3"], "no such directory"),
        (["--motd", "/nonexistent/motd"], "--motd '/nonexistent/motd': No such file"),
    ],
)
def test_room_and_state_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError, match=message):
        parse(*args)


def test_state_file_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "chat.sqlite3"
    state.write_bytes(b"my notes")
    with pytest.raises(usage.UsageError, match=f"--state '{state}': not a SQLite database"):
        parse("--state", str(state))
    with pytest.raises(usage.UsageError, match=f"--state '{tmp_path}': not a file"):
        parse("--state", str(tmp_path))
    state.write_bytes(b"")  # SQLite makes an empty file a new database
    parse("--state", str(state))
    # Root may write anything, so the permission checks are driven through os.access.
    refused = {str(state)}
    monkeypatch.setattr("os.access", lambda path, mode: str(path) not in refused)
    with pytest.raises(usage.UsageError, match="not readable and writable by this user"):
        parse("--state", str(state))
    refused = {str(tmp_path)}
    with pytest.raises(usage.UsageError, match="its directory is not writable"):
        parse("--state", str(state))


class TestLimitOptions:
    def test_defaults(self) -> None:
        options = Options()
        options.parseOptions([])
        assert options["max-line"] == 4096
        assert options["flood-rate"] == 10.0
        assert options["flood-burst"] == 50
        assert options["flood-queue"] == 200
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert options["max-clients"] == soft - 100
        assert options["max-per-ip"] == 10
        assert options["send-buffer"] == 1024 * 1024
        assert options["send-grace"] == 10.0
        assert options["idle-timeout"] == 0.0
        assert options["echo-udp-rate"] == 10.0
        assert options["echo-udp-total-rate"] == 1000.0
        assert options["echo-udp-max-size"] == 1472

    @pytest.mark.parametrize(
        ("option", "value", "expected"),
        [
            ("--flood-rate", "2.5", 2.5), ("--flood-burst", "0", 0), ("--flood-queue", "7", 7),
            ("--max-clients", "0", 0), ("--max-per-ip", "3", 3),
            ("--send-buffer", "65536", 65536), ("--send-grace", "0.5", 0.5),
            ("--idle-timeout", "600", 600.0), ("--echo-udp-rate", "0", 0.0),
            ("--echo-udp-total-rate", "50", 50.0), ("--echo-udp-max-size", "512", 512),
        ],
    )
    def test_values(self, option: str, value: str, expected: float) -> None:
        options = Options()
        options.parseOptions([option, value])
        assert options[option[2:]] == expected

    @pytest.mark.parametrize(
        "option",
        ["--flood-rate", "--flood-burst", "--flood-queue", "--max-clients", "--max-per-ip",
         "--send-buffer", "--send-grace", "--idle-timeout", "--echo-udp-rate",
         "--echo-udp-total-rate", "--echo-udp-max-size"],
    )
    def test_negative_is_a_usage_error(self, option: str) -> None:
        with pytest.raises(usage.UsageError, match=r"negative|0 or more"):
            Options().parseOptions([option, "-1"])


@pytest.mark.parametrize(
    ("description", "backlog"),
    [
        ("tcp:7777", 1024),
        ("tcp:7777:interface=127.0.0.1", 1024),
        ("tcp6:7777", 1024),
        ("tcp:7777:backlog=20", 20),  # the admin's choice stands
    ],
)
def test_listeners_get_a_backlog_for_reconnect_storms(description: str, backlog: int) -> None:
    from twisted.internet.testing import MemoryReactor

    from chatd.tap import with_default_backlog

    reactor = MemoryReactor()
    endpoints.serverFromString(reactor, with_default_backlog(description)).listen(
        Factory.forProtocol(Protocol)
    )
    assert reactor.tcpServers[0][2] == backlog


def test_unix_listeners_get_a_backlog_too(tmp_path: Path) -> None:
    from twisted.internet.testing import MemoryReactor

    from chatd.tap import with_default_backlog

    reactor = MemoryReactor()
    endpoints.serverFromString(reactor, with_default_backlog(f"unix:{tmp_path}/s")).listen(
        Factory.forProtocol(Protocol)
    )
    assert reactor.unixServers[0][2] == 1024


def test_the_backlog_reaches_the_endpoints_chatd_builds() -> None:
    options = parse("--listen", "tcp:7777", "--echo", "tcp:7007:backlog=5")
    [(_, chat)] = options.chat_endpoints
    [(_, echo)] = options.echo_endpoints
    assert (chat._backlog, echo._backlog) == (1024, 5)
