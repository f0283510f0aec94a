"""chatd/remote.py: the index of other processes' users that nicks are checked against."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatd.events import (
    Acted,
    AwayChanged,
    Backfilled,
    Connected,
    Disconnected,
    Event,
    Joined,
    Left,
    PrivateMessage,
    Renamed,
    Said,
)
from chatd.remote import RemoteUsers
from tests.support import MemoryChat, take_lines


def test_by_nick_and_by_look_and_the_same_person_through_a_rename() -> None:
    remote = RemoteUsers()
    remote.joined("Alice")
    alice = remote.get("alice")  # folded
    assert alice is not None and alice.nick == "Alice"
    assert remote.look_alike("a1ice") is alice
    assert remote.get("bob") is None and remote.look_alike("bob") is None
    remote.renamed("Alice", "carol")
    assert remote.get("alice") is None and remote.look_alike("a1ice") is None
    assert remote.get("Carol") is alice and alice.nick == "carol"


def test_a_remote_user_in_two_rooms_is_known_until_they_left_both() -> None:
    remote = RemoteUsers()
    remote.joined("bob")
    remote.joined("bob")
    remote.left("bob")
    assert remote.get("bob") is not None
    remote.left("bob")
    assert remote.get("bob") is None and not remote.by_skeleton and len(remote) == 0
    remote.left("bob")  # a stray leave changes nothing


ACTIONS = st.lists(st.tuples(st.sampled_from(["add", "remove", "rename"]),
                             st.sampled_from(["amy", "Amy", "bob", "b0b", "carl"]),
                             st.sampled_from(["dan", "Dan", "eve"])), max_size=30)


@given(ACTIONS)
def test_the_skeleton_index_never_points_at_nobody(actions: list[tuple[str, str, str]]) -> None:
    remote = RemoteUsers()
    for action, nick, other in actions:
        if action == "add":
            remote.joined(nick)
        elif action == "remove":
            remote.left(nick)
        else:
            remote.renamed(nick, other)
        for key, user in remote.by_key.items():
            assert user.key == key and user.rooms > 0
        assert all(remote.by_key.get(u.key) is u for u in remote.by_skeleton.values())


# --- The chat service with users of another process (events with another origin) --------


ELSEWHERE = "another-process"


def from_elsewhere(chat: MemoryChat, *events: Event) -> None:
    """Hands ``events`` to the service as its bus would hand another process's."""
    for event in events:
        chat.service.bus.publish(event)


def test_another_process_user_holds_their_nick_and_its_look_alikes() -> None:
    chat = MemoryChat()
    proto, transport = chat.connect()
    from_elsewhere(chat, Joined("#lobby", "guest2", origin=ELSEWHERE),
                   Joined("#lobby", "alice", origin=ELSEWHERE))
    proto.dataReceived(b"/nick ALICE\r\n/nick a1ice\r\n/who\r\n")
    lines = take_lines(transport)
    assert '*** Error: nickname "ALICE" is already taken' in lines
    assert '*** Error: nickname "a1ice" looks too much like "alice", who is here' in lines
    assert "*** Users in #lobby (3): alice, guest1, guest2" in lines
    # A guest nick another process holds is skipped.
    _, second = chat.connect()
    assert "You are guest3." in take_lines(second)[0]


