"""Events as bytes on the wire between chatd processes, and back.

An event is a JSON object: ``"type"`` names its class in chatd/events.py, and every field of
the dataclass appears under its own name. The encoding is derived from the dataclasses
themselves, so a field added to an event travels without touching this module.

Decoding is strict about what it trusts and lenient about what it may not know yet:

- the type must be a known event, every field without a default must be there, and each
  field's value must be of the field's type (``str``, ``bool``, or a finite ``float``);
- a field the event has a default for may be missing, and unknown keys are ignored, so a
  process one version behind or ahead still understands the events they share (a rolling
  restart of a cluster has both at once).

Anything else is ``UndecodableEvent``: a message on the channel from a rogue or broken
client is dropped and logged, never raised into the reactor.

JSON keeps floats exact (Python writes the shortest repr that reads back to the same
float), and ``ensure_ascii`` escapes every non-ASCII character, lone surrogates included,
so any ``str`` round-trips.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from chatd import events
from chatd.events import Event

# Every event class, by the name that travels. Taken from the Event union itself, so a new
# kind of event is known here as soon as it is one.
EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}
TYPE_KEY = "type"

# The field types an event may have; get_type_hints resolves the annotations (chatd.events
# uses ``from __future__ import annotations``, so they are strings until resolved).
_FIELD_TYPES: dict[str, list[tuple[str, type, bool]]] = {}
for _name, _cls in EVENT_TYPES.items():
    _hints = typing.get_type_hints(_cls, vars(events))
    _FIELD_TYPES[_name] = [
        (f.name, _hints[f.name],
         f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(_cls)
    ]
    for _field, _type, _ in _FIELD_TYPES[_name]:
        if _type not in (str, float, bool):
            raise TypeError(f"{_name}.{_field}: the codec carries str, float and bool fields "
                            "only")


class UndecodableEvent(ValueError):
    """Bytes that are not an event this process understands; the message says why."""


def encode(event: Event) -> bytes:
    """The event as compact ASCII JSON."""
    body: dict[str, Any] = {TYPE_KEY: type(event).__name__}
    for name, _, _ in _FIELD_TYPES[type(event).__name__]:
        body[name] = getattr(event, name)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("ascii")


def decode(data: bytes) -> Event:
    """The event ``data`` encodes, or UndecodableEvent."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise UndecodableEvent(f"not JSON: {e}") from None
    if not isinstance(body, dict):
        raise UndecodableEvent("not a JSON object")
    kind = body.get(TYPE_KEY)
    if not isinstance(kind, str) or kind not in _FIELD_TYPES:
        raise UndecodableEvent(f"unknown event type {kind!r}")
    fields = _FIELD_TYPES[kind]
    values: dict[str, Any] = {}
    for name, expected, required in fields:
        if name not in body:
            if required:
                raise UndecodableEvent(f"{kind} without {name}")
            continue
        values[name] = _checked(kind, name, expected, body[name])
    event: Event = EVENT_TYPES[kind](**values)
    return event


def _checked(kind: str, name: str, expected: type, value: Any) -> Any:
    if expected is float:
        # JSON has one kind of number: 3 may stand for 3.0. bool is an int to Python.
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int past the largest float
                number = math.inf
            if math.isfinite(number):
                return number
        raise UndecodableEvent(f"{kind}.{name} is not a finite number")
    if not isinstance(value, expected):
        raise UndecodableEvent(f"{kind}.{name} is not a {expected.__name__}")
    return value
