"""The telnet filter at the byte level: what is removed, what is answered, and at what cost."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterable

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from chatd import telnet
from chatd.telnet import AYT_REPLY, TelnetFilter
from chatd.text import TelnetFilter as TextTelnetFilter

IAC, WILL, WONT, DO, DONT, SB, SE = b"\xff", b"\xfb", b"\xfc", b"\xfd", b"\xfe", b"\xfa", b"\xf0"
IP, AO, BRK, AYT, NOP = b"\xf4", b"\xf5", b"\xf3", b"\xf6", b"\xf1"
TM = b"\x06"  # TIMING-MARK
ECHO, TTYPE = b"\x01", b"\x18"
WILL_TM = IAC + WILL + TM


def clean(chunks: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join(data for data, _ in chunks)


def events(chunks: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
    """The pairs as one ordered stream of input and replies, adjacent pieces merged."""
    out: list[tuple[str, bytes]] = []
    for data, reply in chunks:
        for kind, piece in (("in", data), ("reply", reply)):
            if not piece:
                continue
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + piece)
            else:
                out.append((kind, piece))
    return out


def feed_all(f: TelnetFilter, reads: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
    return [pair for read in reads for pair in f.feed(read)]


class TestRemoval:
    def test_still_importable_from_text(self) -> None:
        assert TextTelnetFilter is TelnetFilter

    def test_plain_data_passes_as_is_without_a_copy(self) -> None:
        data = b"hello\r\n"
        result = TelnetFilter().feed(data)
        assert result == [(data, b"")]
        assert result[0][0] is data

    @pytest.mark.parametrize(
        "data",
        [
            IAC + WONT + ECHO + b"hi",
            IAC + DONT + ECHO + b"hi",
            IAC + SB + TTYPE + b"\x00xterm" + IAC + SE + b"hi",
            IAC + NOP + b"hi",
            b"h" + IAC + IP + b"i",
            b"h" + IAC + AO + IAC + BRK + b"i",
            IAC + SB + TTYPE + IAC + IAC + b"\x01" + IAC + SE + b"hi",  # IAC IAC inside SB
        ],
    )
    def test_commands_are_removed_silently(self, data: bytes) -> None:
        assert TelnetFilter().feed(data) == [(b"hi", b"")]

    def test_iac_iac_is_a_literal_ff(self) -> None:
        assert clean(TelnetFilter().feed(b"h" + IAC + IAC + b"i")) == b"h\xffi"

    def test_discarded_counts_every_swallowed_byte(self) -> None:
        f = TelnetFilter()
        stream = b"a" + IAC + IAC + b"b" + IAC + SB + TTYPE + b"xyz" + IAC + SE + IAC + WONT + ECHO
        kept = clean(f.feed(stream))
        assert kept == b"a\xffb"
        assert f.discarded == len(stream) - len(kept) == 1 + 8 + 3

    def test_endless_subnegotiation_keeps_nothing(self) -> None:
        f = TelnetFilter()
        f.feed(IAC + SB + TTYPE)
        garbage = bytes(range(255)) * 4112  # about 1 MB, every byte value but IAC
        tracemalloc.start()
        try:
            for _ in range(5):
                assert clean(f.feed(garbage)) == b""
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 16 * 1024, peak  # 5 MB swallowed; nothing of it held
        assert f.discarded == 3 + 5 * len(garbage)
        assert f.feed(IAC + SE + b"back\n") == [(b"back\n", b"")]


class TestAnswers:
    def test_timing_mark_is_answered_after_the_input_before_it(self) -> None:
        chunks = TelnetFilter().feed(b"abc" + IAC + DO + TM + b"def")
        assert chunks == [(b"abc", WILL_TM), (b"def", b"")]

    def test_ctrl_c_from_telnet(self) -> None:
        # What telnet sends on ^C; it then shows nothing until the mark is answered.
        assert TelnetFilter().feed(IAC + IP + IAC + DO + TM) == [(b"", WILL_TM)]

    def test_every_timing_mark_is_answered(self) -> None:
        f = TelnetFilter()
        assert f.feed(IAC + DO + TM) == [(b"", WILL_TM)]
        assert f.feed(b"x\n" + IAC + DO + TM) == [(b"x\n", WILL_TM)]

    def test_other_options_are_refused(self) -> None:
        f = TelnetFilter()
        assert f.feed(IAC + DO + ECHO) == [(b"", IAC + WONT + ECHO)]
        assert f.feed(IAC + WILL + TTYPE) == [(b"", IAC + DONT + TTYPE)]
        # A peer offering what we refused on the other side is a different question.
        assert f.feed(IAC + WILL + ECHO) == [(b"", IAC + DONT + ECHO)]

    def test_refusals_are_not_repeated(self) -> None:
        f = TelnetFilter()
        assert f.feed(IAC + DO + ECHO + IAC + DO + ECHO) == [(b"", IAC + WONT + ECHO)]
        assert f.feed(IAC + DO + ECHO + b"x") == [(b"x", b"")]
        assert f.feed(IAC + WILL + ECHO) == [(b"", IAC + DONT + ECHO)]
        assert f.feed(IAC + WILL + ECHO) == [(b"", b"")]

    @pytest.mark.parametrize("verb", [WONT, DONT])
    def test_acknowledgements_are_never_answered(self, verb: bytes) -> None:
        assert TelnetFilter().feed(IAC + verb + ECHO + IAC + verb + TM) == [(b"", b"")]

    def test_are_you_there(self) -> None:
        assert TelnetFilter().feed(b"a" + IAC + AYT + b"b") == [(b"a", AYT_REPLY), (b"b", b"")]

    def test_replies_in_a_row_are_joined(self) -> None:
        chunks = TelnetFilter().feed(b"a" + IAC + DO + ECHO + IAC + DO + TM + b"b")
        assert chunks == [(b"a", IAC + WONT + ECHO + WILL_TM), (b"b", b"")]

    def test_split_at_every_byte(self) -> None:
        stream = (
            b"a" + IAC + SB + TTYPE + b"\x00vt" + IAC + IAC + b"100" + IAC + SE + b"b"
            + IAC + DO + TM + b"c" + IAC + IAC + IAC + AYT + IAC + WILL + ECHO + b"d"
        )
        whole = TelnetFilter()
        split = TelnetFilter()
        expected = events(whole.feed(stream))
        assert expected == [
            ("in", b"ab"), ("reply", WILL_TM), ("in", b"c\xff"),
            ("reply", AYT_REPLY + IAC + DONT + ECHO), ("in", b"d"),
        ]
        assert events(feed_all(split, [stream[i : i + 1] for i in range(len(stream))])) == expected
        assert split.discarded == whole.discarded


# --- Split invariance, as a property -------------------------------------------------------

OPTIONS = st.sampled_from([TM, ECHO, TTYPE, b"\x03", b"\x1f", b"\xff", b"\xf0", b"\x00"])
COMMANDS = st.sampled_from([IP, AO, BRK, AYT, NOP, b"\xf2", b"\xf9", b"\xee"])
PLAIN = st.binary(max_size=12).map(lambda b: b.replace(IAC, b""))
SB_CONTENT = st.lists(st.one_of(PLAIN, st.just(IAC + IAC), st.just(SE)), max_size=6).map(
    b"".join
)
TELNET_PIECES = st.one_of(
    PLAIN,
    st.just(IAC + IAC),
    COMMANDS.map(lambda c: IAC + c),
    st.tuples(st.sampled_from([WILL, WONT, DO, DONT]), OPTIONS).map(lambda t: IAC + t[0] + t[1]),
    st.tuples(OPTIONS, SB_CONTENT).map(lambda t: IAC + SB + t[0] + t[1] + IAC + SE),
    st.just(IAC),  # a bare IAC: whatever follows is read as a command
    st.just(IAC + SB),  # an SB that runs on into what follows
    st.binary(max_size=6),
)
STREAMS = st.lists(TELNET_PIECES, min_size=1, max_size=30).map(b"".join)
# Cuts chosen by position, so many fall inside the IAC sequences the stream is made of.
SPLITS = st.tuples(STREAMS, st.lists(st.integers(min_value=0, max_value=400), max_size=40))


def reads(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def split_invariant(make: Callable[[], TelnetFilter], example: tuple[bytes, list[int]]) -> bool:
    stream, cuts = example
    whole, split = make(), make()
    same_stream = events(whole.feed(stream)) == events(feed_all(split, reads(stream, cuts)))
    return same_stream and whole.discarded == split.discarded


@settings(max_examples=400, deadline=None)
@given(example=SPLITS)
def test_splitting_a_stream_anywhere_changes_nothing(example: tuple[bytes, list[int]]) -> None:
    assert split_invariant(TelnetFilter, example)
    stream, _ = example
    f = TelnetFilter()
    assert len(clean(f.feed(stream))) + f.discarded == len(stream)


class ForgetsAcrossReads(TelnetFilter):
    """The bug the property must catch: the state is not carried from one read to the next."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._state = telnet._DATA  # type: ignore[attr-defined]
        return super().feed(data)


