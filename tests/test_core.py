"""The chat core without any front-end: the command table driven through a fake session,
users in several rooms, registration before presence, and events applied by every
process that shares a bus."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from chatd.commands import HELP_WIDTH, build_command_table, command_names
from chatd.errors import ChatError
from chatd.events import LocalEventBus, Said
from chatd.history import HistoryEntry
from chatd.rooms import Room
from chatd.service import ChatService, User
from tests.test_service import FakeClient


class FakeSession:
    """A Session (chatd/commands.py) that records what a handler answers."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.said: list[str] = []
        self.quit_reason: str | None = None

    @property
    def room(self) -> Room:
        return self.user.room

    def notice(self, text: str) -> None:
        self.said.append(f"notice: {text}")

    def error(self, text: str) -> None:
        self.said.append(f"error: {text}")

    def quit(self, reason: str) -> None:
        self.quit_reason = reason

    def history_line(self, entry: HistoryEntry) -> None:
        self.said.append(f"history: {entry.line.text}")  # type: ignore[union-attr]

    def private_sent(self, nick: str, text: str) -> None:
        self.said.append(f"sent to {nick}: {text}")


@pytest.fixture
def chat() -> ChatService:
    return ChatService(Clock())


def session_for(chat: ChatService, nick: str) -> FakeSession:
    user = chat.register(FakeClient(), "203.0.113.1:1", nick)
    chat.join(user, chat.default_room)
    return FakeSession(user)


def test_the_command_table_runs_commands_through_a_session(chat: ChatService) -> None:
    table = build_command_table(chat)
    alice, bob = session_for(chat, "alice"), session_for(chat, "bob")
    table.dispatch(alice, alice.user, "/nick alicia")
    assert alice.user.nick == "alicia"
    table.dispatch(alice, alice.user, "/msg bob hi")
    table.dispatch(alice, alice.user, "/who")
    table.dispatch(alice, alice.user, "/history 2")
    table.dispatch(alice, alice.user, "/history ²")  # a digit to isdigit(), not to int()
    table.dispatch(alice, alice.user, "/frob")
    assert alice.said == [
        "sent to bob: hi",
        "notice: Users in #lobby (2): alicia, bob",
        "notice: No history in #lobby yet",
        "error: usage: /history [#ROOM] [N], N a whole number from 1 to 100",
        "error: unknown command /frob; type /help for a list of commands",
    ]
    table.dispatch(bob, bob.user, "/quit off now")
    assert bob.quit_reason == "off now"
    table.dispatch(bob, bob.user, "/kick alicia")
    assert bob.said == ["error: this server has no operators"]


def test_help_comes_from_the_table_and_fits_80_columns(chat: ChatService) -> None:
    table = build_command_table(chat)
    lines = table.help_lines()
    assert all(len("*** " + line) <= HELP_WIDTH for line in lines), max(lines, key=len)
    for name in table.names():
        assert any(line.startswith(f"/{name}") for line in lines), name
    assert table.names() == command_names()
    assert {"oper", "kick", "ban", "join", "help"} <= set(command_names())


def test_registration_with_a_chosen_nick_comes_before_presence(chat: ChatService) -> None:
    user = chat.register(FakeClient(), "203.0.113.1:1", "Alice")
    assert user.nick == "Alice" and user.rooms == {}
    with pytest.raises(ChatError, match="not in any room"):
        chat.say(user, "hello?")
    with pytest.raises(ChatError, match="already taken"):
        chat.register(FakeClient(), "203.0.113.2:1", "alice")
    with pytest.raises(ChatError, match="invalid nickname"):
        chat.register(FakeClient(), "203.0.113.2:1", "9lives")
    guest = chat.register(FakeClient(), "203.0.113.2:1")
    assert guest.nick == "guest1"


def test_a_user_in_two_rooms(chat: ChatService) -> None:
    alice_client, bob_client, carol_client = FakeClient(), FakeClient(), FakeClient()
    alice = chat.register(alice_client, "t:1", "alice")
    bob = chat.register(bob_client, "t:2", "bob")
    carol = chat.register(carol_client, "t:3", "carol")
    chat.join(alice, "#lobby")
    chat.join(alice, "#dev")
    chat.join(bob, "#lobby")
    chat.join(carol, "#dev")
    assert [r.name for r in alice.rooms_by_name()] == ["#dev", "#lobby"]
    for client in (alice_client, bob_client, carol_client):
        client.take()
    chat.say(alice, "to lobby", chat.find_room("#lobby"))
    chat.say(alice, "to dev", chat.find_room("#dev"))
    assert bob_client.take() == ["<alice> to lobby"]
    assert carol_client.take() == ["<alice> to dev"]
    chat.rename(alice, "alicia")  # told once to each person who shares a room with her
    assert bob_client.take() == carol_client.take() == ["*** alice is now known as alicia"]
    with pytest.raises(ChatError, match="not in #quiet"):
        chat.say(bob, "x", Room("#quiet", 1))
    chat.part(alice, "#dev", "bye")
    assert carol_client.take() == ["*** alicia has left #dev (bye)"]
    assert [r.name for r in alice.rooms_by_name()] == ["#lobby"]
    chat.disconnect(alice, "gone")
    assert bob_client.take() == ["*** alicia has left #lobby (gone)"]


def test_every_process_on_a_bus_applies_every_event() -> None:
    bus = LocalEventBus()
    one = ChatService(Clock(), bus=bus)
    two = ChatService(Clock(), bus=bus)
    assert one.origin != two.origin
    here = FakeClient()
    there = FakeClient()
    alice = one.register(here, "t:1", "alice")
    bob = two.register(there, "t:2", "bob")
    one.join(alice, "#dev")
    two.join(bob, "#dev")
    assert one.who_names(one.find_room("#dev")) == ["alice", "bob"]
    here.take(), there.take()
    one.set_topic(alice, "ship it")
    one.say(alice, "hello")
    for chat in (one, two):
        room = chat.find_room("#dev")
        assert (room.topic, room.topic_by) == ("ship it", "alice")
        # Each process appended the line once: its own event is not applied twice.
        assert [e.line for e in room.history.last(10)] == [Said("#dev", "alice", "hello")]
    assert there.take() == ["*** alice set the topic of #dev to: ship it", "<alice> hello"]
    assert here.take() == ["*** alice set the topic of #dev to: ship it"]
    one.rename(alice, "alicia")
    assert two.who_names(two.find_room("#dev")) == ["alicia", "bob"]
    assert there.take() == ["*** alice is now known as alicia"]
    one.disconnect(alice, "gone")
    assert two.who_names(two.find_room("#dev")) == ["bob"]
    assert there.take() == ["*** alicia has left #dev (gone)"]


def test_a_bus_hands_back_what_it_was_given(chat: ChatService) -> None:
    seen: list[Any] = []
    chat.bus.subscribe(seen.append)
    alice = chat.register(FakeClient(), "t:1", "alice")
    chat.join(alice, "#dev")
    chat.say(alice, "x")
    assert {event.origin for event in seen} == {chat.origin}


def test_the_clients_completion_list_is_the_servers_table() -> None:
    from chatd.client.commands import SERVER_COMMANDS

    assert set(SERVER_COMMANDS) == {f"/{name}" for name in command_names()}
