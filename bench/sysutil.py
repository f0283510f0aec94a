"""Small helpers: descriptor limits, free ports, process stats, machine description."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import socket
import subprocess

CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago. It races other processes until the
    server binds it; kept for the peers compared against (ngircd, InspIRCd and the asyncio
    servers take a fixed port in their configuration). chatd itself can listen on port 0
    and log the port it got (README "Logs": ``listening: ...``)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process (threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description() -> dict[str, str]:
    """What the results were measured on: CPU, memory, kernel, and every server's version."""
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        import twisted

        twisted_version = twisted.__version__
    except ImportError:
        twisted_version = "not installed"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu": f"{cpu_model()} ({os.cpu_count()} cores)",
        "memory": f"{mem_kib / 1048576:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "twisted": twisted_version,
        "ngircd": _first_line(["ngircd", "--version"])
        if shutil.which("ngircd")
        else "not installed",
        "inspircd": _first_line([inspircd_binary() or "inspircd", "--version"])
        if inspircd_binary()
        else "not installed",
        "xinetd": ("xinetd " + _first_line(["xinetd", "-version"]))
        if shutil.which("xinetd")
        else "not installed",
        "nofile": f"{soft}/{hard}",
    }


def inspircd_binary() -> str | None:
    for cand in ("inspircd", "/usr/sbin/inspircd"):
        path = shutil.which(cand)
        if path:
            return path
    return None
