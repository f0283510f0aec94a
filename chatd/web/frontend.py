"""The web front-end assembled: the socket's factory and the site that serves it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chatd.commands import CommandTable
from chatd.output import OutputBatch
from chatd.policy import EdgePolicy
from chatd.ratelog import RateLimitedLog
from chatd.service import ChatService
from chatd.web.origin import Origin
from chatd.web.site import WebSite, build_root
from chatd.web.socket import ChatSocketFactory, ChatSocketResource


def build_web(
    service: ChatService,
    policy: EdgePolicy,
    commands: CommandTable,
    origins: Iterable[Origin],
    rejections: RateLimitedLog,
    reactor: Any = None,
    output_batch: OutputBatch | None = None,
) -> tuple[WebSite, ChatSocketFactory]:
    """The site every --web endpoint serves, and the socket factory (for reloads).
    ``output_batch``: the chat side's one batch, shared with the other front-ends."""
    sockets = ChatSocketFactory(service, policy, commands=commands, origins=origins,
                                rejections=rejections, output_batch=output_batch)
    site = WebSite(build_root(ChatSocketResource(sockets)), sockets.limits, rejections,
                   reactor)
    return site, sockets