def test_messages_replies_away_and_ignoring_across() -> None:
    chat = MemoryChat()
    published: list[Event] = []
    chat.service.bus.subscribe(published.append)
    proto, transport = chat.connect()
    from_elsewhere(chat, Joined("#lobby", "bob", origin=ELSEWHERE),
                   AwayChanged("bob", "at lunch", origin=ELSEWHERE))
    take_lines(transport)
    proto.dataReceived(b"/msg bob hi\r\n")
    assert take_lines(transport) == ["-> *bob* hi", "*** bob is away: at lunch"]
    assert published[-1] == PrivateMessage("guest1", "bob", "hi")
    from_elsewhere(chat, PrivateMessage("bob", "guest1", "hello", origin=ELSEWHERE),
                   Renamed("bob", "robert", origin=ELSEWHERE))
    proto.dataReceived(b"/reply still there?\r\n/ignore robert\r\n")
    assert published[-1] == PrivateMessage("guest1", "robert", "still there?")
    from_elsewhere(chat, Said("#lobby", "robert", "ignored", origin=ELSEWHERE),
                   PrivateMessage("robert", "guest1", "ignored too", origin=ELSEWHERE))
    assert not [line for line in take_lines(transport) if "ignored" in line]
    # Gone from every room: gone; whoever takes the nick next is someone else, not ignored.
    from_elsewhere(chat, Left("#lobby", "robert", "quit", origin=ELSEWHERE))
    assert chat.service.remote.get("robert") is None
    proto.dataReceived(b"/reply anyone?\r\n")
    assert take_lines(transport)[-1] == "*** Error: robert is no longer connected"
    from_elsewhere(chat, Joined("#lobby", "robert", origin=ELSEWHERE),
                   Said("#lobby", "robert", "a new robert", origin=ELSEWHERE))
    assert take_lines(transport)[-1] == "<robert> a new robert"


def test_restoring_a_snapshot_and_forgetting_keep_the_index_right() -> None:
    chat = MemoryChat()
    from_elsewhere(chat, Joined("#dev", "carol", origin=ELSEWHERE))
    chat.service.restore_room("#dev", "plans", "dan", 5.0, {"dan": "dan"}, [])
    assert chat.service.remote.get("carol") is None and chat.service.remote.get("dan")
    assert chat.service.rooms["#dev"].topic == "plans"
    chat.service.forget_remote_users()
    assert len(chat.service.remote) == 0 and "#dev" in chat.service.rooms  # it has a topic


def test_a_registered_user_is_known_in_no_room_until_they_disconnect() -> None:
    remote = RemoteUsers()
    remote.connected("ivy")
    ivy = remote.get("IVY")
    assert ivy is not None and remote.look_alike("lvy") is ivy
    remote.joined("ivy")
    remote.left("ivy")  # out of their last room, still connected
    assert remote.get("ivy") is ivy
    remote.disconnected("ivy")
    assert remote.get("ivy") is None and not remote.by_skeleton
    remote.disconnected("ivy")  # a stray one changes nothing


def test_someone_elsewhere_in_no_room_holds_their_nick_and_gets_messages() -> None:
    chat = MemoryChat()
    published: list[Event] = []
    chat.service.bus.subscribe(published.append)
    proto, transport = chat.connect()
    assert published[0] == Connected("guest1")  # ours, at registration, before the join
    from_elsewhere(chat, Connected("ivy", origin=ELSEWHERE))
    proto.dataReceived(b"/nick Ivy\r\n/msg ivy hi\r\n/who\r\n")
    lines = take_lines(transport)
    assert '*** Error: nickname "Ivy" is already taken' in lines
    assert "-> *ivy* hi" in lines and published[-1] == PrivateMessage("guest1", "ivy", "hi")
    assert "*** Users in #lobby (1): guest1" in lines  # in no room: not listed in one
    from_elsewhere(chat, Disconnected("ivy", origin=ELSEWHERE))
    proto.dataReceived(b"/nick ivy\r\n")
    assert take_lines(transport) == ["*** guest1 is now known as ivy"]
    # Going: the Left of each room first, then Disconnected.
    proto.connectionLost(None)  # type: ignore[arg-type]
    assert [type(e) for e in published[-2:]] == [Left, Disconnected]
    assert published[-1] == Disconnected("ivy")


def test_lines_backfilled_elsewhere_go_to_history_not_to_the_room() -> None:
    chat = MemoryChat()
    _, transport = chat.connect()
    take_lines(transport)
    from_elsewhere(chat, Backfilled("#lobby", "alice", "said apart", at=5.0, origin=ELSEWHERE),
                   Backfilled("#lobby", "alice", "waves", at=6.0, action=True,
                              origin=ELSEWHERE))
    assert take_lines(transport) == []
    history = chat.service.rooms["#lobby"].history.last(10)
    assert [(entry.at, entry.line) for entry in history] == [
        (5.0, Said("#lobby", "alice", "said apart")), (6.0, Acted("#lobby", "alice", "waves"))]
