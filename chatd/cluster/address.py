"""``--redis URL``: where the cluster's Redis is, and how to log in to it.

Accepted forms (the ones redis-cli and redis-py accept, minus what chatd has no use for)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
    rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB][?ca=CA.pem][&cert=CERT.pem&key=KEY.pem]
    unix:///PATH/TO/redis.sock[?db=DB][&password=PASSWORD][&user=USER]

``rediss`` is TLS: the server's certificate must be valid for HOST and signed by a CA the
system trusts, or by ``ca``; ``cert`` and ``key`` give a client certificate, for servers
that ask for one (redis-server does, unless ``tls-auth-clients no``). The password may be
percent-encoded (``%40`` for ``@``). PORT defaults to 6379 and DB to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.python import usage

DEFAULT_PORT = 6379
MAX_DB = 2**31 - 1  # Redis's own bound on a database index
_TLS_PARAMETERS = frozenset({"ca", "cert", "key"})
_UNIX_PARAMETERS = frozenset({"db", "password", "user"})


class InvalidRedisURL(ValueError):
    """A --redis value chatd cannot use; the message says what is wrong with it."""


@dataclass(frozen=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    unix_path: str | None = None

    def describe(self) -> str:
        """The address without the password, for logs and operators."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path} db {self.db}"
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """The address ``url`` names, or InvalidRedisURL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidRedisURL(f"{e}") from None
    if parts.fragment:
        raise InvalidRedisURL("a Redis URL has no #fragment")
    query = _query(parts.query)
    if parts.scheme == "unix":
        return _unix(parts.netloc, parts.path, query)
    if parts.scheme not in ("redis", "rediss"):
        raise InvalidRedisURL("use redis://, rediss:// (TLS) or unix://")
    tls = parts.scheme == "rediss"
    allowed = _TLS_PARAMETERS if tls else frozenset()
    if unknown := set(query) - allowed:
        raise InvalidRedisURL(f"unknown parameter {sorted(unknown)[0]!r}"
                              + ("" if tls else " (the TLS ones need rediss://)"))
    if not parts.hostname:
        raise InvalidRedisURL("no host")
    if (query.get("cert") is None) != (query.get("key") is None):
        raise InvalidRedisURL("give both cert and key, or neither")
    return RedisAddress(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=_db(parts.path.removeprefix("/")),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        ca=query.get("ca"),
        cert=query.get("cert"),
        key=query.get("key"),
    )


def _unix(netloc: str, path: str, query: dict[str, str]) -> RedisAddress:
    if netloc:
        raise InvalidRedisURL("unix:///PATH: the path must be absolute, with three slashes")
    if not path.startswith("/") or path == "/":
        raise InvalidRedisURL("unix:///PATH needs the socket's path")
    if unknown := set(query) - _UNIX_PARAMETERS:
        raise InvalidRedisURL(f"unknown parameter {sorted(unknown)[0]!r}")
    return RedisAddress(unix_path=unquote(path), db=_db(query.get("db", "0")),
                        password=query.get("password"), username=query.get("user"))


def _query(text: str) -> dict[str, str]:
    try:
        values = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as e:
        raise InvalidRedisURL(f"bad query string: {e}") from None
    for name, given in values.items():
        if len(given) > 1:
            raise InvalidRedisURL(f"{name!r} given twice")
        if not given[0]:
            raise InvalidRedisURL(f"{name!r} is empty")
    return {name: given[0] for name, given in values.items()}


def _db(text: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_DB:
        raise InvalidRedisURL(f"database {text!r} is not a number from 0 to {MAX_DB}")
    return int(text)


def redis_address(url: str) -> RedisAddress:
    """``--redis URL`` parsed, or a UsageError saying what is wrong (never echoing the URL,
    which may hold a password)."""
    try:
        return parse_redis_url(url)
    except InvalidRedisURL as e:
        raise usage.UsageError(f"--redis: {e}") from None
