"""What an admin sees on the terminal from ``twistd chatd``: the version, one-line usage
errors, and start errors that read the same with and without ``-n``."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.python import usage

import twisted
from chatd import startup
from chatd.listening import CannotListen
from chatd.tap import Options
from chatd.version import VERSION

TWISTD = str(Path(sys.executable).parent / "twistd")
HINT = "see: twistd chatd --help\n"


def twistd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TWISTD, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def test_version_comes_from_the_package_metadata() -> None:
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'\nversion = "{VERSION}"\n' in pyproject


def test_twistd_chatd_version_prints_chatds_version(tmp_path: Path) -> None:
    result = twistd(tmp_path, "chatd", "--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"chatd {VERSION} (Twisted {twisted.__version__}, Python ")
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--max-line", "-5"], "--max-line '-5': not a whole number, 0 or more"),
        (["--flood-rate", "fast"], "--flood-rate 'fast': not a number, 0 or more"),
        (["--bogus"], "option --bogus not recognized"),
        (["--listen", "tcp:seven"], "--listen 'tcp:seven': invalid literal for int() with "
                                    "base 10: 'seven'"),
        (["--echo-udp", "udp:seven"], "--echo-udp 'udp:seven': expected udp:PORT or "
                                      "udp:PORT:interface=ADDR"),
        (["--config", "missing.toml"], "config file missing.toml: No such file or directory"),
    ],
)
def test_a_usage_error_is_one_line_and_a_pointer_to_help(
    tmp_path: Path, args: list[str], line: str
) -> None:
    result = twistd(tmp_path, "--pidfile=", "-n", "chatd", "--state", "none", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"chatd: {line}\n{HINT}"


def test_a_bad_value_in_the_config_file_names_the_file_key_and_value(tmp_path: Path) -> None:
    (tmp_path / "chatd.toml").write_text("max-line = -5\n")
    result = twistd(tmp_path, "--pidfile=", "-n", "chatd", "--config", "chatd.toml")
    assert result.returncode == 2
    assert result.stderr == ("chatd: config file chatd.toml: max-line: --max-line '-5': "
                             f"not a whole number, 0 or more\n{HINT}")


def test_options_outside_twistd_still_raise() -> None:
    """chatd.tac, the tests and SIGHUP re-parsing need the exception, not an exit."""
    with pytest.raises(usage.UsageError, match="--max-line '-5': not a whole number"):
        Options().parseOptions(["--max-line", "-5"])


def start_fails(tmp_path: Path, twistd_options: list[str], *chatd_options: str) -> str:
    """What the terminal shows when twistd chatd cannot start; checks the exit status."""
    log = tmp_path / "twistd.log"
    log.unlink(missing_ok=True)
    result = twistd(tmp_path, f"--pidfile={tmp_path / 'twistd.pid'}", *twistd_options,
                    "chatd", "--no-echo", "--state", "none", *chatd_options)
    assert result.returncode == 1
    # A daemon's parent returns once the child has reported; the child then removes it.
    deadline = time.monotonic() + 10
    while (tmp_path / "twistd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "twistd.pid").exists()
    if twistd_options == ["-n"]:  # the log is on the terminal too: the line shows once
        assert "chatd: " not in result.stdout
    return result.stderr


FOREGROUND_AND_DAEMON = [["-n"], ["-n", "--logfile=twistd.log"], ["--logfile=twistd.log"]]


def test_a_port_in_use_is_the_same_one_line_with_or_without_n(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        for twistd_options in FOREGROUND_AND_DAEMON:
            shown = start_fails(tmp_path, twistd_options, "--listen", endpoint)
            assert shown == (
                f"chatd: cannot listen on {endpoint}: Couldn't listen on 127.0.0.1:{port}: "
                "[Errno 98] Address already in use.\n"
            ), twistd_options
            if "--logfile=twistd.log" in twistd_options:  # and the log says it too
                log = tmp_path / "twistd.log"
                # A daemon's child logs it as it exits, after its parent has returned.
                deadline = time.monotonic() + 10
                while shown.strip() not in log.read_text() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert shown.strip() in log.read_text()


def test_a_long_start_error_reaches_the_daemons_terminal_whole(tmp_path: Path) -> None:
    """twistd's own status pipe cut messages to 100 bytes and printed them as Python bytes."""
    missing = tmp_path / ("a-rather-long-directory-name-" * 4) / "chatd.sock"
    shown = [
        # Twisted's message names the lock file's would-be content: the process id.
        re.sub(r"'\d+' -> ", "'PID' -> ", start_fails(tmp_path, options, "--listen",
                                                       f"unix:{missing}"))
        for options in FOREGROUND_AND_DAEMON
    ]
    assert shown[0].startswith(f"chatd: cannot listen on unix:{missing}: ")
    assert len(shown[0]) > 200 and shown[0].count("\n") == 1
    assert shown == [shown[0]] * 3


def test_status_pipe_round_trip_keeps_the_line_and_its_characters() -> None:
    read, write = os.pipe()
    try:
        os.write(write, startup.status_message(CannotListen("cannot listen on tcp:7777: é")))
        terminal = io.StringIO()
        assert startup.wait_for_start(read, terminal) == 1
        assert terminal.getvalue() == "chatd: cannot listen on tcp:7777: é\n"
        os.write(write, b"0")
        assert startup.wait_for_start(read, terminal) == 0
        assert terminal.getvalue().count("\n") == 1
    finally:
        os.close(read)
        os.close(write)


def test_status_message_is_one_bounded_utf8_line() -> None:
    long = CannotListen("é" * 1000)
    data = startup.status_message(long)
    assert len(data) <= startup.STATUS_MESSAGE_MAX
    assert data.startswith(b"1 chatd: \xc3\xa9") and data.endswith(b"...")
    data.decode("utf-8")  # cut on a character boundary
    other = startup.status_message(RuntimeError("boom"))
    assert other == b"1 chatd: could not start: RuntimeError: boom (the log file has the traceback)"


def test_a_daemon_without_redis_does_not_import_the_redis_client() -> None:
    """txredisapi is a third of a start's imports (chatd/cluster/__init__.py): only --redis
    loads it. A fresh interpreter, since this one's tests import it anyway."""
    code = (
        "import sys\n"
        "from chatd.tap import Options, makeService\n"
        "options = Options()\n"
        "options.parseOptions(['--no-echo', '--state', 'none', '--listen', 'tcp:0'])\n"
        "makeService(options)\n"
        "assert 'txredisapi' not in sys.modules, 'txredisapi imported'\n"
        "options = Options()\n"
        "options.parseOptions(['--no-echo', '--listen', 'tcp:0',\n"
        "                      '--redis', 'redis://127.0.0.1:1/0'])\n"
        "makeService(options)\n"
        "assert 'txredisapi' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
