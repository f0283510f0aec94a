"""The web socket's JSON shapes: every event, every reply, and hostile text kept as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chatd.events import (
    Acted,
    Announcement,
    AwayChanged,
    Backfilled,
    Banned,
    Connected,
    Disconnected,
    Event,
    Joined,
    Kicked,
    Left,
    Muted,
    PrivateMessage,
    Renamed,
    RoomNotice,
    Said,
    TopicChanged,
    Unbanned,
    Unmuted,
)
from chatd.history import HistoryEntry
from chatd.text import clean_text
from chatd.web import json_wire
from chatd.web.json_wire import JSON_FORMATTER

HOSTILE = '<img src=x onerror="alert(1)"></script>"\'&\\'


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data.decode("utf-8"))
    assert isinstance(message, dict)
    return message


EVERY_EVENT: list[tuple[Event, dict[str, Any]]] = [
    (Said("#lobby", "alice", "hi"), {"type": "said", "room": "#lobby", "nick": "alice",
                                     "text": "hi"}),
    (Acted("#lobby", "alice", "waves"), {"type": "acted", "room": "#lobby", "nick": "alice",
                                         "text": "waves"}),
    (PrivateMessage("alice", "bob", "psst"), {"type": "private", "from": "alice", "to": "bob",
                                              "text": "psst"}),
    (PrivateMessage("alice", "bob", "winks", action=True),
     {"type": "private", "from": "alice", "to": "bob", "text": "winks", "action": True}),
    (Joined("#dev", "bob"), {"type": "joined", "room": "#dev", "nick": "bob"}),
    (Left("#dev", "bob", "bye", quit=True), {"type": "left", "room": "#dev", "nick": "bob",
                                             "reason": "bye", "quit": True}),
    (Left("#dev", "bob", "parted"), {"type": "left", "room": "#dev", "nick": "bob",
                                     "reason": "parted", "quit": False}),
    (Renamed("guest1", "carol"), {"type": "renamed", "old": "guest1", "new": "carol"}),
    (TopicChanged("#dev", "bob", "release"), {"type": "topic", "room": "#dev", "nick": "bob",
                                              "topic": "release"}),
    (Announcement("bye"), {"type": "announcement", "text": "bye"}),
    (RoomNotice("#dev", "bob was muted"), {"type": "room_notice", "room": "#dev",
                                           "text": "bob was muted"}),
    (AwayChanged("bob", "lunch"), {"type": "away", "nick": "bob", "reason": "lunch"}),
    (Connected("bob"), {"type": "connected", "nick": "bob"}),
    (Disconnected("bob"), {"type": "disconnected", "nick": "bob"}),
    (Backfilled("#dev", "bob", "hi"), {"type": "backfilled", "room": "#dev", "nick": "bob",
                                       "text": "hi", "action": False}),
    (Kicked("bob", "alice", "spam", "#dev #lobby"), {"type": "kicked", "nick": "bob",
                                                     "by": "alice", "reason": "spam",
                                                     "rooms": ["#dev", "#lobby"]}),
    (Kicked("bob", "alice", "spam", "#dev", room="#dev"), {"type": "kicked", "room": "#dev",
                                                           "nick": "bob", "by": "alice",
                                                           "reason": "spam"}),
    (Banned("203.0.113.0/24", "spam", "root", "alice", 5.0), {"type": "banned",
                                                             "network": "203.0.113.0/24"}),
    (Unbanned("203.0.113.0/24"), {"type": "unbanned", "network": "203.0.113.0/24"}),
    (Muted("bob", "bob", "", "root", 5.0), {"type": "muted", "nick": "bob"}),
    (Unmuted("bob"), {"type": "unmuted", "nick": "bob"}),
]


def test_every_event_has_its_documented_shape() -> None:
    for event, shape in EVERY_EVENT:
        assert decode(JSON_FORMATTER.format(event)) == shape


def test_every_event_type_in_the_union_is_covered() -> None:
    covered = {type(event) for event, _ in EVERY_EVENT}
    # Left both ways: a quit (gone from chatd) and a part (gone from the room only)
    assert {e.quit for e, _ in EVERY_EVENT if isinstance(e, Left)} == {True, False}
    assert covered == set(Event.__args__)  # type: ignore[attr-defined]


def test_the_documented_shapes_are_the_ones_in_docs_web_md() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "web.md").read_text(encoding="utf-8")
    for event, _ in EVERY_EVENT:
        assert json_wire.encode(json_wire.describe(event)).decode() in doc, event


def test_a_time_is_added_when_the_service_gives_one() -> None:
    message = decode(JSON_FORMATTER.format(Said("#lobby", "alice", "hi"), at=1700000000.12345))
    assert message["at"] == 1700000000.123


def test_replies_to_one_connection() -> None:
    assert decode(json_wire.notice("Welcome")) == {"type": "notice", "text": "Welcome"}
    assert decode(json_wire.error("no", at=5.0)) == {"type": "error", "text": "no", "at": 5.0}
    assert decode(json_wire.private_sent("bob", "hi")) == {"type": "sent", "to": "bob",
                                                           "text": "hi"}
    assert decode(json_wire.state("alice", "#lobby", "chatd")) == {
        "type": "state", "nick": "alice", "room": "#lobby", "server": "chatd"}
    assert decode(json_wire.members("#lobby", [("alice", False), ("bob", True)])) == {
        "type": "members", "room": "#lobby",
        "members": [{"nick": "alice", "away": False}, {"nick": "bob", "away": True}]}
    assert decode(json_wire.rooms([("#lobby", 2, None), ("#dev", 1, "release")])) == {
        "type": "rooms", "rooms": [{"name": "#lobby", "users": 2, "topic": None},
                                   {"name": "#dev", "users": 1, "topic": "release"}]}


def test_a_history_line_is_the_event_with_its_time() -> None:
    entry = HistoryEntry(1700000000.0, Acted("#lobby", "alice", "waves"))
    assert decode(json_wire.history_line(entry)) == {
        "type": "acted", "room": "#lobby", "nick": "alice", "text": "waves",
        "at": 1700000000.0, "history": True}


def test_hostile_text_stays_a_string_and_is_never_escaped_into_html() -> None:
    message = decode(JSON_FORMATTER.format(Said("#lobby", "mallory", HOSTILE)))
    # Exactly what was said: escaping for HTML is the page's business (it never parses it).
    assert message["text"] == HOSTILE


@given(st.text(max_size=200))
def test_any_cleaned_text_round_trips_as_one_message(raw: str) -> None:
    text = clean_text(raw)
    data = JSON_FORMATTER.format(Said("#lobby", "alice", text))
    # One message: no raw line break or control character survives to the wire.
    assert not any(b < 0x20 for b in data)
    assert decode(data)["text"] == text