def test_the_property_catches_state_lost_across_reads() -> None:
    counterexample = find(
        SPLITS, lambda example: not split_invariant(ForgetsAcrossReads, example),
        settings=settings(max_examples=2000, database=None),
    )
    assert IAC in counterexample[0]


# --- Cost: bytes-speed, not a Python loop over every byte ------------------------------------


def best_time(action: Callable[[], object], repeat: int = 5) -> float:
    """The least CPU time ``action`` took: the thread's own time, so that other processes
    on a loaded machine (CI, parallel tests) do not count against it."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        action()
        best = min(best, time.thread_time() - started)
    return best


def feed_in_reads(prefix: bytes, body: bytes) -> Callable[[], object]:
    """Feeds ``prefix`` then ``body`` in 64 KiB reads, as the reactor would deliver it."""
    def run() -> None:
        f = TelnetFilter()
        f.feed(prefix)
        for at in range(0, len(body), 65536):
            f.feed(body[at : at + 65536])
    return run


@pytest.mark.parametrize("prefix", [b"", IAC + SB + TTYPE], ids=["plain", "subnegotiation"])
def test_cost_grows_linearly_at_bytes_speed(prefix: bytes) -> None:
    # 256 KiB and 2.5 MiB: both stay in cache, so the ratio is the algorithm's, not the
    # memory bus's. Quadratic work would make it about 100; linear about 10. The two are
    # timed in turns so a burst of load elsewhere on the machine hits both alike.
    small, large = b"x" * 262_144, b"y" * 2_621_440
    t_small = t_large = float("inf")
    for _ in range(7):
        t_small = min(t_small, best_time(feed_in_reads(prefix, small), repeat=1))
        t_large = min(t_large, best_time(feed_in_reads(prefix, large), repeat=1))
    assert t_large / t_small < 30, (t_small, t_large)  # linear, whatever is kept or not
    # bytes-speed: within a small factor of one C scan over the same bytes; a Python loop
    # over every byte is several hundred times slower.
    t_scan = best_time(lambda: large.count(b"\xfe"))
    assert t_large < 20 * t_scan + 0.005, (t_large, t_scan)
