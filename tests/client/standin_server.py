"""A tiny stand-in chat server speaking the chatd wire spec, for the client's tests.

Run as a script: ``python standin_server.py [--port N] [--tls CERT KEY]``; it
listens on 127.0.0.1 and prints ``PORT <n>`` once listening. Supports the
greeting, join/leave notices, chat lines, /nick, /me, /who, /msg, /quit and
errors for anything else. (To be replaced by the real daemon in the e2e tests.)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import protocol
from twisted.protocols.basic import LineOnlyReceiver


class ChatUser(LineOnlyReceiver):
    delimiter = b"\n"
    factory: ChatFactory
    nick = ""

    def connectionMade(self) -> None:
        self.factory.counter += 1
        self.nick = f"guest{self.factory.counter}"
        self.factory.users.append(self)
        self.say(f"*** Welcome to chatd! You are {self.nick}. Type /help for a list of commands.")
        self.factory.broadcast(f"*** {self.nick} has joined", exclude=self)

    def connectionLost(self, reason: Any = None) -> None:
        if self in self.factory.users:
            self.factory.users.remove(self)
            how = "quit" if getattr(self, "quitting", False) else "connection lost"
            self.factory.broadcast(f"*** {self.nick} has left ({how})")

    def say(self, text: str) -> None:
        self.transport.write(text.encode("utf-8") + b"\r\n")

    def lineReceived(self, line: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.startswith("//"):
            self.factory.broadcast(f"<{self.nick}> {text[1:]}", exclude=self)
            return
        if not text.startswith("/"):
            if text.strip():
                self.factory.broadcast(f"<{self.nick}> {text}", exclude=self)
            return
        cmd, _, rest = text.partition(" ")
        if cmd == "/nick":
            new = rest.strip()
            if any(
                u.nick.casefold() == new.casefold() for u in self.factory.users if u is not self
            ):
                self.say(f'*** Error: nickname "{new}" is already taken')
                return
            old, self.nick = self.nick, new
            self.factory.broadcast(f"*** {old} is now known as {new}")
        elif cmd == "/me":
            self.factory.broadcast(f"* {self.nick} {rest}", exclude=self)
        elif cmd == "/who":
            names = ", ".join(u.nick for u in self.factory.users)
            self.say(f"*** Users online ({len(self.factory.users)}): {names}")
        elif cmd == "/msg":
            target, _, msg = rest.partition(" ")
            for u in self.factory.users:
                if u.nick.casefold() == target.casefold():
                    u.say(f"*{self.nick}* {msg}")
                    self.say(f"-> *{u.nick}* {msg}")
                    return
            self.say(f"*** Error: no such nick {target}")
        elif cmd == "/quit":
            self.quitting = True
            self.say("*** Goodbye.")
            self.transport.loseConnection()
        else:
            self.say(f"*** Error: unknown command {cmd}")


class ChatFactory(protocol.ServerFactory):
    protocol = ChatUser

    def __init__(self) -> None:
        self.users: list[ChatUser] = []
        self.counter = 0

    def broadcast(self, text: str, exclude: ChatUser | None = None) -> None:
        for u in self.users:
            if u is not exclude:
                u.say(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    from twisted.internet import reactor, ssl

    factory = ChatFactory()
    if args.tls:
        cert, key = args.tls
        with open(cert, "rb") as c, open(key, "rb") as k:
            pem = c.read() + k.read()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        port = reactor.listenSSL(args.port, factory, options, interface="127.0.0.1")
    else:
        port = reactor.listenTCP(args.port, factory, interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
