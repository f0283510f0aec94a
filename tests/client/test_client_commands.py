"""The client's command list against the server's: completion offers every command the
server has (operators' included), and nothing the server lacks but the client's own."""

from __future__ import annotations

import re

from chatd_client_harness import OPERATOR, OPERATOR_PASSWORD, ChatServer, Peer

from chatd.client.commands import CLIENT_COMMANDS, COMMANDS, SERVER_COMMANDS

# A /help line: "*** /name USAGE...  what it does" (the usage column opens with the command).
_HELP_COMMAND = re.compile(r"\*\*\* (/[a-z]+)\b")


def server_help_commands(peer: Peer) -> set[str]:
    """The command names the server's /help lists, asked as an operator."""
    peer.expect("Welcome")
    peer.send(f"/oper {OPERATOR} {OPERATOR_PASSWORD}")
    peer.expect("You are now an operator")
    peer.send("/help")
    peer.send("/who")  # handled after /help: its answer marks the end of the list
    lines = peer.lines_until("*** Users in ")
    return {m.group(1) for line in lines if (m := _HELP_COMMAND.match(line))}


def test_completion_lists_exactly_the_servers_commands(
    operator_server: ChatServer, peer_factory: type[Peer]
) -> None:
    server = server_help_commands(peer_factory(operator_server.port))
    assert {"/kick", "/ban", "/oper", "/who"} <= server  # the parse found the table
    assert set(SERVER_COMMANDS) == server
    assert set(COMMANDS) == server | set(CLIENT_COMMANDS)
    assert not server & set(CLIENT_COMMANDS)  # the client's own never shadow the server's
