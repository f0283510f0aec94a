"""Helpers for the client's end-to-end tests: a chat server, a peer, certificates.

The server is the real daemon, run by twistd from the same environment as the tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from chatd.passwd import hash_password
from tests.support import free_port

HERE = Path(__file__).parent


def client_command() -> list[str]:
    """The installed ``chatd-client`` script, or the module if it is not installed."""
    script = shutil.which("chatd-client", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chatd.client.main"]


# An operator for the daemon's configuration file; a cheap hash, since these tests check
# what operators do, not what guessing their password costs.
OPERATOR = "admin"
OPERATOR_PASSWORD = "opsecret"


class ChatServer:
    """The real daemon, ``twistd -n chatd``, in a subprocess on 127.0.0.1.

    ``restart`` keeps the port, so a client can reconnect to the same address.
    With ``operators``, its configuration file lets ``/oper admin opsecret`` in.
    """

    def __init__(self, tls: tuple[Path, Path] | None = None, operators: bool = False) -> None:
        self.tls = tls
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="chatd-client-e2e-"))
        self.config: Path | None = None
        if operators:
            self.config = self.workdir / "chatd.toml"
            self.config.write_text(
                f'[operators]\n{OPERATOR} = "{hash_password(OPERATOR_PASSWORD, n=2**4)}"\n'
            )

    def command(self) -> list[str]:
        twistd = str(Path(sys.executable).parent / "twistd")
        if self.tls:
            cert, key = self.tls
            listen = f"ssl:{self.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        else:
            listen = f"tcp:{self.port}:interface=127.0.0.1"
        config = ["--config", str(self.config)] if self.config else []
        return [
            twistd, "--pidfile=", f"--logfile={self.log}", "-n",
            "chatd", *config, "--no-echo", "--listen", listen,
        ]

    @property
    def log(self) -> Path:
        return self.workdir / "chatd.log"

    def start(self) -> None:
        self.log.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.command(), cwd=self.workdir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log.read_text() if self.log.exists() else ""
            if f"starting on {self.port}" in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"chatd did not start:\n{text}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Peer:
    """Another user, on a plain blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode("utf-8") + b"\r\n")

    def expect(self, text: str, timeout: float = 10.0) -> str:
        """Read until a line containing ``text`` arrives; return that line."""
        return self.lines_until(text, timeout)[-1]

    def lines_until(self, text: str, timeout: float = 10.0) -> list[str]:
        """Read until a line containing ``text`` arrives; return every line read, it last."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                lines.append(raw.decode("utf-8", "replace"))
                if text in lines[-1]:
                    return lines
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"peer never saw {text!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before {text!r}")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class StandInServer:
    """A stand-in for the daemon: says ``lines`` to each connection, then closes it.

    It counts the connections, so a test can tell whether the client came back.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so that the thread notices close() soon
        self.port = int(self.sock.getsockname()[1])
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.sendall("".join(f"{line}\r\n" for line in self.lines).encode("utf-8"))
                # Close our side, then read until the client closes too: closing with
                # its lines unread would reset the connection, losing ours in flight.
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(5)
                try:
                    while conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self.closing.set()
        self.thread.join(timeout=10)
        self.sock.close()


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1/localhost signed by it.

    Returns (ca.pem, server-cert.pem, server-key.pem).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatd test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / "ca.pem"
    cert_pem = directory / "server-cert.pem"
    key_pem = directory / "server-key.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def client_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # pexpect's pty does not answer cursor queries
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    return env
