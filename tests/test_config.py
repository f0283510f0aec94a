"""The configuration file: every option, precedence, errors, the example file, reloading."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python import usage

from chatd import config
from chatd.passwd import hash_password
from chatd.reloading import Reloader
from chatd.tap import Options

ROOT = Path(__file__).resolve().parent.parent
CHEAP_HASH = hash_password("secret", n=2**4)  # cheap: these tests check parsing, not cost


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "chatd.toml"
    path.write_text(text)
    return str(path)


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_every_kind_of_option_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
listen = ["tcp:7000", "tcp6:7001"]
echo-udp = "udp:7008"
no-echo = false
max-line = 100
echo-idle-timeout = 1.5
server-name = "example"
[operators]
alice = "{CHEAP_HASH}"
""")
    options = parse("--config", path)
    assert options["listen"] == ["tcp:7000", "tcp6:7001"]
    assert options["echo-udp"] == ["udp:7008"]
    assert options["max-line"] == 100
    assert options["echo-idle-timeout"] == 1.5
    assert options["server-name"] == "example"
    assert options["operators"] == {"alice": CHEAP_HASH}


def test_a_true_flag_in_the_file(tmp_path: Path) -> None:
    options = parse(f"--config={write(tmp_path, 'no-echo = true')}")
    assert options["no-echo"] and options["echo"] == []


def test_command_line_wins_wherever_it_stands(tmp_path: Path) -> None:
    path = write(tmp_path, 'max-line = 100\nlisten = ["tcp:7000"]\nserver-name = "file"\n')
    options = parse("--max-line", "200", "--config", path, "--listen", "tcp:7100")
    assert options["max-line"] == 200
    assert options["listen"] == ["tcp:7100"]  # replaced, not added to
    assert options["server-name"] == "file"


def test_options_added_later_are_accepted_without_touching_config() -> None:
    class Extended(Options):
        optParameters: ClassVar[list[list[Any]]] = [["flood-rate", None, 0.0, "", float]]
        optFlags: ClassVar[list[list[Any]]] = [["quiet", None, ""]]

    keys = config.file_keys(Extended())
    assert keys["flood-rate"] == "parameter"
    assert keys["quiet"] == "flag"
    assert keys["listen"] == "repeatable"
    assert "help" not in keys and "config" not in keys


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus = 1", "unknown key 'bogus'"),
        ("max-line = -1", "max-line"),
        ("max-line = \"lots\"", "max-line"),
        ("max-line = true", "max-line"),
        ("max-line = [1, 2]", "max-line"),
        ("no-echo = \"yes\"", "no-echo"),
        ("listen = [\"nosuchtype:1\"]", "listen"),
        ("echo-udp = [\"udp:70000\"]", "echo-udp"),
        ("config = \"other.toml\"", "unknown key 'config'"),
        ("help = true", "unknown key 'help'"),
        ("[operators]\nalice = \"plaintext\"", "[operators]"),
        ("[operators]\nalice = 5", "[operators]"),
        ("operators = \"x\"", "[operators]"),
        ("max-line = ", "not valid TOML"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(usage.UsageError) as caught:
        parse("--config", path)
    assert path in str(caught.value)
    assert named in str(caught.value)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match=r"nonexistent\.toml"):
        parse("--config", str(tmp_path / "nonexistent.toml"))


def test_twistd_reports_a_bad_file_as_usage_not_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, "max-line = -5\n")
    result = subprocess.run(
        [sys.executable, "-m", "twisted", "chatd", "--config", path],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert path in result.stdout + result.stderr and "max-line" in result.stdout + result.stderr


def test_example_file_sets_every_option_to_its_default() -> None:
    example = str(ROOT / "chatd.example.toml")
    document = config.read_file(example)
    defaults = Options()
    # motd has no default, so the example can only show it in a comment.
    # motd, topic and redis have no default; the example shows them commented out.
    missing = set(config.file_keys(defaults)) - set(document) - {"motd", "topic", "redis"}
    # The one default that depends on the machine (the open-file limit) is described there
    # in a comment instead of being set.
    missing -= {"max-clients"}
    assert not missing, f"chatd.example.toml lacks {sorted(missing)}"
    assert dict(parse("--config", example)) == dict(parse()) | {"config": example}


# --- Reloading (the SIGHUP machinery, without the signal) -----------------------------------


class Target:
    def __init__(self, keys: set[str]) -> None:
        self.reloadable_options = frozenset(keys)
        self.seen: list[Any] = []

    def reconfigure(self, options: Any) -> None:
        self.seen.append({k: options[k] for k in self.reloadable_options})


@pytest.fixture
def logged() -> Any:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(e) for e in events]
    globalLogPublisher.removeObserver(events.append)


def test_reload_applies_what_changed_and_logs_it(tmp_path: Path, logged: Any) -> None:
    path = write(tmp_path, 'max-line = 100\nlisten = ["tcp:7000"]\n')
    options = parse("--config", path)
    target = Target({"max-line"})
    reloader = Reloader(lambda: parse(*options.argv), options, [target])
    write(tmp_path, 'max-line = 50\nlisten = ["tcp:7001"]\n')
    assert reloader.reload() == ["max-line"]
    assert target.seen == [{"max-line": 50}]
    lines = logged()
    assert any("max-line changed from 100 to 50" in line for line in lines)
    assert any("listen" in line and "restart" in line for line in lines)


def test_reload_keeps_the_old_configuration_on_a_broken_file(tmp_path: Path,
                                                            logged: Any) -> None:
    path = write(tmp_path, "max-line = 100\n")
    options = parse("--config", path)
    target = Target({"max-line"})
    reloader = Reloader(lambda: parse(*options.argv), options, [target])
    write(tmp_path, "max-line = oops\n")
    assert reloader.reload() == []
    assert target.seen == []
    assert reloader.current["max-line"] == 100
    assert any("not reloaded" in line and path in line for line in logged())


def test_reload_logs_operator_names_never_hashes(tmp_path: Path, logged: Any) -> None:
    path = write(tmp_path, "")
    options = parse("--config", path)
    target = Target({"operators"})
    reloader = Reloader(lambda: parse(*options.argv), options, [target])
    write(tmp_path, f'[operators]\nalice = "{CHEAP_HASH}"\n')
    assert reloader.reload() == ["operators"]
    assert target.seen == [{"operators": {"alice": CHEAP_HASH}}]
    text = "\n".join(logged())
    assert "alice" in text and CHEAP_HASH not in text
