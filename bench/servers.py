"""The servers under test: how to configure, start, stop and describe each one.

Every server listens on 127.0.0.1 only, on ports picked free at start, with configs
generated into a temporary directory.  A server whose program is not installed is
skipped with a message saying which Debian package brings it (``make bench-peers``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import native
from bench.swarm import CHAT, IRC
from bench.sysutil import free_port, inspircd_binary

REPO = Path(__file__).resolve().parent.parent
BLOCKS = "blocks"  # the trivial block server: the generator's ceiling, not a peer


class Skip(Exception):
    """This server cannot run here (not installed, failed to start)."""


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    pid: int  # the process whose memory and CPU we measure
    proto: str | None = None  # chat protocol spoken: CHAT or IRC (None: echo only)
    port: int = 0
    echo_port: int = 0
    echo_udp_port: int = 0
    tmp: Path = field(default_factory=Path)
    inflight: int = 64  # handshakes the generator keeps in flight (ngircd's backlog is tiny)
    mass_target: bytes = b""  # IRC: an oper's message target that reaches every user

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"{name} exited at start (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    raise Skip(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _popen(
    cmd: list[str], core: int, tmp: Path, name: str, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - owned by the child
    full = ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, env=env)


# ------------------------------------------------------------------ chatd
# Flood control and the per-address limits off, nothing else changed (issue 4): one
# generator address stands for many people. bench/cluster.py starts its chatds with these too.
CHATD_LIMITS_OFF = ["--flood-rate", "0", "--max-per-ip", "0", "--connect-rate", "0"]

def start_chatd(
    core: int,
    chat: bool = True,
    echo: bool = True,
    state: str | None = None,
    traced: bool = False,
    irc: bool = False,
) -> Running:
    """chatd as shipped; ``state="none"`` runs it without the SQLite history writer, to
    show what persistence costs; ``traced`` runs it under ``bench.tracehook`` (SIGUSR2
    writes a tracemalloc snapshot into the server's temp dir); ``irc`` (chatd-irc) adds
    ``--irc`` and an operator ``bench``, and the scenarios speak IRC to it, the load
    ngircd and InspIRCd get (the scale broadcast is the operator's ``PRIVMSG $*``)."""
    twistd = shutil.which("twistd", path=str(Path(sys.executable).parent)) or shutil.which("twistd")
    if twistd is None:
        raise Skip("chatd: twistd not found (pip install -e .)")
    try:
        import chatd.tap  # noqa: F401
    except ImportError as e:
        raise Skip(f"chatd: server not importable yet ({e})") from None
    tmp = Path(tempfile.mkdtemp(prefix="bench-chatd-"))
    port, eport, uport = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    cmd = [twistd, "-n", "--pidfile=", "chatd",
           "--listen", f"tcp:{port}:interface=127.0.0.1",
           "--echo", f"tcp:{eport}:interface=127.0.0.1",
           "--echo-udp", f"udp:{uport}:interface=127.0.0.1",
           *CHATD_LIMITS_OFF,
           # For UDP echo the per-source rate is that limit, and the total cap is what a
           # single source would hit.
           "--echo-udp-rate", "0", "--echo-udp-total-rate", "0"]  # fmt: skip
    # The default --state is chatd.sqlite3 in the working directory, here the temp dir.
    name = "chatd" if state is None else f"chatd-state-{state}"
    if state is not None:
        cmd += ["--state", state]
    iport = 0
    if irc:
        from chatd.passwd import hash_password

        name, iport = "chatd-irc", free_port()
        (tmp / "chatd.toml").write_text(f'[operators]\nbench = "{hash_password("bench")}"\n')
        cmd += ["--irc", f"tcp:{iport}:interface=127.0.0.1", "--config", "chatd.toml"]
    env: dict[str, str] = {}
    if traced:
        cmd[0:1] = [sys.executable, "-m", "bench.tracehook"]
        env["BENCH_SNAPSHOT_DIR"] = str(tmp)
    proc = _popen(cmd, core, tmp, name, env)
    _wait_port(port, proc, name, timeout=60 if traced else 15)  # tracing slows the import
    if irc:
        _wait_port(iport, proc, name)
        return Running(name, proc, proc.pid, IRC, iport, eport, uport, tmp, 64, b"$*")
    return Running(name, proc, proc.pid, CHAT, port, eport, uport, tmp)


# ------------------------------------------------------------------ block server
def start_blocks(core: int) -> Running:
    """The trivial server in bench/gen/blocks.go: each read's lines written as one block
    to every other client, nothing else; what the generator counts against it is the
    generator's own ceiling."""
    try:
        exe = native.binary()
    except native.NativeMissing as e:
        raise Skip(f"{BLOCKS}: {e}") from None
    tmp = Path(tempfile.mkdtemp(prefix="bench-blocks-"))
    port = free_port()
    proc = _popen([str(exe), "serve-blocks", "-port", str(port), "-limit", "14400"],
                  core, tmp, BLOCKS)  # fmt: skip
    _wait_port(port, proc, BLOCKS)
    return Running(BLOCKS, proc, proc.pid, CHAT, port, 0, 0, tmp)


# ------------------------------------------------------------------ Python peers
def start_threaded(core: int) -> Running:
    tmp = Path(tempfile.mkdtemp(prefix="bench-threaded-"))
    port, eport = free_port(), free_port()
    cmd = [sys.executable, "-m", "bench.peers.threaded", "--port", str(port), "--echo", str(eport)]
    proc = _popen(cmd, core, tmp, "threaded")
    _wait_port(port, proc, "threaded")
    return Running("threaded", proc, proc.pid, CHAT, port, eport, 0, tmp)


def start_asyncio(core: int) -> Running:
    tmp = Path(tempfile.mkdtemp(prefix="bench-asyncio-"))
    port, eport, uport = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    cmd = [sys.executable, "-m", "bench.peers.asyncio_peer", "--port", str(port),
           "--echo", str(eport), "--echo-udp", str(uport)]  # fmt: skip
    proc = _popen(cmd, core, tmp, "asyncio")
    _wait_port(port, proc, "asyncio")
    return Running("asyncio", proc, proc.pid, CHAT, port, eport, uport, tmp)


def start_twisted_floor(core: int) -> Running:
    """bench/peers/twisted_floor.py: Twisted's own cost per connection (bench.memory)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-twisted-floor-"))
    port = free_port()
    cmd = [sys.executable, "-m", "bench.peers.twisted_floor", "--port", str(port)]
    proc = _popen(cmd, core, tmp, "twisted-floor")
    _wait_port(port, proc, "twisted-floor")
    return Running("twisted-floor", proc, proc.pid, CHAT, port, 0, 0, tmp)


# ------------------------------------------------------------------ ngircd
NGIRCD_CONF = """\
[Global]
	Name = bench.local
	Info = chatd benchmark peer
	Listen = 127.0.0.1
	Ports = {port}
	MotdPhrase = bench
	PidFile = {tmp}/ngircd.pid
	ServerUID = 0
	ServerGID = 0
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 16
	MaxPenaltyTime = 0
	PingTimeout = 3600
	PongTimeout = 3600
	IdleTimeout = 0
[Options]
	DNS = no
	Ident = no
	PAM = no
	ConnectIPv6 = no
	MorePrivacy = no
[Operator]
	Name = bench
	Password = bench
"""


def start_ngircd(core: int) -> Running:
    exe = shutil.which("ngircd") or (
        "/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd") else None
    )
    if exe is None:
        raise Skip("ngircd not installed (apt-get install ngircd; make bench-peers)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ngircd-"))
    port = free_port()
    conf = tmp / "ngircd.conf"
    conf.write_text(NGIRCD_CONF.format(port=port, tmp=tmp))
    proc = _popen([exe, "--nodaemon", "--config", str(conf)], core, tmp, "ngircd")
    _wait_port(port, proc, "ngircd")
    return Running("ngircd", proc, proc.pid, IRC, port, 0, 0, tmp, 8, b"$bench.local")


# ------------------------------------------------------------------ InspIRCd
INSPIRCD_CONF = """\
<server name="bench.local" description="chatd benchmark peer" network="bench">
<admin name="bench" nick="bench" email="bench@bench.local">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" maxchans="20" timeout="3600" pingfreq="3600"
         hardsendq="64M" softsendq="64M" recvq="64M"
         threshold="1000000" commandrate="1000000000" fakelag="no"
         localmax="100000" globalmax="100000" resolvehostnames="no" useident="no"
         limit="100000">
<channels users="100" opers="100">
<files motd="{tmp}/motd.txt">
<pid file="{tmp}/inspircd.pid">
<dns timeout="1">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes"
         pingwarning="15" exemptchanops="">
<performance netbuffersize="65000" somaxconn="4096" softlimit="{softlimit}"
             clonesonconnect="no" quietbursts="yes">
<security announceinvites="dynamic" hideserver="" userstats="Pu" flatlinks="no"
          hidesplits="no" hidebans="no" maxtargets="20">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="11" maxhost="64"
        maxquit="255" maxtopic="307" maxkick="255" maxreal="128" maxaway="200">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{tmp}/ircd.log">
<class name="BenchMass" commands="*" privs="users/mass-message" usermodes="*" chanmodes="*">
<type name="BenchOper" classes="BenchMass">
<oper name="bench" password="bench" host="*@*" type="BenchOper">
<whowas groupsize="10" maxgroups="100000" maxkeep="3d">
"""


def start_inspircd(core: int, nofile: int) -> Running:
    exe = inspircd_binary()
    if exe is None:
        raise Skip("inspircd not installed (apt-get install inspircd; make bench-peers)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-inspircd-"))
    port = free_port()
    (tmp / "motd.txt").write_text("bench\n")
    conf = tmp / "inspircd.conf"
    conf.write_text(INSPIRCD_CONF.format(port=port, tmp=tmp, softlimit=max(nofile - 100, 1024)))
    cmd = [exe, "--config", str(conf), "--runasroot", "--nofork", "--nopid"]
    proc = _popen(cmd, core, tmp, "inspircd")
    _wait_port(port, proc, "inspircd", timeout=30)
    return Running("inspircd", proc, proc.pid, IRC, port, 0, 0, tmp, 64, b"$*")


# ------------------------------------------------------------------ xinetd
XINETD_CONF = """\
defaults
{{
	instances = UNLIMITED
	per_source = UNLIMITED
	cps = 100000 1
	log_type = FILE {tmp}/xinetd.log
}}

service echo
{{
	type = INTERNAL UNLISTED
	id = echo-stream
	socket_type = stream
	protocol = tcp
	wait = no
	user = root
	bind = 127.0.0.1
	port = {port}
	cps = 100000 1
	instances = UNLIMITED
	per_source = UNLIMITED
}}

service echo
{{
	type = INTERNAL UNLISTED
	id = echo-dgram
	socket_type = dgram
	protocol = udp
	wait = yes
	user = root
	bind = 127.0.0.1
	port = {uport}
	cps = 100000 1
	instances = UNLIMITED
	per_source = UNLIMITED
}}
"""


def start_xinetd(core: int) -> Running:
    exe = shutil.which("xinetd") or (
        "/usr/sbin/xinetd" if os.path.exists("/usr/sbin/xinetd") else None
    )
    if exe is None:
        raise Skip("xinetd not installed (apt-get install xinetd; make bench-peers)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-xinetd-"))
    port, uport = free_port(), free_port(socket.SOCK_DGRAM)
    conf = tmp / "xinetd.conf"
    conf.write_text(XINETD_CONF.format(port=port, uport=uport, tmp=tmp))
    # Internal services are looked up by service name, so both are called "echo"
    # (told apart by id); -filelog because there may be no syslog here.
    cmd = [exe, "-dontfork", "-f", str(conf), "-pidfile", str(tmp / "xinetd.pid"),
           "-filelog", str(tmp / "xinetd-own.log")]  # fmt: skip
    proc = _popen(cmd, core, tmp, "xinetd")
    _wait_port(port, proc, "xinetd")
    return Running("xinetd", proc, proc.pid, None, 0, port, uport, tmp)
