"""What ships beside the code: the licence, the changelog, the systemd unit, `make run`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from chatd.version import VERSION

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "contrib" / "chatd.service"
SHIPPED_TWISTD = "/opt/chatd/bin/twistd"


def test_license_is_the_mit_text_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_changelog_keeps_a_changelog_and_its_release_is_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "## [Unreleased]" in text
    releases = re.findall(r"^## \[(\d[^\]]*)\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert releases and releases[0] == VERSION


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_twistd_as_the_issue_and_readme_say() -> None:
    unit = unit_settings()
    assert unit["ExecStart"] == [
        f"{SHIPPED_TWISTD} --nodaemon --pidfile= chatd --config /etc/chatd/chatd.toml"
    ]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["User"] == ["chatd"] and unit["StateDirectory"] == ["chatd"]
    assert unit["WorkingDirectory"] == ["/var/lib/chatd"]  # where chatd.sqlite3 goes
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""]  # port 7 is commented out: opt-in
    assert "AmbientCapabilities" not in unit
    readme = (ROOT / "README.md").read_text()
    assert "contrib/chatd.service" in readme and "systemctl enable --now chatd" in readme


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on the unit with ExecStart pointing at this venv's twistd
    (verify insists the program exists), under the unit's own name."""
    copy = tmp_path / "chatd.service"
    twistd = Path(sys.executable).parent / "twistd"
    assert twistd.exists()
    copy.write_text(unit_text.replace(SHIPPED_TWISTD, str(twistd)))
    return subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60)


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), ".ci/run installs Debian's systemd for this"
    result = verify(UNIT.read_text(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("good", "bad"),
    [("Restart=on-failure", "Restart=on-failur"), ("ProtectSystem=strict", "ProtectSystm=strict")],
)
def test_the_verification_catches_a_broken_unit(tmp_path: Path, good: str, bad: str) -> None:
    text = UNIT.read_text()
    assert good in text
    result = verify(text.replace(good, bad), tmp_path)
    assert result.returncode != 0 or result.stderr != ""


def test_make_run_passes_args_to_twistd_chatd() -> None:
    venv = Path(sys.executable).parent.parent
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}",
         "-o", f"{venv}/.installed-run", "run", "ARGS=--version"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"chatd {VERSION} (Twisted ")
