"""Property tests: random hostile byte streams, split anywhere, through the line protocol."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from chatd.commands import command_names
from chatd.moderation.moderator import Moderator
from chatd.moderation.operators import OperatorAuthenticator
from chatd.passwd import hash_password
from chatd.protocol import ChatProtocol
from chatd.telnet import AYT_REPLY
from chatd.text import BIDI_CONTROLS
from tests.support import MemoryChat

# Pieces a hostile client would mix: escapes, telnet negotiation, C1 controls in UTF-8,
# bidi overrides, broken UTF-8, line endings, commands, and plain text.
PIECES = st.sampled_from(
    [
        b"\x1b[2J", b"\x1b]0;title\x07", b"\x07", b"\x00", b"\x7f", b"\t", b"\x08",
        b"\xff\xfb\x01", b"\xff\xfd", b"\xff\xfa\x18\x00xterm", b"\xff\xf0", b"\xff\xff",
        b"\xff\xfd\x06", b"\xff\xf4\xff\xfd\x06", b"\xff\xf6", b"\xff\xfd\x01", b"\xff",
        b"\xff\xfa\x18\xff\xff\n\xff\xf0", b"\xff\xfa",
        "\u009b31m".encode(), "\u202egnp.exe".encode(), "\u2066x\u2069".encode(),
        "\u2028".encode(), b"\xc2", b"\xe2\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
        b"\n", b"\r", b"\r\n", b"/nick ", b"/me ", b"/quit", b"//", b"/who",
        b"hello", " ☂ zoë 東京".encode(), b"alice",
    ]
)
TELNET_ANSWER = re.compile(rb"\xff[\xfb-\xfe][\x00-\xff]")
STREAMS = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(PIECES, st.binary(max_size=8)), max_size=60).map(b"".join),
)


def forbidden(ch: str) -> bool:
    """A character no other client may ever receive inside a line."""
    cp = ord(ch)
    return (
        cp < 0x20 or 0x7F <= cp <= 0x9F or cp in BIDI_CONTROLS or cp in (0x2028, 0x2029)
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def without_telnet_answers(raw: bytes) -> bytes:
    """The sender's own output less the answers to its telnet negotiation."""
    return TELNET_ANSWER.sub(b"", raw).replace(AYT_REPLY, b"")


def check_output(raw: bytes) -> list[str]:
    """Output is valid UTF-8, CRLF-terminated lines with nothing forbidden in them."""
    text = raw.decode("utf-8")  # strict: raises on invalid UTF-8
    assert text == "" or text.endswith("\r\n")
    lines = text.split("\r\n")[:-1]
    for line in lines:
        bad = [f"U+{ord(c):04X}" for c in line if forbidden(c)]
        assert not bad, (line, bad)
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, cuts=st.lists(st.integers(min_value=0), max_size=12),
       max_line=st.sampled_from([0, 16, 4096]))
def test_random_streams_never_raise_and_others_get_only_clean_text(
    stream: bytes, cuts: list[int], max_line: int
) -> None:
    chat = MemoryChat(max_line=max_line, flood_rate=50, flood_burst=5, flood_queue=20)
    sender, ts = chat.connect()
    _, other = chat.connect()
    for chunk in split(stream, cuts):
        sender.dataReceived(chunk)
    chat.clock.pump([0.1] * 20)  # let the flood gate release what it queued
    check_output(other.value())
    check_output(without_telnet_answers(ts.value()))


@settings(max_examples=200, deadline=None)
@given(stream=STREAMS, cuts=st.lists(st.integers(min_value=0), max_size=12),
       max_line=st.sampled_from([0, 16, 4096]), every_byte=st.booleans())
def test_where_a_stream_is_split_does_not_change_what_anyone_sees(
    stream: bytes, cuts: list[int], max_line: int, every_byte: bool
) -> None:
    outputs = []
    # Every byte a read of its own puts a cut inside every telnet sequence in the stream.
    reads = [stream[i : i + 1] for i in range(len(stream))] if every_byte else split(stream, cuts)
    for chunks in ([stream], reads):
        chat = MemoryChat(max_line=max_line)
        sender, own = chat.connect()
        _, other = chat.connect()
        for chunk in chunks:
            if sender.transport.disconnecting:  # type: ignore[union-attr]
                break
            sender.dataReceived(chunk)
        outputs.append((other.value(), own.value()))
    assert outputs[0] == outputs[1]


# --- Every command, with arbitrary arguments -------------------------------------------------

ARGUMENT_WORDS = st.sampled_from(
    ["²", "٣", "0", "-1", "1", "4", "99999999999", "9" * 50, "1h", "10m", "٣m", "bob", "alice",
     "#lobby", "#x", "*", "", "::1", "10.0.0.0/8", "on", "off"]
)
ARGUMENTS = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(ARGUMENT_WORDS, st.text(max_size=6)), max_size=4).map(" ".join),
)


def operator_chat() -> tuple[MemoryChat, list[ChatProtocol]]:
    """A chat with a moderator, an operator (first) and an ordinary user called bob."""
    chat = MemoryChat(service_args={"history_size": 4})
    authenticator = OperatorAuthenticator(
        chat.clock, {"root": OPERATOR_HASH}, lambda check: defer.maybeDeferred(check)
    )
    chat.factory.commands.moderator = Moderator(chat.service, chat.clock, authenticator)
    op, op_transport = chat.connect()
    op.dataReceived(b"/oper root pw\n")
    assert b"You are now an operator" in op_transport.value()
    bob, _ = chat.connect()
    bob.dataReceived(b"/nick bob\nhello\n")
    return chat, [op, bob]


OPERATOR_HASH = hash_password("pw", n=2**4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=ARGUMENTS)
@example(args="²")  # "²".isdigit() is true and int("²") raises: the bug of issue 10, item 4
@example(args="٣")
@example(args="9" * 50)
def test_no_command_raises_whatever_its_arguments(args: str) -> None:
    """Every command in the table, from an operator and from a user; quit goes last."""
    chat, (op, bob) = operator_chat()
    args = args.replace("\r", " ").replace("\n", " ")
    for name in sorted(command_names(), key=lambda name: name == "quit"):
        # /oper checks an unknown operator's guess at full scrypt cost: guess root's instead.
        command = "oper root" if name == "oper" else name
        line = f"/{command} {args}\n".encode("utf-8", "surrogatepass")
        for sender in (bob, op):
            sender.dataReceived(line)  # raises if a handler does
        chat.clock.advance(1)
