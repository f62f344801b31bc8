"""A reader for Java ``.properties`` files (``server.properties``).

Follows ``java.util.Properties.load``: ``#`` and ``!`` comment lines, ``key=value``,
``key: value`` and ``key value`` pairs, line continuation with an odd number of
trailing backslashes (leading whitespace of the continuation line is dropped),
and the escapes ``\\t \\n \\r \\f \\uXXXX``; a backslash before any other character
stands for that character. The last occurrence of a key wins. Values keep their
trailing whitespace here; typed parsing trims them, as Kafka does.
"""

from __future__ import annotations

import re
from pathlib import Path

from kbroker.config.errors import ConfigError
from kbroker.fs import store_for

_WHITESPACE = " \t\f"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _ends_with_continuation(line: str) -> bool:
    """True when ``line`` ends in an odd number of backslashes."""
    count = len(line) - len(line.rstrip("\\"))
    return count % 2 == 1


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continued natural lines; return (first line number, logical line) pairs."""
    natural = _LINE_BREAK.split(text)
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(natural):
        lineno = i + 1
        line = natural[i].lstrip(_WHITESPACE)
        i += 1
        if not line or line[0] in "#!":
            continue  # blank or comment; a comment line never continues
        parts: list[str] = []
        while _ends_with_continuation(line):
            parts.append(line[:-1])
            if i >= len(natural):
                line = ""
                break
            line = natural[i].lstrip(_WHITESPACE)
            i += 1
        parts.append(line)
        out.append((lineno, "".join(parts)))
    return out


def _unescape(raw: str, lineno: int) -> str:
    """Resolve backslash escapes in a key or value."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= len(raw):
            break  # a lone trailing backslash stands for nothing
        c = raw[i]
        if c == "u":
            digits = raw[i + 1 : i + 5]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ConfigError(f"line {lineno}: malformed \\uxxxx escape")
            out.append(chr(int(digits, 16)))
            i += 5
            continue
        out.append(_SIMPLE_ESCAPES.get(c, c))
        i += 1
    return "".join(out)


def _split_pair(line: str) -> tuple[str, str]:
    """Split a logical line into its raw (still escaped) key and value."""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=:" or c in _WHITESPACE:
            break
        i += 1
    key = line[:i]
    j = i
    while j < n and line[j] in _WHITESPACE:
        j += 1
    if j < n and line[j] in "=:":
        j += 1
        while j < n and line[j] in _WHITESPACE:
            j += 1
    return key, line[j:]


def parse_properties(text: str) -> dict[str, str]:
    """Parse the text of a ``.properties`` file into an ordered key -> value dict."""
    props: dict[str, str] = {}
    for lineno, line in _logical_lines(text):
        raw_key, raw_value = _split_pair(line)
        key = _unescape(raw_key, lineno)
        props.pop(key, None)  # keep the order of the last occurrence
        props[key] = _unescape(raw_value, lineno)
    return props


def load_properties(path: str | Path) -> dict[str, str]:
    """Read and parse a ``.properties`` file (UTF-8, falling back to ISO-8859-1)."""
    try:
        data = store_for(path).read_bytes(Path(path))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("iso-8859-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return parse_properties(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
