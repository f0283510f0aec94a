"""``chatd-client``: the command line entry point."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
from typing import Any

from chatd.client.connection import Backoff, Connector
from chatd.client.endpoints import make_endpoint
from chatd.client.session import ChatSession

INSECURE_WARNING = (
    "chatd-client: WARNING: --insecure: the server's TLS certificate is not verified;"
    " anyone on the path can read and change this conversation."
)


def version() -> str:
    """chatd's version, from the installed package's metadata (one version for both ends)."""
    return importlib.metadata.version("chatd")


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chatd-client",
        description="Terminal client for chatd. In a terminal: a fixed input line with "
        "history and tab completion, messages scrolling above it. With stdin or stdout "
        "not a terminal: plain lines, no escape codes, exits when input ends.",
    )
    p.add_argument("--version", action="version", version=f"chatd-client {version()}")
    p.add_argument("host", nargs="?", default="localhost", help="server (default: localhost)")
    p.add_argument("port", nargs="?", type=int, default=7777, help="port (default: 7777)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument(
        "--cafile", metavar="PEM", help="trust the CA certificate(s) in this file (implies --tls)"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (implies --tls; not recommended)",
    )
    p.add_argument("--nick", metavar="NAME", help="ask for this nick on connect and reconnect")
    p.add_argument("--plain", action="store_true", help="plain line mode even in a terminal")
    p.add_argument(
        "--linger",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="plain mode: after input ends, wait this long for answers (default: 0.5)",
    )
    p.add_argument(
        "--max-retry-delay",
        type=_positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="cap on the delay between reconnection attempts (default: 30)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cafile and args.insecure:
        print("chatd-client: --cafile and --insecure contradict each other", file=sys.stderr)
        return 2
    tls = bool(args.tls or args.cafile or args.insecure)
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    interactive = not args.plain and sys.stdin.isatty() and sys.stdout.isatty()

    # The asyncio reactor must be installed before anything imports the reactor.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    try:
        endpoint = make_endpoint(
            reactor, args.host, args.port, tls=tls, cafile=args.cafile, insecure=args.insecure
        )
    except (OSError, ValueError) as e:
        print(f"chatd-client: {e}", file=sys.stderr)
        return 2
    address = f"{args.host}:{args.port}" + (" (TLS)" if tls else "")
    backoff = Backoff(cap=args.max_retry_delay)

    if interactive:
        return _run_terminal(reactor, loop, endpoint, address, args.nick, backoff, tls)
    return _run_plain(reactor, endpoint, address, args.nick, backoff, args.linger, tls)


def _run_terminal(
    reactor: Any,
    loop: asyncio.AbstractEventLoop,
    endpoint: Any,
    address: str,
    nick: str | None,
    backoff: Backoff,
    tls: bool,
) -> int:
    from twisted.internet.defer import Deferred, DeferredList

    from chatd.client.tui import TerminalUI

    ui = TerminalUI()
    session = ChatSession(ui, reactor, address, nick=nick, who_on_connect=True)
    ui.session = session
    done: list[Deferred[Any]] = []

    def begin() -> None:
        session.start(Connector(endpoint, reactor, session, backoff, tls=tls))
        prompt = Deferred.fromFuture(loop.create_task(ui.run(session)))
        done.append(prompt)
        prompt.addBoth(lambda _: reactor.stop())

    def before_shutdown() -> Deferred[Any] | None:
        # Ctrl-C arrives as a key press while the prompt runs; this is for signals
        # (SIGTERM, SIGINT between prompts): close the prompt and the connection.
        if session.finished.called and all(d.called for d in done):
            return None
        ui.stop()
        return DeferredList([session.quit(), *done])

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    return session.exit_code


def _run_plain(
    reactor: Any,
    endpoint: Any,
    address: str,
    nick: str | None,
    backoff: Backoff,
    linger: float,
    tls: bool,
) -> int:
    from chatd.client.pipe import LineReader, PipeUI

    session: ChatSession

    def broken_pipe() -> None:
        session.quit()

    ui = PipeUI(sys.stdout, sys.stderr, broken_pipe)
    session = ChatSession(ui, reactor, address, nick=nick, queue_offline=True, linger=linger)
    reader = LineReader(reactor.callFromThread, session.user_input, session.end_of_input)

    def begin() -> None:
        session.start(Connector(endpoint, reactor, session, backoff, tls=tls))
        reader.start()
        session.finished.addBoth(lambda _: reactor.stop())

    def before_shutdown() -> Any:
        return None if session.finished.called else session.quit()

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
