"""A plain asyncio broadcast server (Protocol/Transport API, nothing tuned).

Speaks chatd's output shape: a welcome line, then ``<nick> text`` CRLF lines from the
other clients.  With ``--echo``/``--echo-udp`` it also serves RFC 862 echo.

    python -m bench.peers.asyncio_peer --port 7777 [--echo 7007] [--echo-udp 7007]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import ClassVar, cast

from bench.sysutil import raise_nofile

_ids = itertools.count(1)


class Chat(asyncio.Protocol):
    clients: ClassVar[set[Chat]] = set()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.nick = b""
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.nick = f"guest{next(_ids)}".encode()
        transport.write(b"*** Welcome! You are " + self.nick + b".\r\n")
        Chat.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        Chat.clients.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = (self.rest + data).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self.rest = buf.split(b"\n")
        for line in lines:
            if not line:
                continue
            out = b"<" + self.nick + b"> " + line + b"\r\n"
            for other in Chat.clients:
                if other is not self and other.transport is not None:
                    other.transport.write(out)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class EchoUDP(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def serve(port: int, echo: int, echo_udp: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Chat, "127.0.0.1", port, backlog=1024)
    if echo:
        await loop.create_server(Echo, "127.0.0.1", echo, backlog=1024)
    if echo_udp:
        await loop.create_datagram_endpoint(EchoUDP, local_addr=("127.0.0.1", echo_udp))
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--echo", type=int, default=0)
    ap.add_argument("--echo-udp", type=int, default=0)
    args = ap.parse_args()
    raise_nofile()
    asyncio.run(serve(args.port, args.echo, args.echo_udp))


if __name__ == "__main__":
    main()
