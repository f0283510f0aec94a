"""The configuration file: ``--config chatd.toml`` read with ``tomllib``.

Which keys the file accepts is derived from the ``Options`` class itself, so an option
added to tap.py can be set in the file without touching this module:

- a parameter (``optParameters``) is a scalar: ``max-line = 4096``;
- a flag (``optFlags``) is a boolean: ``no-echo = true``;
- an option with its own ``opt_`` method that takes a value (``listen``, ``echo``,
  ``echo-udp``) is repeatable, so it is an array: ``listen = ["tcp:7777", "tcp6:7777"]``.

Values go through the very handlers the command line uses, so they are checked and coerced
the same way. An option given on the command line wins: the file's value for it is never
applied. Tables that are not options (``[operators]``) are read by the parsers in
``CONFIG_TABLES``.
"""

from __future__ import annotations

import getopt
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.python import reflect, usage

from chatd.passwd import check_hash

# Options that make no sense in a file: they act at once, or they name the file itself.
NOT_IN_FILE = frozenset({"help", "version", "config"})


class ConfigError(usage.UsageError):
    """A configuration file that cannot be used; the message names the file and the key."""


def _operators(value: object) -> dict[str, str]:
    """``[operators]``: operator name = password hash from ``chatd-passwd``."""
    if not isinstance(value, dict):
        raise ValueError("must be a table of name = \"password hash\"")
    operators: dict[str, str] = {}
    for name, encoded in value.items():
        if not name or not isinstance(encoded, str):
            raise ValueError(f"{name!r} must be a password hash string from chatd-passwd")
        try:
            check_hash(encoded)
        except ValueError as e:
            raise ValueError(f"{name!r}: {e}") from None
        operators[name] = encoded
    return operators


# Tables of the file that are not command-line options, and how each one is read.
CONFIG_TABLES: dict[str, Callable[[object], Any]] = {"operators": _operators}


def read_file(path: str) -> dict[str, Any]:
    """The parsed TOML document, or ConfigError saying why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from None


def scan_command_line(options: usage.Options, argv: Sequence[str]) -> tuple[str | None, set[str]]:
    """The ``--config`` path in ``argv`` and the canonical names of every option it sets.

    Uses getopt exactly as ``parseOptions`` will, without running any handler. A malformed
    command line yields nothing here; ``parseOptions`` reports it properly.
    """
    try:
        opts, _ = getopt.getopt(list(argv), options.shortOpt, options.longOpt)
    except getopt.error:
        return None, set()
    config: str | None = None
    given: set[str] = set()
    for opt, arg in opts:
        name = opt.lstrip("-")
        canonical = options.synonyms.get(name) or options.synonyms.get(name.replace("-", "_"))
        if canonical is None:
            continue
        given.add(canonical)
        if canonical == "config":
            config = arg
    return config, given


def file_keys(options: usage.Options) -> dict[str, str]:
    """Every key the file accepts, mapped to its kind: "flag", "parameter" or "repeatable"."""
    parameters: list[Any] = []
    reflect.accumulateClassList(type(options), "optParameters", parameters)
    flags: list[Any] = []
    reflect.accumulateClassList(type(options), "optFlags", flags)
    kinds = {p[0]: "parameter" for p in parameters}
    kinds.update({f[0]: "flag" for f in flags})
    for long in options.longOpt:
        name = long.rstrip("=")
        if name not in kinds:
            # An opt_ method: with "=" it takes a value, and such methods append (listen).
            kinds[name] = "repeatable" if long.endswith("=") else "flag"
    for name in NOT_IN_FILE:
        kinds.pop(name, None)
    return kinds


def apply_file(options: usage.Options, path: str, skip: set[str]) -> set[str]:
    """Feeds every setting in the file at ``path`` to ``options``, except those in ``skip``.

    Returns the keys it applied.
    """
    applied: set[str] = set()
    document = read_file(path)
    kinds = file_keys(options)
    for key, value in document.items():
        if key in CONFIG_TABLES:
            try:
                options[key] = CONFIG_TABLES[key](value)
            except ValueError as e:
                raise ConfigError(f"config file {path}: [{key}]: {e}") from None
            continue
        kind = kinds.get(key)
        if kind is None:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        if key in skip:
            continue
        applied.add(key)
        try:
            for argument in _arguments(kind, value):
                _dispatch(options, key, argument)
        except (usage.UsageError, ValueError, TypeError) as e:
            raise ConfigError(f"config file {path}: {key}: {e}") from None
    return applied


def blame_file(error: usage.UsageError, path: str, applied: set[str]) -> usage.UsageError:
    """``error`` from checks that run after parsing, pointed at the file when it is the cause.

    Those checks name the option as on the command line (``--listen 'x': ...``).
    """
    message = str(error)
    for key in applied:
        if f"--{key} " in message or f"--{key}=" in message or message.endswith(f"--{key}"):
            return ConfigError(f"config file {path}: {key}: {message}")
    return error


def _arguments(kind: str, value: object) -> list[str | None]:
    """What the command line would have passed to the option's handler for ``value``."""
    if kind == "flag":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, not {value!r}")
        return [None] if value else []
    if kind == "repeatable":
        values = value if isinstance(value, list) else [value]
        return [_scalar(v) for v in values]
    return [_scalar(value)]


def _scalar(value: object) -> str:
    # bool is an int in Python; a true/false where a number belongs is a mistake.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a string or a number, not {value!r}")
    return str(value)


def _dispatch(options: usage.Options, key: str, argument: str | None) -> None:
    handler = options._dispatch[key]
    if isinstance(handler, usage.CoerceParameter):
        handler.dispatch(key, argument)
    elif argument is None:
        handler(key)
    else:
        handler(key, argument)


def settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of the option values, for comparing one configuration with the next."""
    return {key: value for key, value in options.items() if not key.startswith("_")}
