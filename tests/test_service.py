"""The chat service on its own: rooms, fan-out, private messages, ignore; no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from chatd.events import Acted, Event, Joined, Left, PrivateMessage, Said, TopicChanged
from chatd.history import HistoryEntry, RoomHistory
from chatd.rooms import InvalidRoomName, normalize_room
from chatd.service import ChatError, ChatService, User
from chatd.wire import LINE_FORMATTER


class CountingFormatter:
    """Records how often each event is rendered, to prove rendering happens once."""

    def __init__(self) -> None:
        self.calls: list[tuple[Event, float | None]] = []

    def format(self, event: Event, at: float | None = None) -> bytes:
        self.calls.append((event, at))
        return LINE_FORMATTER.format(event, at)


class FakeFrontEnd:
    """A front-end: one wire format, and the broadcast to its clients."""

    def __init__(self, formatter: Any) -> None:
        self.formatter = formatter

    def broadcast(self, data: bytes, clients: Any) -> None:
        for client in clients:
            client.send(data)


_FRONTENDS: dict[int, FakeFrontEnd] = {}


class FakeClient:
    def __init__(self, formatter: Any = LINE_FORMATTER) -> None:
        self.frontend = _FRONTENDS.setdefault(id(formatter), FakeFrontEnd(formatter))
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def disconnect(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def take(self) -> list[str]:
        lines = [d.decode().removesuffix("\r\n") for d in self.sent]
        self.sent = []
        return lines


@pytest.fixture
def chat() -> ChatService:
    return ChatService(Clock(), history_size=5, replay_size=2)


def connect(
    chat: ChatService, nick: str, formatter: Any = LINE_FORMATTER
) -> tuple[User, FakeClient]:
    client = FakeClient(formatter)
    user = chat.connect(client, "test")
    chat.rename(user, nick)
    return user, client


def alice_bob_and_carol_in_dev(chat: ChatService) -> list[tuple[User, FakeClient]]:
    """alice and bob in #lobby, carol in #dev, with nothing left to read."""
    people = [connect(chat, nick) for nick in ("alice", "bob", "carol")]
    chat.move(people[2][0], "#dev")
    for _, client in people:
        client.take()
    return people


def test_room_names() -> None:
    assert normalize_room("#Dev-ops_2") == "#Dev-ops_2"
    assert normalize_room("dev") == "#dev"
    assert normalize_room("#" + "a" * 32) == "#" + "a" * 32
    for bad in ["#", "#" + "a" * 33, "#a b", "#é", "##", "#a.b", ""]:
        with pytest.raises(InvalidRoomName):
            normalize_room(bad)


def test_room_history_is_bounded_and_returns_the_newest() -> None:
    history = RoomHistory(3)
    for i in range(5):
        history.append(HistoryEntry(i, Said("#r", "a", str(i))))
    assert [e.line.text for e in history.last(10)] == ["2", "3", "4"]
    assert [e.line.text for e in history.last(2)] == ["3", "4"]
    assert history.last(0) == []
    disabled = RoomHistory(0)
    disabled.append(HistoryEntry(0, Said("#r", "a", "x")))
    assert len(disabled) == 0


def test_lines_reach_only_the_room(chat: ChatService) -> None:
    (alice, ca), (_, cb), (carol, cc) = alice_bob_and_carol_in_dev(chat)
    chat.say(alice, "lobby line")
    chat.say(carol, "dev line")
    assert cb.take() == ["<alice> lobby line"]
    assert cc.take() == []
    assert ca.take() == []


def test_join_tells_old_and_new_room(chat: ChatService) -> None:
    (alice, _ca), (_, cb), (carol, cc) = alice_bob_and_carol_in_dev(chat)
    chat.move(alice, "#DEV")
    assert cb.take() == ["*** alice has left #lobby (joined #dev)"]
    assert cc.take() == ["*** alice has joined #dev"]
    assert alice.room is carol.room
    with pytest.raises(ChatError, match="already in #dev"):
        chat.move(alice, "#Dev")
    with pytest.raises(ChatError, match="invalid room name"):
        chat.move(alice, "#no way")


