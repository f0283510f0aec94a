"""The numbers behind /stats: the message rate over the last minute, memory, the lines."""

from __future__ import annotations

import pytest
from twisted.internet import task

from chatd.stats import MessageRate, Snapshot, resident_memory, stats_lines
from chatd.version import VERSION


def test_message_rate_is_over_the_last_minute() -> None:
    clock = task.Clock()
    sent = [0]
    rate = MessageRate(clock, lambda: sent[0])
    rate.start()
    assert rate.per_second() == 0.0
    for _ in range(30):  # 10 messages a second for 30 s
        sent[0] += 10
        clock.advance(1)
    assert rate.per_second() == pytest.approx(10.0)
    for _ in range(90):  # then 1 a second for 90 s: the first burst has left the window
        sent[0] += 1
        clock.advance(1)
    assert rate.per_second() == pytest.approx(1.0)
    assert len(rate._samples) <= 62  # bounded: about one sample a second for a minute
    rate.stop()


def test_resident_memory_is_plausible() -> None:
    assert 5 * 1024 * 1024 < resident_memory() < 4 * 1024 * 1024 * 1024


def test_stats_lines_fit_an_80_column_terminal() -> None:
    snapshot = Snapshot(
        uptime=93784, connections={"line": 12, "irc": 3, "web": 0, "echo-tcp": 1}, users=15,
        rooms=4, messages=123456, messages_per_second=4.25, memory=60 * 1024 * 1024,
        pending_writes=2, write_errors=0,
    )
    lines = stats_lines(snapshot)
    assert lines == [
        f"chatd {VERSION}, up 1d2h",
        "Connections: 12 line, 3 irc, 0 web, 1 echo-tcp",
        "Users: 15 in 4 rooms",
        "Messages: 4.2/s over the last minute, 123456 since start",
        "Memory: 60.0 MiB resident",
        "Store: 2 writes pending, 0 write errors since start",
    ]
    assert all(len("*** " + line) <= 79 for line in lines)


def test_stats_lines_say_one_room_and_one_write_in_the_singular() -> None:
    snapshot = Snapshot(
        uptime=5, connections={"line": 1}, users=1, rooms=1, messages=1,
        messages_per_second=0.0, memory=60 * 1024 * 1024, pending_writes=1, write_errors=1,
    )
    lines = stats_lines(snapshot)
    assert "Users: 1 in 1 room" in lines
    assert "Store: 1 write pending, 1 write error since start" in lines
