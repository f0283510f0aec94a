"""Rooms an outsider can make (issue 10, item 2), join and leave notices of a churning
address (item 14) and the per-client log (item 3), at the service, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from chatd.errors import ChatError
from chatd.rooms import Room
from chatd.service import ChatService, User
from chatd.store import MemoryStore
from tests.test_service import FakeClient

DAY = 24 * 3600.0


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget_room(self, name: str) -> None:
        self.forgotten.append(name)


def person(chat: ChatService, address: str = "10.0.0.1") -> tuple[User, FakeClient]:
    client = FakeClient()
    return chat.connect(client, f"{address}:4000"), client


def make(chat: ChatService, user: User, name: str, topic: str | None = None) -> Room:
    room = chat.move(user, name)
    if topic is not None:
        chat.set_topic(user, topic)
    return room


@pytest.fixture
def logged() -> Any:
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_at_max_rooms_the_room_empty_longest_makes_way() -> None:
    clock = Clock()
    store = RecordingStore()
    chat = ChatService(clock, store=store, max_rooms=4, room_rate=0)
    alice, _ = person(chat)
    for n in range(3):  # #lobby plus three rooms with a topic, left empty one by one
        make(chat, alice, f"#r{n}", "kept")
        clock.advance(10)
    chat.move(alice, "#lobby")
    assert sorted(chat.rooms) == ["#lobby", "#r0", "#r1", "#r2"]
    make(chat, alice, "#new")  # one more than the limit: #r0 has been empty longest
    assert sorted(chat.rooms) == ["#lobby", "#new", "#r1", "#r2"]
    assert store.forgotten == ["#r0"]


def test_at_max_rooms_with_someone_in_each_one_more_is_refused() -> None:
    chat = ChatService(Clock(), max_rooms=3, room_rate=0)
    people = [person(chat, f"10.0.0.{n}")[0] for n in range(4)]
    make(chat, people[1], "#a")
    make(chat, people[2], "#b")
    with pytest.raises(ChatError, match=r"cannot create #c: the server has its limit of 3 "
                                        r"rooms and someone is in each; join an existing"):
        chat.move(people[3], "#c")
    assert people[3].room.name == "#lobby"  # a refused /join leaves them where they were
    chat.move(people[3], "#a")  # existing rooms can still be joined
    assert len(chat.rooms) == 3


def test_an_empty_room_with_a_topic_expires_with_its_history() -> None:
    clock = Clock()
    store = RecordingStore()
    chat = ChatService(clock, store=store, room_expiry=30 * DAY)
    chat.startService()
    alice, _ = person(chat)
    make(chat, alice, "#old", "a topic")
    chat.say(alice, "remember me")
    chat.move(alice, "#lobby")
    clock.advance(29 * DAY)
    assert "#old" in chat.rooms
    clock.advance(1.5 * DAY)
    assert "#old" not in chat.rooms
    assert store.forgotten == ["#old"]
    assert "#lobby" in chat.rooms  # the default room never goes
    chat.move(alice, "#old")
    assert chat.history(alice.room, 10) == []
    assert alice.room.topic == ""


def test_a_room_with_someone_in_it_does_not_expire() -> None:
    clock = Clock()
    chat = ChatService(clock, room_expiry=DAY)
    chat.startService()
    alice, _ = person(chat)
    make(chat, alice, "#busy", "t")
    clock.advance(10 * DAY)
    assert "#busy" in chat.rooms


def test_each_address_may_create_rooms_at_its_rate() -> None:
    clock = Clock()
    chat = ChatService(clock, room_rate=3)
    alice, _ = person(chat, "10.0.0.1")
    bob, _ = person(chat, "10.0.0.2")
    for n in range(3):
        make(chat, alice, f"#a{n}")
    with pytest.raises(ChatError, match=r"cannot create #a3: your address may create 3 "
                                        r"rooms a minute"):
        make(chat, alice, "#a3")
    make(chat, bob, "#b0")  # another address has its own allowance
    chat.move(alice, "#b0")  # joining an existing room costs nothing
    clock.advance(20)  # a minute's rate of 3: one more after 20 s
    make(chat, alice, "#a3")


def test_join_and_leave_notices_of_one_address_are_limited() -> None:
    clock = Clock()
    chat = ChatService(clock, connect_rate=5)  # notices: bursts of 5, then one per 2 s
    _, watcher = person(chat, "10.0.0.9")
    for _ in range(20):
        churner, _ = person(chat, "10.0.0.1")
        chat.disconnect(churner, "quit")
    lines = watcher.take()
    assert sum("has joined" in line for line in lines) == 5
    assert sum("has left" in line for line in lines) == 5
    clock.advance(2)
    churner, _ = person(chat, "10.0.0.1")
    chat.disconnect(churner, "quit")
    assert len(watcher.take()) == 2


def test_connect_and_leave_log_lines_are_limited_and_cut(logged: list[str]) -> None:
    chat = ChatService(Clock())
    for n in range(300):
        user, _ = person(chat, "10.0.0.1")
        chat.disconnect(user, f"{n} " + "x" * 4000)
    ours = [line for line in logged if "10.0.0.1" in line]
    assert 0 < len(ours) <= 20
    assert max(map(len, ours)) < 300
    assert sum(map(len, logged)) < 10_000


def test_a_reload_changes_the_room_limits_and_the_notice_rate() -> None:
    from chatd.tap import Options

    clock = Clock()
    chat = ChatService(clock, max_rooms=0, room_rate=0, room_expiry=0)
    chat.startService()
    alice, _ = person(chat, "10.0.0.1")
    make(chat, alice, "#kept", "topic")
    chat.move(alice, "#lobby")
    clock.advance(100)
    options = Options()
    options.parseOptions(["--state", "none", "--max-rooms", "3", "--room-rate", "1",
                          "--room-expiry", "50", "--connect-rate", "1"])
    chat.reconfigure(options)
    assert "#kept" not in chat.rooms  # empty for 100 s, over the new expiry: gone at once
    make(chat, alice, "#one")
    with pytest.raises(ChatError, match="1 rooms a minute"):
        make(chat, alice, "#two")
    _, watcher = person(chat, "10.0.0.9")
    for _ in range(3):
        chat.disconnect(person(chat, "10.0.0.2")[0], "quit")
    assert sum("has joined" in line for line in watcher.take()) == 1  # a burst of 1 now