def test_joins_and_leaves_are_not_announced_in_rooms_over_the_limit() -> None:
    chat = ChatService(Clock(), announce_limit=3)
    (_, first), *_ = [connect(chat, nick) for nick in ("a", "b", "c")]
    assert first.take()[-1] == "*** guest3 is now known as c"
    fourth, _ = connect(chat, "d")  # the room now has 4 members: more than 3
    chat.say(fourth, "hello")
    assert first.take() == ["*** guest4 is now known as d", "<d> hello"]
    chat.disconnect(fourth, "gone")  # left a room of 4, as it joined one: not announced
    chat.disconnect(chat.users["c"], "gone too")  # left a room of 3: announced
    assert first.take() == ["*** c has left #lobby (gone too)"]


def test_announce_limit_zero_always_announces() -> None:
    chat = ChatService(Clock(), announce_limit=0)
    (_, first), *_ = [connect(chat, f"n{i}") for i in range(600)]
    assert sum("has joined" in line for line in first.take()) == 599


def test_empty_rooms_without_topic_are_forgotten_with_their_history(chat: ChatService) -> None:
    alice, _ = connect(chat, "alice")
    chat.move(alice, "#quiet")
    chat.move(alice, "#talky")
    chat.say(alice, "something")
    chat.move(alice, "#topical")
    chat.set_topic(alice, "kept")
    chat.move(alice, "#lobby")
    assert [r.name for r in chat.rooms_by_name()] == ["#lobby", "#topical"]
    chat.move(alice, "#talky")
    assert chat.history(alice.room, 10) == []


def test_rendered_once_per_variant(chat: ChatService) -> None:
    counting = CountingFormatter()
    alice, _ = connect(chat, "alice", counting)
    clients = [connect(chat, f"u{i}", counting) for i in range(10)]
    clients[0][0].timestamps = clients[1][0].timestamps = True
    counting.calls.clear()
    chat.say(alice, "hi")
    assert sorted(at is None for _, at in counting.calls) == [False, True]
    plain = [c.sent[-1] for u, c in clients if not u.timestamps]
    assert len({id(data) for data in plain}) == 1  # the very same bytes object


def test_timestamps_prefix_the_time(chat: ChatService) -> None:
    alice, _ = connect(chat, "alice")
    bob, cb = connect(chat, "bob")
    bob.timestamps = True
    cb.take()
    assert isinstance(chat.reactor, Clock)
    chat.reactor.advance(3600 * 5 + 60 * 7)
    chat.say(alice, "hi")
    import time

    expected = time.strftime("[%H:%M] ", time.localtime(chat.reactor.seconds()))
    assert cb.take() == [f"{expected}<alice> hi"]


def test_private_message_and_reply(chat: ChatService) -> None:
    alice, ca = connect(chat, "alice")
    bob, cb = connect(chat, "bob")
    carol, cc = connect(chat, "carol")
    chat.move(bob, "#elsewhere")
    for c in (ca, cb, cc):
        c.take()
    assert chat.private_message(alice, "BOB", "psst") is bob
    assert cb.take() == ["*alice* psst"]
    assert ca.take() == [] and cc.take() == []
    assert chat.reply(bob, "hi back") is alice
    assert ca.take() == ["*bob* hi back"]
    with pytest.raises(ChatError, match='no such user "dave"'):
        chat.private_message(alice, "dave", "x")
    with pytest.raises(ChatError, match="yourself"):
        chat.private_message(alice, "alice", "x")
    with pytest.raises(ChatError, match="nobody has sent you"):
        chat.reply(carol, "x")


