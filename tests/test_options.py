"""The command line: defaults, repeatable endpoints, the UDP form, and usage errors."""

from __future__ import annotations

import pytest
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


def test_tac_builds_the_same_service_as_the_plugin() -> None:
    from pathlib import Path

    from twisted.application import service

    tac = Path(__file__).parent.parent / "chatd.tac"
    application = service.loadApplication(str(tac), "python")
    top = next(iter(service.IServiceCollection(application)))
    assert [s.description for s in top if isinstance(s, ListeningService)] == [
        "tcp:7777", "tcp:7007", "udp:7007"
    ]
