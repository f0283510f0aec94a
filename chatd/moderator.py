"""What operators do to the chat: kick, ban, mute, wall and rename, announced and audited.

The ``Moderator`` sits beside the chat service: it holds the bans and mutes in force, tells
the service whom to refuse at connect and whose lines to refuse, keeps every change in the
chat service's store (the ``bans`` and ``mutes`` tables), and writes every operator action
to the ``chatd.audit`` log.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from chatd.errors import ChatError
from chatd.events import Announcement, Event, RoomNotice
from chatd.moderation import (
    Ban,
    BanList,
    Mute,
    MuteList,
    audit_action,
    format_duration,
    format_time,
    parse_ban_target,
    peer_host,
)
from chatd.operators import OperatorAuthenticator
from chatd.service import ChatService, User
from chatd.text import InvalidNickname, nick_key, normalize_nick

_SAVE_BAN = "INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?, ?)"
_DELETE_BAN = "DELETE FROM bans WHERE network = ?"
_SAVE_MUTE = "INSERT OR REPLACE INTO mutes VALUES (?, ?, ?, ?, ?, ?)"
_DELETE_MUTE = "DELETE FROM mutes WHERE key = ?"
_IN_FORCE = "WHERE expires IS NULL OR expires > ?"


def tell(user: User, event: Event) -> None:
    """Sends one event to one user only, in that user's wire format."""
    user.client.send(user.client.frontend.formatter.format(event))


