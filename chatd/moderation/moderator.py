"""What operators do to the chat: kick, ban, mute, wall and rename, announced and audited.

The ``Moderator`` sits beside the chat service: it holds the bans, mutes and recent kicks
in force, tells the service whom to refuse at connect, whose lines to refuse and which
nicknames to refuse from where, keeps bans and mutes in the store (its typed methods), and
writes every operator action to the ``chatd.audit`` log. It acts on users only through the
service's methods (``find_user``, ``notice``, ``remove``, ``force_rename``): it never
touches a connection or a table itself.

On a shared address (NAT, a LAN party, every test client on 127.0.0.1) a rule made against
one user hits that user only: ``/mute NICK`` mutes the nicknames, ``/ban NICK`` refuses new
connections from the address but disconnects that user alone, ``/kick`` refuses the nick
from that address for ``--kick-rejoin-delay`` seconds. For an IPv6 user "that address" is
their ``--ipv6-prefix`` block (a /64 by default), which one person usually holds whole.
``/ban ADDRESS|CIDR`` is the explicit way to remove everyone there. The operator's own
connection is never hit by a rule they set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from chatd.addresses import DEFAULT_IPV6_PREFIX, count_key, peer_host
from chatd.commands import plural
from chatd.errors import ChatError, Refused
from chatd.events import Announcement, RoomNotice
from chatd.moderation.operators import OperatorAuthenticator
from chatd.moderation.rules import (
    Ban,
    BanList,
    Mute,
    MuteList,
    RecentKicks,
    audit_action,
    format_duration,
    format_time,
    parse_ban_target,
)
from chatd.service import ChatService, User
from chatd.text import InvalidNickname, nick_key, normalize_nick

DEFAULT_KICK_REJOIN_DELAY = 30.0


class Moderator(service.Service):
    """Bans, mutes, kicks and operator actions for one chat service."""

    reloadable_options = frozenset({"kick-rejoin-delay", "ipv6-prefix"})

    def __init__(
        self,
        chat: ChatService,
        clock: IReactorTime,
        authenticator: OperatorAuthenticator,
        kick_rejoin_delay: float = DEFAULT_KICK_REJOIN_DELAY,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.setName("moderation")
        self.chat = chat
        self.clock = clock
        self.authenticator = authenticator
        self.kick_rejoin_delay = kick_rejoin_delay
        # An IPv6 user usually holds a whole block: a ban or kick by nick covers it.
        self.ipv6_prefix = ipv6_prefix
        # The chat service's store: one writer on the state file, opened by the chat service.
        self.store = chat.store
        self.bans = BanList(clock)
        self.mutes = MuteList(clock)
        self.kicks = RecentKicks(clock)
        chat.admission_checks.append(self.check_admission)
        chat.speech_checks.append(self.check_speech)
        chat.nick_checks.append(self.check_nick)

    def reconfigure(self, options: Mapping[str, Any]) -> None:
        self.kick_rejoin_delay = options["kick-rejoin-delay"]
        self.ipv6_prefix = options["ipv6-prefix"]

    def _where(self, host: str | None) -> str | None:
        """Where a user connects from, as a rule by nick keys it: the IPv4 address, or the
        IPv6 address's ``--ipv6-prefix`` block."""
        return None if host is None else count_key(host, self.ipv6_prefix)

    def startService(self) -> None:
        """Takes in the saved bans and mutes still in force (the chat service, started
        first, has opened the store); the expired ones are deleted."""
        super().startService()
        now = self.clock.seconds()
        saved = self.store.load_moderation()
        for ban in saved.bans:
            if ban.active(now):
                self.bans.add(ban)
            else:
                self.store.delete_ban(str(ban.network))
        for mute in saved.mutes:
            if mute.active(now):
                self.mutes.add(mute)
            else:
                self.store.delete_mute(mute.key)

    # --- Checks the chat service runs --------------------------------------------------------

    def check_admission(self, peer: str) -> None:
        ban = self.bans.match(peer_host(peer))
        if ban is not None:
            raise ChatError(f"you are banned from this server: {ban.reason} "
                            f"({ban.expiry(self.clock.seconds())})")

    def check_speech(self, user: User) -> str | None:
        mute = self.mutes.match(user.key)
        if mute is None or user.operator == mute.by:  # never silenced by one's own rule
            return None
        return f"you are muted{mute.remaining(self.clock.seconds())}"

    def check_nick(self, host: str | None, key: str) -> None:
        left = self.kicks.seconds_left(self._where(host), key)
        if left:
            raise Refused(f"you were kicked from this server; you may reconnect in "
                          f"{plural(left, 'second')}", "kicked a moment ago")

    # --- Becoming an operator ----------------------------------------------------------------

    def oper(self, user: User, args: str, reply: Callable[[str], None],
             fail: Callable[[str], None]) -> defer.Deferred[Any]:
        """Fires once the check is over and its reply has been given."""
        name, _, password = args.partition(" ")
        if not name or not password:
            raise ChatError("usage: /oper NAME PASSWORD")
        address = self._where(user.host) or user.peer  # an IPv6 user's whole block

        def granted(operator: str) -> None:
            if self.chat.is_connected(user):
                user.operator = operator
                reply(f"You are now an operator ({operator}).")

        def refused(failure: Any) -> None:
            failure.trap(ChatError)
            if self.chat.is_connected(user):
                fail(str(failure.value))

        return self.authenticator.login(address, name, password).addCallbacks(granted, refused)

    def require_operator(self, user: User) -> str:
        """The operator name of ``user``, or ChatError telling them they are not one."""
        return self._operator(user)

    @staticmethod
    def _operator(user: User) -> str:
        if user.operator is None:
            raise ChatError("only operators can do that; see /oper")
        return user.operator

    def _target(self, op: User, nick: str, verb: str) -> User:
        """The user an operator names, never the operator."""
        target = self.chat.find_user(nick)
        if target is op:
            raise ChatError(f"you cannot {verb} yourself")
        return target

    # --- Operator actions --------------------------------------------------------------------

    def kick(self, op: User, nick: str, reason: str) -> None:
        operator = self._operator(op)
        target = self._target(op, nick, "kick")
        reason = reason or "no reason given"
        self.kicks.add(self._where(target.host), target.key, self.kick_rejoin_delay)
        self.chat.remove(target, f"kicked by {op.nick}: {reason}")
        audit_action(operator, "kicked", nick=target.nick, peer=target.peer, reason=reason)

    def ban(self, op: User, what: str, seconds: int | None, reason: str) -> list[str]:
        """Bans an address or block (everyone there but ``op`` is disconnected), or a user's
        address when ``what`` is a nickname (that user alone is disconnected). Returns the
        lines to tell the operator."""
        operator = self._operator(op)
        reason = reason or "no reason given"
        target: User | None = None
        try:
            network = parse_ban_target(what)
        except ValueError:
            target = self._target(op, what, "ban")
            where = self._where(target.host)
            if where is None:
                raise ChatError(f"{target.nick} has no IP address to ban") from None
            network = parse_ban_target(where)
        now = self.clock.seconds()
        ban = Ban(network, reason, operator, now, None if seconds is None else now + seconds)
        self.bans.add(ban)
        self.store.save_ban(ban)
        length = "for good" if seconds is None else f"for {format_duration(seconds)}"
        why = f"banned by {op.nick} {length}: {reason}"
        covered = [u for u in self.chat.connected()
                   if u is not op and self.bans.match(u.host) is ban]
        removed = covered if target is None else [target]
        for user in removed:
            self.chat.remove(user, why)
        audit_action(operator, "banned", target=str(network),
                     nick=None if target is None else target.nick, reason=reason,
                     expiry=ban.expiry(now), disconnected=len(removed))
        lines = [f"Banned {network} ({ban.expiry(now)})."]
        others = [u for u in covered if u is not target]
        if target is not None and others:
            place = network.network_address if network.num_addresses == 1 else network
            lines.append(f"{plural(len(others), 'other user')} at {place} stayed "
                         f"connected; /ban {place} disconnects everyone there but you")
        return lines

    def unban(self, op: User, what: str) -> str:
        operator = self._operator(op)
        try:
            network = parse_ban_target(what)
        except ValueError as e:
            raise ChatError(str(e)) from None
        if self.bans.remove(network) is None:
            raise ChatError(f"{network} is not banned; see /bans")
        self.store.delete_ban(str(network))
        audit_action(operator, "unbanned", target=str(network))
        return f"Unbanned {network}."

    def list_bans(self, op: User) -> list[str]:
        self._operator(op)
        now = self.clock.seconds()
        bans = self.bans.current()
        if not bans:
            return ["No bans are in force."]
        lines = [f"Bans ({len(bans)}):"]
        lines += [f"{b.network} by {b.by} on {format_time(b.created)}: {b.reason} "
                  f"({b.expiry(now)})" for b in bans]
        return lines

    def mute(self, op: User, nick: str, seconds: int | None) -> None:
        operator = self._operator(op)
        target = self._target(op, nick, "mute")
        now = self.clock.seconds()
        mute = Mute(target.key, target.nick, target.host, operator, now,
                    None if seconds is None else now + seconds)
        self.mutes.add(mute)
        self.store.save_mute(mute)
        audit_action(operator, "muted", nick=target.nick, peer=target.peer,
                     duration=format_duration(seconds) if seconds else "permanent")
        length = "" if seconds is None else f" for {format_duration(seconds)}"
        self._announce(op, target, f"{target.nick} has been muted by {op.nick}{length}")

    def unmute(self, op: User, nick: str) -> None:
        """Lifts the mute covering ``nick``: the nick it was made under or one the user was
        given since by /rename. The user is told wherever they are, under any nick."""
        operator = self._operator(op)
        try:
            key = nick_key(normalize_nick(nick))
        except InvalidNickname as e:
            raise ChatError(str(e)) from None
        mute = self.mutes.match(key)
        if mute is None:
            raise ChatError(f'"{nick}" is not muted')
        self.mutes.remove(mute.key)
        self.store.delete_mute(mute.key)
        audit_action(operator, "unmuted", nick=nick)
        online = [u for u in self.chat.connected() if mute.covers(u.key)]
        self._announce(op, online[0] if online else None,
                       f"{online[0].nick if online else mute.nick} is no longer muted")

    def _announce(self, op: User, target: User | None, text: str) -> None:
        """Tells the target's rooms (where it happened), the target if in none, and the
        operator if in none of those."""
        rooms = [] if target is None else target.rooms_by_name()
        for room in rooms:
            self.chat.publish(RoomNotice(room.name, text))
        if target is not None and not rooms:
            self.chat.notice(target, text)
        if not any(op in room.members for room in rooms):
            self.chat.notice(op, text)

    def wall(self, op: User, text: str) -> None:
        operator = self._operator(op)
        audit_action(operator, "sent a wall", text=text)
        self.chat.publish(Announcement(f"[wall from {op.nick}] {text}"))

    def force_rename(self, op: User, nick: str, new: str) -> None:
        operator = self._operator(op)
        target = self.chat.find_user(nick)
        old = target.nick
        self.chat.force_rename(target, new)  # everyone sees "old is now known as new"
        mute = self.mutes.match(nick_key(old))
        if mute is not None:  # the mute follows the user to the new nick
            followed = mute.renamed(target.key)
            self.mutes.add(followed)
            self.store.save_mute(followed)
        self.chat.notice(target, f"{op.nick} has renamed you to {target.nick}")
        audit_action(operator, "renamed", nick=old, new=target.nick)
