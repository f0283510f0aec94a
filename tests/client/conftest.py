"""Fixtures for the client's end-to-end tests (helpers in chatd_client_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chatd_client_harness import ChatServer, Peer, make_certificates


@pytest.fixture
def server() -> Iterator[ChatServer]:
    s = ChatServer()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def operator_server() -> Iterator[ChatServer]:
    """The real daemon, with an operator (chatd_client_harness.OPERATOR) configured."""
    s = ChatServer(operators=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def peer_factory() -> Iterator[type[Peer]]:
    peers: list[Peer] = []

    class TrackedPeer(Peer):
        def __init__(self, port: int) -> None:
            super().__init__(port)
            peers.append(self)

    yield TrackedPeer
    for p in peers:
        p.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ChatServer, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    s = ChatServer(tls=(cert, key))
    s.start()
    yield s, ca
    s.stop()
