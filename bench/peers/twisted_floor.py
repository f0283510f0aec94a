"""The least a Twisted chat server can hold per connection: the floor under chatd.

A ``Protocol`` that writes a welcome line and joins one set, with nothing else (no
parsing, no limits, no users): ``python -m bench.memory --peer twisted-floor`` measures
what Twisted's own transport, socket and reactor registration cost per idle connection,
which no change inside chatd can take back (issue 16). Whatever a client sends goes to
every client with one bare ``socket.send()`` each (no framing, no buffering, no checks):
``--broadcasts`` against it measures what one send() costs per recipient here.

    python -m bench.peers.twisted_floor --port 7777
"""

from __future__ import annotations

import argparse
import itertools
from typing import ClassVar

from twisted.internet import protocol, reactor

from bench.sysutil import raise_nofile

_ids = itertools.count(1)


class Floor(protocol.Protocol):
    clients: ClassVar[set[Floor]] = set()

    def connectionMade(self) -> None:
        self.transport.write(b"*** Welcome! You are guest%d.\r\n" % next(_ids))  # type: ignore[union-attr]
        Floor.clients.add(self)

    def dataReceived(self, data: bytes) -> None:
        for client in Floor.clients:
            client.transport.socket.send(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        Floor.clients.discard(self)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.peers.twisted_floor")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    raise_nofile()
    from twisted.internet.interfaces import IReactorCore, IReactorTCP

    factory = protocol.ServerFactory()
    factory.protocol = Floor
    IReactorTCP(reactor).listenTCP(args.port, factory, backlog=1024, interface="127.0.0.1")
    IReactorCore(reactor).run()


if __name__ == "__main__":
    main()
