"""chatd/reuseport.py: two listeners on one port, and the kernel spreads the connections."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, error, protocol, reactor

from chatd.reuseport import ReusePortEndpoint
from tests.support import until


class Counting(protocol.Factory):
    def __init__(self) -> None:
        self.accepted = 0

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        self.accepted += 1
        return protocol.Protocol()


@pytest_twisted.inlineCallbacks
def test_two_listeners_share_one_port_and_both_get_connections() -> Any:
    first, second = Counting(), Counting()
    # The first listener is given a port by the system; the second joins it.
    listening = [(yield endpoints.serverFromString(
        reactor, "reuseport:0:interface=127.0.0.1").listen(first))]
    port = listening[0].getHost().port
    listening.append((yield endpoints.serverFromString(
        reactor, f"reuseport:{port}:interface=127.0.0.1").listen(second)))
    clients = []
    try:
        # A listener without SO_REUSEPORT may not join them.
        with pytest.raises(error.CannotListenError):
            yield endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(
                Counting())
        for _ in range(40):
            clients.append((yield endpoints.connectProtocol(
                endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                protocol.Protocol())))
        yield until(lambda: first.accepted + second.accepted == 40, "all 40 accepted")
        # Spread by a hash of the source port: all 40 on one side has odds of 2**-39.
        assert first.accepted and second.accepted
    finally:
        for client in clients:
            client.transport.abortConnection()
        yield defer.DeferredList([p.stopListening() for p in listening])


@pytest.mark.parametrize("description, why", [
    ("reuseport:x", "port 'x'"),
    ("reuseport:70000", "port '70000'"),
    ("reuseport:7777:backlog=0", "backlog '0'"),
])
def test_bad_descriptions_say_why(description: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        endpoints.serverFromString(reactor, description)


@pytest_twisted.inlineCallbacks
def test_ipv6_interface() -> Any:
    port = yield ReusePortEndpoint(reactor, 0, "::1").listen(Counting())
    try:
        assert port.getHost().type == "TCP" and port.getHost().host == "::1"
    finally:
        yield port.stopListening()