def test_reply_to_someone_who_left(chat: ChatService) -> None:
    alice, _ = connect(chat, "alice")
    bob, _ = connect(chat, "bob")
    chat.private_message(alice, "bob", "psst")
    chat.disconnect(alice, "bye")
    with pytest.raises(ChatError, match="alice is no longer connected"):
        chat.reply(bob, "x")


def test_ignore_filters_room_lines_and_private_messages(chat: ChatService) -> None:
    alice, ca = connect(chat, "alice")
    bob, cb = connect(chat, "bob")
    _carol, cc = connect(chat, "carol")
    assert chat.ignore(bob, "Alice") is alice
    chat.rename(alice, "alice2")  # ignoring follows the person
    for c in (ca, cb, cc):
        c.take()
    chat.say(alice, "hello")
    chat.act(alice, "waves")
    chat.private_message(alice, "bob", "psst")
    assert cb.take() == []
    assert cc.take() == ["<alice2> hello", "* alice2 waves"]
    assert bob.reply_to is None  # an ignored message does not become the /reply target
    assert chat.ignored(bob) == [alice]
    with pytest.raises(ChatError, match="already ignoring"):
        chat.ignore(bob, "alice2")
    with pytest.raises(ChatError, match="yourself"):
        chat.ignore(bob, "bob")
    with pytest.raises(ChatError, match="no such user"):
        chat.ignore(bob, "nobody")
    assert chat.unignore(bob, "alice2") is alice
    with pytest.raises(ChatError, match="not ignoring"):
        chat.unignore(bob, "alice2")
    chat.say(alice, "again")
    assert cb.take() == ["<alice2> again"]


def test_topic_is_broadcast_to_the_room_and_kept(chat: ChatService) -> None:
    (alice, ca), (_, cb), (_carol, cc) = alice_bob_and_carol_in_dev(chat)
    chat.set_topic(alice, "release day")
    assert ca.take() == cb.take() == ["*** alice set the topic of #lobby to: release day"]
    assert cc.take() == []
    assert alice.room.topic == "release day" and alice.room.topic_by == "alice"


def test_history_keeps_lines_and_actions_only(chat: ChatService) -> None:
    alice, _ = connect(chat, "alice")
    for i in range(7):
        chat.say(alice, f"line {i}")
    chat.act(alice, "waves")
    room = alice.room
    assert [e.line for e in chat.history(room, 100)] == [
        *(Said("#lobby", "alice", f"line {i}") for i in range(3, 7)),
        Acted("#lobby", "alice", "waves"),
    ]
    assert [e.line.text for e in chat.replay(room)] == ["line 6", "waves"]


def test_who_and_away(chat: ChatService) -> None:
    alice, _ = connect(chat, "alice")
    bob, _ = connect(chat, "bob")
    chat.set_away(bob, "lunch")
    assert chat.who(alice.room) == [alice, bob]
    assert bob.away == "lunch"
    chat.set_back(bob)
    with pytest.raises(ChatError, match="not marked as away"):
        chat.set_back(bob)
    with pytest.raises(ChatError, match="no such room #nowhere"):
        chat.find_room("#nowhere")


def test_events_carry_the_room(chat: ChatService) -> None:
    seen: list[Event] = []
    chat.bus.subscribe(seen.append)
    alice, _ = connect(chat, "alice")
    chat.move(alice, "#dev")
    chat.set_topic(alice, "t")
    assert Joined("#lobby", "guest1") in seen
    assert Left("#lobby", "alice", "joined #dev") in seen
    assert TopicChanged("#dev", "alice", "t") in seen
    other = chat.connect(FakeClient(), "test")
    chat.private_message(alice, other.nick, "x")
    assert PrivateMessage("alice", "guest2", "x") in seen
    chat.private_message(alice, other.nick, "waves", action=True)
    assert seen[-1] == PrivateMessage("alice", "guest2", "waves", action=True)
    assert seen[-1] != PrivateMessage("alice", "guest2", "waves")