class Moderator(service.Service):
    """Bans, mutes and operator actions for one chat service."""

    def __init__(
        self,
        chat: ChatService,
        clock: IReactorTime,
        authenticator: OperatorAuthenticator,
    ) -> None:
        self.setName("moderation")
        self.chat = chat
        self.clock = clock
        self.authenticator = authenticator
        # The chat service's store: one writer on the state file, opened (and these
        # tables loaded) when the chat service starts.
        self.store = chat.store
        self.bans = BanList(clock)
        self.mutes = MuteList(clock)
        self.store.on_open(self._load)
        chat.admission_checks.append(self.check_admission)
        chat.speech_checks.append(self.check_speech)

    def _load(self, db: sqlite3.Connection) -> None:
        """Takes in the bans and mutes still in force; the expired ones are deleted."""
        now = self.clock.seconds()
        for network, reason, by, created, expires in db.execute(
                f"SELECT network, reason, by, created, expires FROM bans {_IN_FORCE}", (now,)):
            self.bans.add(Ban(ipaddress.ip_network(network), reason, by, created, expires))
        for row in db.execute(
                f"SELECT key, nick, host, by, created, expires FROM mutes {_IN_FORCE}", (now,)):
            self.mutes.add(Mute(*row))
        self.store.execute("DELETE FROM bans WHERE expires <= ?", (now,))
        self.store.execute("DELETE FROM mutes WHERE expires <= ?", (now,))

    # --- Checks the chat service runs --------------------------------------------------------

    def check_admission(self, peer: str) -> None:
        ban = self.bans.match(peer_host(peer))
        if ban is not None:
            raise ChatError(f"you are banned from this server: {ban.reason} "
                            f"({ban.expiry(self.clock.seconds())})")

    def check_speech(self, user: User) -> None:
        mute = self.mutes.match(user.key, user.host)
        if mute is not None:
            left = ("" if mute.expires is None
                    else f" for {format_duration(mute.expires - self.clock.seconds())} more")
            raise ChatError(f"you are muted{left}; your line was not sent")

    # --- Becoming an operator ----------------------------------------------------------------

    def oper(self, user: User, args: str, reply: Callable[[str], None],
             fail: Callable[[str], None]) -> defer.Deferred[Any]:
        """Fires once the check is over and its reply has been given."""
        name, _, password = args.partition(" ")
        if not name or not password:
            raise ChatError("usage: /oper NAME PASSWORD")
        address = user.host or user.peer

        def granted(operator: str) -> None:
            if self.chat.users.get(user.key) is user:  # still connected
                user.operator = operator
                reply(f"You are now an operator ({operator}).")

        def refused(failure: Any) -> None:
            failure.trap(ChatError)
            if self.chat.users.get(user.key) is user:
                fail(str(failure.value))

        return self.authenticator.login(address, name, password).addCallbacks(granted, refused)

    def _operator(self, user: User) -> str:
        if user.operator is None:
            raise ChatError("only operators can do that; see /oper")
        return user.operator

    def _target(self, nick: str) -> User:
        try:
            target = self.chat.users.get(nick_key(normalize_nick(nick)))
        except InvalidNickname:
            target = None
        if target is None:
            raise ChatError(f'no one called "{nick}" is here')
        return target

    # --- Operator actions --------------------------------------------------------------------

    def kick(self, op: User, nick: str, reason: str) -> None:
        operator = self._operator(op)
        target = self._target(nick)
        reason = reason or "no reason given"
        self._remove(target, f"kicked by {op.nick}: {reason}")
        audit_action(operator, "kicked", nick=target.nick, peer=target.peer, reason=reason)

    def _remove(self, target: User, why: str) -> None:
        tell(target, Announcement(f"You have been {why}"))
        self.chat.disconnect(target, why)  # the room sees "nick has left #room (why)"
        target.client.disconnect()

    def ban(self, op: User, what: str, seconds: int | None, reason: str) -> str:
        """Bans an address or block, or a user's address when ``what`` is a nickname."""
        operator = self._operator(op)
        reason = reason or "no reason given"
        try:
            network = parse_ban_target(what)
            nick = None
        except ValueError:
            target = self._target(what)
            host = target.host
            if host is None:
                raise ChatError(f"{target.nick} has no IP address to ban") from None
            network, nick = parse_ban_target(host), target.nick
        now = self.clock.seconds()
        ban = Ban(network, reason, operator, now, None if seconds is None else now + seconds)
        self.bans.add(ban)
        self.store.execute(_SAVE_BAN, (str(ban.network), ban.reason, ban.by, ban.created,
                                       ban.expires))
        audit_action(operator, "banned", target=str(network), nick=nick, reason=reason,
                     expiry=ban.expiry(now))
        length = "for good" if seconds is None else f"for {format_duration(seconds)}"
        why = f"banned by {op.nick} {length}: {reason}"
        for user in list(self.chat.users.values()):
            if user is not op and self.bans.match(user.host) is ban:
                self._remove(user, why)
        return f"Banned {network} ({ban.expiry(now)})."

    def unban(self, op: User, what: str) -> str:
        operator = self._operator(op)
        try:
            network = parse_ban_target(what)
        except ValueError as e:
            raise ChatError(str(e)) from None
        if self.bans.remove(network) is None:
            raise ChatError(f"{network} is not banned; see /bans")
        self.store.execute(_DELETE_BAN, (str(network),))
        audit_action(operator, "unbanned", target=str(network))
        return f"Unbanned {network}."

    def list_bans(self, op: User) -> list[str]:
        self._operator(op)
        now = self.clock.seconds()
        bans = self.bans.current()
        lines = [f"Bans ({len(bans)}):"]
        lines += [f"{b.network} by {b.by} on {format_time(b.created)}: {b.reason} "
                  f"({b.expiry(now)})" for b in bans]
        return lines

    def mute(self, op: User, nick: str, seconds: int | None) -> None:
        operator = self._operator(op)
        target = self._target(nick)
        now = self.clock.seconds()
        mute = Mute(target.key, target.nick, target.host, operator, now,
                    None if seconds is None else now + seconds)
        self.mutes.add(mute)
        self.store.execute(_SAVE_MUTE, (mute.key, mute.nick, mute.host, mute.by, mute.created,
                                        mute.expires))
        audit_action(operator, "muted", nick=target.nick, peer=target.peer,
                     duration=format_duration(seconds) if seconds else "permanent")
        length = "" if seconds is None else f" for {format_duration(seconds)}"
        self._announce(op, target, f"{target.nick} has been muted by {op.nick}{length}")

    def unmute(self, op: User, nick: str) -> None:
        operator = self._operator(op)
        try:
            key = nick_key(normalize_nick(nick))
        except InvalidNickname as e:
            raise ChatError(str(e)) from None
        online = self.chat.users.get(key)
        host = online.host if online is not None else None
        lifted = [m for m in self.mutes.current() if m.key == key or (host and m.host == host)]
        if not lifted:
            raise ChatError(f'"{nick}" is not muted')
        for mute in lifted:
            self.mutes.remove(mute.key)
            self.store.execute(_DELETE_MUTE, (mute.key,))
        audit_action(operator, "unmuted", nick=nick)
        self._announce(op, online, f"{lifted[0].nick} is no longer muted")

    def _announce(self, op: User, target: User | None, text: str) -> None:
        """Tells the target's room (where it happened) and the operator, wherever they are."""
        rooms = [] if target is None else target.rooms_by_name()
        for room in rooms:
            self.chat.publish(RoomNotice(room.name, text))
        if not any(op in room.members for room in rooms):
            tell(op, Announcement(text))

    def wall(self, op: User, text: str) -> None:
        operator = self._operator(op)
        audit_action(operator, "sent a wall", text=text)
        self.chat.publish(Announcement(f"[wall from {op.nick}] {text}"))

    def force_rename(self, op: User, nick: str, new: str) -> None:
        operator = self._operator(op)
        target = self._target(nick)
        old = target.nick
        self.chat.rename(target, new)  # everyone sees "old is now known as new"
        tell(target, Announcement(f"{op.nick} has renamed you to {target.nick}"))
        audit_action(operator, "renamed", nick=old, new=target.nick)
