"""Thread-per-client broadcast server: the classic design chatd is compared with.

One thread per client, a lock around the client list, blocking ``sendall`` to every
other client while holding it.  It speaks chatd's output shape (a welcome line, then
``<nick> text`` CRLF lines from the others) well enough for the load generator.  With
``--echo`` it also serves RFC 862 TCP echo, one thread per connection.

    python -m bench.peers.threaded --port 7777 [--echo 7007]
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading
from collections.abc import Callable

from bench.sysutil import raise_nofile

_lock = threading.Lock()
_clients: dict[socket.socket, bytes] = {}
_ids = itertools.count(1)


def _split_lines(buf: bytes) -> tuple[list[bytes], bytes]:
    buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    *lines, rest = buf.split(b"\n")
    return lines, rest


def _client(sock: socket.socket) -> None:
    nick = f"guest{next(_ids)}".encode()
    try:
        sock.sendall(b"*** Welcome! You are " + nick + b".\r\n")
    except OSError:
        sock.close()
        return
    with _lock:
        _clients[sock] = nick
    rest = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            lines, rest = _split_lines(rest + data)
            for line in lines:
                if not line:
                    continue
                out = b"<" + nick + b"> " + line + b"\r\n"
                with _lock:
                    for other in list(_clients):
                        if other is not sock:
                            try:  # noqa: SIM105 - the plain classic loop
                                other.sendall(out)
                            except OSError:
                                pass
    except OSError:
        pass
    finally:
        with _lock:
            _clients.pop(sock, None)
        sock.close()


def _echo(sock: socket.socket) -> None:
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        sock.close()


def _serve(port: int, handler: Callable[[socket.socket], None]) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1024)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--echo", type=int, default=0, help="also serve TCP echo on this port")
    args = ap.parse_args()
    raise_nofile()
    threading.stack_size(256 * 1024)
    if args.echo:
        threading.Thread(target=_serve, args=(args.echo, _echo), daemon=True).start()
    _serve(args.port, _client)


if __name__ == "__main__":
    main()
