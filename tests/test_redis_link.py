"""chatd/cluster/link.py against a real redis-server: up, down, up again; passwords; TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from chatd.cluster.address import RedisAddress, parse_redis_url
from chatd.cluster.link import RedisLink
from tests import redis_support
from tests.redis_support import RedisServer, start_redis
from tests.support import make_certificates, sleep, until

redis_server = redis_support.redis_server


class Recorder:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.messages: list[bytes] = []

    def link(self, address: RedisAddress) -> RedisLink:
        return RedisLink(reactor, address, "chatd:test", self.messages.append,
                         lambda: self.changes.append("up"),
                         lambda why: self.changes.append(f"down: {why}"))


@pytest_twisted.inlineCallbacks
def test_up_down_and_up_again_each_said_once(redis_server: RedisServer) -> Any:
    seen = Recorder()
    link = seen.link(parse_redis_url(redis_server.url))
    link.start()
    try:
        yield until(lambda: seen.changes == ["up"], "the link comes up")
        yield link.command("PUBLISH", "chatd:test", "hello")
        yield until(lambda: seen.messages == [b"hello"], "the subscription gets the message")
        redis_server.stop()
        yield until(lambda: len(seen.changes) == 2, "the link goes down")
        assert seen.changes[1].startswith("down: ")
        failed = yield link.call("return 1", [], []).addErrback(lambda f: f.value)
        assert "not connected" in str(failed)
        redis_server.start()
        yield until(lambda: len(seen.changes) == 3, "the link comes back", seconds=15)
        assert seen.changes[2] == "up"
        assert (yield link.call("return ARGV[1]", [], ["x"])) == b"x"
    finally:
        yield link.stop()


@pytest_twisted.inlineCallbacks
def test_password_and_database(tmp_path: Path) -> Any:
    server = start_redis(tmp_path, password="pa:ss@word")
    seen = Recorder()
    link = seen.link(parse_redis_url(f"redis://:pa%3Ass%40word@127.0.0.1:{server.port}/3"))
    link.start()
    try:
        yield until(lambda: seen.changes == ["up"], "the link logs in")
        yield link.command("SET", "k", "v")
        assert (yield link.command("CLIENT", "INFO")).decode().find(" db=3 ") > 0
    finally:
        yield link.stop()
        server.stop()


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_is_said_once_and_retried(tmp_path: Path) -> Any:
    server = start_redis(tmp_path, password="right")
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "chatd.cluster.link.RedisLink":
            logged.append(event["log_format"].format(**event))

    globalLogPublisher.addObserver(observe)
    seen = Recorder()
    link = seen.link(parse_redis_url(f"redis://:wrong@127.0.0.1:{server.port}"))
    link.start()
    try:
        yield until(lambda: logged, "the refusal is logged")
        # Long enough for several retries (0.5 s, 1 s, 2 s): still said once.
        yield sleep(3.6)
        assert len(logged) == 1, logged
        assert "WRONGPASS" in logged[0], logged
        # Down once (Redis is not usable from the start), never up.
        assert len(seen.changes) == 1 and "WRONGPASS" in seen.changes[0], seen.changes
    finally:
        globalLogPublisher.removeObserver(observe)
        yield link.stop()
        server.stop()


def tls_redis(directory: Path) -> tuple[RedisServer, str]:
    """A Redis serving TLS with a certificate for localhost from a fresh private CA; and
    that CA's certificate, the one a client must trust."""
    ca, cert, key = (str(path) for path in make_certificates(directory))
    server = start_redis(directory, extra=(
        "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
        "--tls-auth-clients", "no"))
    return server, ca


@pytest_twisted.inlineCallbacks
def test_tls(tmp_path: Path) -> Any:
    server, ca = tls_redis(tmp_path)
    seen = Recorder()
    link = seen.link(parse_redis_url(f"rediss://localhost:{server.tls_port}?ca={ca}"))
    link.start()
    try:
        yield until(lambda: seen.changes == ["up"], "the link comes up over TLS")
        assert (yield link.call("return 'over tls'", [], [])) == b"over tls"
    finally:
        yield link.stop()
        server.stop()


@pytest_twisted.inlineCallbacks
def test_tls_refuses_a_server_another_ca_signed(tmp_path: Path) -> Any:
    server, _ = tls_redis(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    stranger_ca = make_certificates(other)[0]
    seen = Recorder()
    link = seen.link(parse_redis_url(
        f"rediss://localhost:{server.tls_port}?ca={stranger_ca}"))
    link.start()
    try:
        yield sleep(1.5)
        assert seen.changes == []
        assert (yield link.call("return 1", [], []).addErrback(lambda f: "refused")) == "refused"
    finally:
        yield link.stop()
        server.stop()
