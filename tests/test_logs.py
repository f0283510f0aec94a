"""The JSON logger (``twistd --logger chatd.logs.json``) and the names of chatd's log events."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure

from chatd import logs
from chatd.ratelog import RateLimitedLog
from chatd.version import VERSION
from tests.support import connect, read_until

TWISTD = str(Path(sys.executable).parent / "twistd")


def test_flatten_keeps_fields_and_names_the_event() -> None:
    event: dict[str, Any] = {
        "log_format": "{nick} connected from {peer}", "log_level": LogLevel.info,
        "log_namespace": "chatd.service", "log_time": 1700000000.25, "log_source": None,
        "event": "user.connected", "nick": "alice", "peer": "[::1]:5000", "count": 3,
        "ratio": float("nan"), "where": Path("/x"), "rooms": ("#a", "#b"),
    }
    assert logs.flatten(event) == {
        "time": "2023-11-14T22:13:20.250Z", "level": "info", "event": "user.connected",
        "namespace": "chatd.service", "text": "alice connected from [::1]:5000",
        "nick": "alice", "peer": "[::1]:5000", "count": 3, "ratio": "nan", "where": "/x",
        "rooms": ["#a", "#b"],
    }


def test_a_failure_becomes_a_traceback_field_and_others_get_their_namespace() -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        failure = Failure()
    record = logs.flatten({"log_format": "oops", "log_level": LogLevel.critical,
                           "log_namespace": "twisted.internet", "log_time": 0.0,
                           "log_failure": failure})
    assert record["event"] == "twisted.internet" and record["level"] == "critical"
    assert "ZeroDivisionError" in record["traceback"]
    line = logs.format_json({"log_format": "x", "log_time": 0.0, "why": None, "isError": 0,
                             "message": ()})
    assert line.endswith("}\n") and line.count("\n") == 1
    assert set(json.loads(line)) == {"time", "level", "event", "namespace", "text"}


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (["-n", "chatd"], "stdout"),
        (["--nodaemon", "--logfile=-", "chatd", "--logfile", "x"], "stdout"),
        (["-n", "-l", "chat.log", "chatd"], "chat.log"),
        (["--logfile", "chat.log", "chatd"], "chat.log"),
        (["chatd", "-n"], "twistd.log"),  # after the subcommand it is chatd's, not twistd's
    ],
)
def test_the_destination_is_the_one_twistd_would_use(
    argv: list[str], target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    out = logs.twistd_log_file(argv)
    if target == "stdout":
        assert out is sys.stdout
    else:
        assert Path(out.path).resolve() == (tmp_path / target).resolve()  # type: ignore[attr-defined]
        out.close()


def test_rate_limited_refusals_carry_event_reason_and_peer() -> None:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        clock = task.Clock()
        limited = RateLimitedLog(clock, per_address_burst=1, window=10)
        limited.event("flood", "127.0.0.1:1", "alice")
        limited.event("flood", "127.0.0.1:2")  # over the address's rate: counted, not logged
        clock.advance(10)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    records = [logs.flatten(e) for e in seen if e.get("event") in ("refusal", "log.suppressed")]
    assert [r["event"] for r in records] == ["refusal", "log.suppressed"]
    assert records[0]["peer"] == "127.0.0.1:1" and records[0]["reason"] == "flood"
    assert records[0]["detail"] == "alice"
    assert records[0]["text"] == "127.0.0.1:1: flood (alice)"
    assert records[1]["count"] == 1
    assert limited.counts == {"flood": 2}  # the metrics count both


def run_with_json_logs(tmp_path: Path, *twistd_options: str) -> subprocess.Popen[bytes]:
    """twistd with JSON logs, chat on a port the system picks; standard output and error
    go to ``out.log`` (which is not where twistd itself would put a log)."""
    with (tmp_path / "out.log").open("wb") as out:
        return subprocess.Popen(
            [TWISTD, "--logger", "chatd.logs.json", f"--pidfile={tmp_path / 'twistd.pid'}",
             *twistd_options, "chatd", "--no-echo", "--state", "none",
             "--listen", "tcp:0:interface=127.0.0.1"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )


def listening_port(log: Path, seconds: float = 20.0) -> int:
    """The chat port, from the ``chatd.listening`` record in the JSON log ``log``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                record = json.loads(line) if line.startswith("{") else {}
                if record.get("event") == "chatd.listening" and record["role"] == "chat":
                    assert record["text"].startswith(f"listening: chat tcp 127.0.0.1 port "
                                                     f"{record['port']} (tcp:0:")
                    return int(record["port"])
        time.sleep(0.05)
    raise AssertionError(f"no chatd.listening record in {log} within {seconds:g} s")


def chat_once(port: int) -> None:
    with connect(port) as sock:
        read_until(sock, b"\n")
        sock.sendall(b"/nick alice\r\n")
        read_until(sock, b"alice")


def parse_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_twistd_n_writes_one_json_object_per_line_to_stdout(tmp_path: Path) -> None:
    process = run_with_json_logs(tmp_path, "-n")
    try:
        chat_once(listening_port(tmp_path / "out.log"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    records = parse_lines((tmp_path / "out.log").read_text())
    events = {r["event"]: r for r in records}
    assert events["chatd.start"]["version"] == VERSION
    assert events["chatd.start"]["text"].startswith(f"chatd {VERSION} (Twisted ")
    assert all({"time", "level", "event", "namespace", "text"} <= set(r) for r in records)
    assert not (tmp_path / "twistd.log").exists()


def test_a_daemon_writes_json_lines_to_its_log_file(tmp_path: Path) -> None:
    process = run_with_json_logs(tmp_path, "--logfile=chat.log")
    assert process.wait(timeout=30) == 0  # the parent returns once the daemon started
    pid = int((tmp_path / "twistd.pid").read_text())
    try:
        chat_once(listening_port(tmp_path / "chat.log"))
    finally:
        import os

        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while (tmp_path / "twistd.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    records = parse_lines((tmp_path / "chat.log").read_text())
    names = [r["event"] for r in records]
    assert "chatd.start" in names
    assert records[-1]["text"] == "Server Shut Down."
