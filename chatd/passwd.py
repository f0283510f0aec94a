"""Operator password hashes: scrypt from the standard library, and the ``chatd-passwd`` tool.

A hash is one self-describing string, so the cost can be raised later without breaking
hashes already in configuration files::

    scrypt$N$r$p$SALT$KEY      (SALT and KEY in unpadded base64)

Run ``chatd-passwd`` (or ``python -m chatd.passwd``), type the password twice, and paste
the printed line into the ``[operators]`` table of the configuration file; scripts use
``chatd-passwd --stdin``, which reads one line and prints only the hash.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Sequence

from chatd.version import VERSION

SCHEME = "scrypt"
# The scrypt paper's interactive-login cost: 16 MiB and some tens of milliseconds.
COST_N = 2**14
BLOCK_SIZE_R = 8
PARALLELISM_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
# Refuse hashes whose cost would exhaust memory while verifying (128 * r * N bytes).
MAX_MEMORY = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = COST_N, salt: bytes | None = None) -> str:
    """A new hash of ``password`` with a fresh random salt."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _derive(password, salt, n, BLOCK_SIZE_R, PARALLELISM_P, KEY_BYTES)
    return f"{SCHEME}${n}${BLOCK_SIZE_R}${PARALLELISM_P}${_b64(salt)}${_b64(key)}"


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
        maxmem=MAX_MEMORY + 1024 * 1024,
    )


def check_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """The parts of a hash string: (N, r, p, salt, key); ValueError saying what is wrong."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("not a password hash from chatd-passwd (scrypt$N$r$p$salt$key)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("damaged password hash: re-create it with chatd-passwd") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * r * n > MAX_MEMORY or not key:
        raise ValueError("password hash has unusable scrypt parameters")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; a malformed hash matches nothing."""
    try:
        n, r, p, salt, key = check_hash(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p, len(key)), key)


def _arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatd-passwd",
        description="Print a password hash for the [operators] table of chatd's "
        "configuration file (see the README, \"Operators\"). Without --stdin the password "
        "is read twice from the terminal, without echo.",
        epilog="example: chatd-passwd --stdin < secret.txt  (prints scrypt$16384$8$1$...)",
    )
    parser.add_argument(
        "--stdin", action="store_true",
        help="read the password from the first line of standard input, with no prompt "
        "and no confirmation, and print only the hash (for scripts)",
    )
    parser.add_argument("--version", action="version", version=f"chatd-passwd {VERSION}")
    return parser


def _read_stdin_line() -> str:
    """The first line of standard input without its line ending; the rest is not read."""
    line = sys.stdin.readline()
    return line[:-1].removesuffix("\r") if line.endswith("\n") else line


def main(argv: Sequence[str] | None = None) -> int:
    """Reads a password (twice from the terminal, or once with --stdin) and prints its hash."""
    args = _arguments().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.stdin:
        password = _read_stdin_line()
    elif not sys.stdin.isatty():
        print("chatd-passwd: standard input is not a terminal; use --stdin to read the "
              "password from it", file=sys.stderr)
        return 2
    else:
        password = getpass.getpass("Operator password: ")
        if password and getpass.getpass("Again: ") != password:
            print("chatd-passwd: the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("chatd-passwd: an empty password is not allowed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
