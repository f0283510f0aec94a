"""The users of other chatd processes, as this process knows them from the events.

With ``--redis`` (chatd/cluster/) several processes are one chat. Each process's rooms list
the other processes' users in them (``Room.remote_members``); this index holds one
``RemoteUser`` per other process's user, registered (from their ``Connected`` event, in a
room or not) or in one of this process's rooms, by nick_key and by look-alike skeleton, so
that:

- a nick is refused when another process's user holds it or one that looks like it, with
  the same rules as for local users (chatd/text.py), in O(1);
- ``/msg``, ``/reply``, ``/ignore`` and ``/away`` work across processes. The object is the
  same for as long as the person is connected, and follows renames, so ignoring one
  follows them through renames and ends when they are gone, as for a local ``User``.

Without ``--redis`` the index stays empty.
"""

from __future__ import annotations

from chatd.text import nick_key, nick_skeleton


class RemoteUser:
    """Someone connected to another chatd process of the cluster."""

    __slots__ = ("__weakref__", "away", "connected", "key", "nick", "rooms", "skeleton",
                 "where")

    def __init__(self, nick: str, where: str = "") -> None:
        self.nick = nick
        self.key = nick_key(nick)
        self.skeleton = nick_skeleton(nick)
        self.away: str | None = None  # the reason, while away
        self.rooms = 0  # in how many of this process's rooms they are
        # Registered (a Connected event, or a claim in a snapshot): known in no room too,
        # until Disconnected.
        self.connected = False
        # Where they connect from (``Joined.where``, ``Connected.where``), for an operator's
        # ban or kick by nick.
        self.where = where


class RemoteUsers:
    """Every other process's user: registered (``Connected``), or in one of this process's
    rooms."""

    __slots__ = ("by_key", "by_skeleton")

    def __init__(self) -> None:
        self.by_key: dict[str, RemoteUser] = {}
        self.by_skeleton: dict[str, RemoteUser] = {}

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, nick: str) -> RemoteUser | None:
        return self.by_key.get(nick_key(nick))

    def look_alike(self, nick: str) -> RemoteUser | None:
        """The remote user whose nick looks like ``nick`` (the same one included)."""
        return self.by_skeleton.get(nick_skeleton(nick))

    def _known(self, nick: str, where: str = "") -> RemoteUser:
        user = self.by_key.get(nick_key(nick))
        if user is None:
            user = self.by_key[nick_key(nick)] = RemoteUser(nick, where)
            self.by_skeleton[user.skeleton] = user
        user.where = where or user.where
        return user

    def connected(self, nick: str, where: str = "") -> None:
        """``nick`` registered with another process: known until ``disconnected``."""
        self._known(nick, where).connected = True

    def disconnected(self, nick: str) -> None:
        user = self.by_key.get(nick_key(nick))
        if user is not None:
            self._drop(user)

    def joined(self, nick: str, where: str = "") -> None:
        """``nick`` is now listed in one more room."""
        self._known(nick, where).rooms += 1

    def left(self, nick: str) -> None:
        """``nick`` is listed in one room less; gone when in none, unless registered."""
        user = self.by_key.get(nick_key(nick))
        if user is None:
            return
        user.rooms -= 1
        if user.rooms <= 0 and not user.connected:
            self._drop(user)

    def renamed(self, old: str, new: str) -> None:
        user = self.by_key.get(nick_key(old))
        if user is None:
            return
        self._drop(user)
        user.nick, user.key, user.skeleton = new, nick_key(new), nick_skeleton(new)
        self.by_key[user.key] = user
        self.by_skeleton[user.skeleton] = user

    def clear(self) -> None:
        self.by_key.clear()
        self.by_skeleton.clear()

    def _drop(self, user: RemoteUser) -> None:
        if self.by_key.get(user.key) is user:
            del self.by_key[user.key]
        if self.by_skeleton.get(user.skeleton) is user:
            del self.by_skeleton[user.skeleton]
