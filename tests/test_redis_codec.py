"""chatd/cluster/codec.py and chatd/cluster/address.py: what travels between processes, and
the --redis URL. Pure functions, so properties over every input."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd import events
from chatd.cluster import codec
from chatd.cluster.address import InvalidRedisURL, RedisAddress, parse_redis_url
from chatd.events import Event

# Finite floats only: an event's time comes from the reactor's clock. Every str, including
# lone surrogates and NUL, must survive.
_VALUES = {str: st.text(), float: st.floats(allow_nan=False, allow_infinity=False),
           bool: st.booleans()}


def _event_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(events))
    return st.builds(cls, **{f.name: _VALUES[hints[f.name]] for f in dataclasses.fields(cls)})


EVENTS = st.one_of(*(_event_strategy(cls) for cls in typing.get_args(Event)))


def every_field(event: Any) -> tuple[type, list[str]]:
    """Type and every field, by repr: dataclass equality skips the origin (compare=False),
    and 0.0 == -0.0; neither may be lost on the way."""
    return type(event), [repr(getattr(event, f.name)) for f in dataclasses.fields(event)]


def test_every_event_type_is_known() -> None:
    assert set(codec.EVENT_TYPES) == {cls.__name__ for cls in typing.get_args(Event)}
    assert "Said" in codec.EVENT_TYPES


@given(EVENTS)
def test_round_trip_keeps_every_field(event: Any) -> None:
    data = codec.encode(event)
    assert data.isascii()
    assert every_field(codec.decode(data)) == every_field(event)


@given(st.binary())
def test_arbitrary_bytes_decode_or_say_why(data: bytes) -> None:
    try:
        event = codec.decode(data)
    except codec.UndecodableEvent:
        return
    assert type(event) in codec.EVENT_TYPES.values()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.sampled_from(sorted(codec.EVENT_TYPES)),
       st.dictionaries(st.sampled_from(["room", "nick", "text", "at", "origin", "old", "new",
                                        "sender", "recipient", "topic", "reason", "quiet", "x"]),
                       JSON_VALUES))
def test_objects_with_any_fields_decode_to_checked_events_or_say_why(
        kind: str, fields: dict[str, Any]) -> None:
    data = json.dumps({"type": kind, **fields}).encode()
    try:
        event = codec.decode(data)
    except codec.UndecodableEvent:
        return
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        assert isinstance(value, str | bool) or (type(value) is float and math.isfinite(value))


@pytest.mark.parametrize("data, why", [
    (b"[1]", "not a JSON object"),
    (b'{"type": "Nope"}', "unknown event type"),
    (b'{"room": "#a"}', "unknown event type"),
    (b'{"type": "Joined", "room": "#a"}', "without nick"),
    (b'{"type": "Joined", "room": 1, "nick": "a"}', "Joined.room is not a str"),
    (b'{"type": "Announcement", "text": ["x"]}', "not a str"),
    (b'{"type": "Joined", "room": "#a", "nick": "a", "quiet": 1}', "Joined.quiet is not a bool"),
    (b"\xff", "not JSON"),
    (b"[" * 100_000, "not JSON"),
])
def test_undecodable_says_why(data: bytes, why: str) -> None:
    with pytest.raises(codec.UndecodableEvent, match=why):
        codec.decode(data)


def _float_fields() -> list[tuple[str, str]]:
    return [(name, f.name) for name, cls in codec.EVENT_TYPES.items()
            for f in dataclasses.fields(cls)
            if typing.get_type_hints(cls, vars(events))[f.name] is float]


def test_numbers_must_be_finite_and_not_booleans() -> None:
    for kind, name in _float_fields():
        for bad in ("true", "1e400", "NaN", "-Infinity", '"1.5"', str(2**2000)):
            data = f'{{"type": "{kind}", "{name}": {bad}}}'.encode()
            with pytest.raises(codec.UndecodableEvent):
                codec.decode(data)


def test_unknown_fields_are_ignored_and_defaults_fill_missing_ones() -> None:
    """A process one version ahead may add fields; one behind may not send the newest."""
    event = codec.decode(b'{"type": "Announcement", "text": "hi", "future": [1, 2]}')
    assert event == events.Announcement("hi")


# --- --redis URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1", RedisAddress()),
    ("redis://localhost:6380/2", RedisAddress(host="localhost", port=6380, db=2)),
    ("redis://:s%40cret@h/0", RedisAddress(host="h", password="s@cret")),
    ("redis://chatd:pw@h", RedisAddress(host="h", username="chatd", password="pw")),
    ("redis://[::1]:7000", RedisAddress(host="::1", port=7000)),
    ("rediss://h?ca=/etc/ca.pem", RedisAddress(host="h", tls=True, ca="/etc/ca.pem")),
    ("rediss://h?cert=c.pem&key=k.pem",
     RedisAddress(host="h", tls=True, cert="c.pem", key="k.pem")),
    ("unix:///run/redis.sock?db=3&password=pw",
     RedisAddress(unix_path="/run/redis.sock", db=3, password="pw")),
])
def test_urls(url: str, expected: RedisAddress) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize("url, why", [
    ("http://h", "use redis://"),
    ("redis://", "no host"),
    ("redis://h:99999", "out of range"),
    ("redis://h/x", "database 'x'"),
    ("redis://h/99999999999", "database"),
    ("redis://h?ca=x", "need rediss://"),
    ("rediss://h?cert=c.pem", "both cert and key"),
    ("rediss://h?ca=a&ca=b", "given twice"),
    ("rediss://h?ca=", "empty"),
    ("unix://relative", "three slashes"),
    ("unix:///", "needs the socket's path"),
    ("redis://h#x", "fragment"),
])
def test_bad_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(InvalidRedisURL, match=why):
        parse_redis_url(url)


@given(st.text())
def test_any_text_is_a_url_or_says_why(text: str) -> None:
    try:
        address = parse_redis_url(text)
    except InvalidRedisURL:
        return
    assert 0 <= address.port <= 65535 and address.db >= 0
    assert (address.unix_path is None) == bool(address.host)


HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)


@given(host=HOSTS, port=st.integers(1, 65535), db=st.integers(0, 2**31 - 1),
       password=st.none() | st.text(min_size=1), tls=st.booleans())
def test_urls_built_from_parts_read_back(host: str, port: int, db: int,
                                         password: str | None, tls: bool) -> None:
    from urllib.parse import quote

    auth = "" if password is None else f":{quote(password, safe='')}@"
    url = f"{'rediss' if tls else 'redis'}://{auth}{host}:{port}/{db}"
    assert parse_redis_url(url) == RedisAddress(host=host, port=port, db=db,
                                                password=password, tls=tls)


def test_describe_hides_the_password() -> None:
    address = parse_redis_url("rediss://u:secret@h:1/2")
    assert address.describe() == "rediss://h:1/2"
    assert "secret" not in address.describe()
