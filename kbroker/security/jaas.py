"""Kafka's ``sasl.jaas.config`` value: JAAS login module entries.

The grammar is Kafka's JaasConfig (a Java StreamTokenizer): ``<LoginModuleClass> <flag>
(<key>=<value>)* ;`` repeated, where the flag is required, requisite, sufficient or
optional (any case), a value is a bare word or a single- or double-quoted string with
backslash escapes, and ``//``, ``/* */`` and ``/``-to-end-of-line are comments.

Values are often passwords: no error message quotes one. Messages name the config key,
the entry and the option key at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kbroker.config.errors import ConfigError

FLAGS = ("required", "requisite", "sufficient", "optional")
#: What StreamTokenizer answers for these escapes inside quotes.
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True)
class JaasEntry:
    """One login module entry."""

    login_module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # options hold passwords
        return f"JaasEntry({self.login_module!r}, {self.flag!r}, options={sorted(self.options)})"


# Token kinds: a word or quoted string carries text; ';' and '=' are themselves.
_WORD, _SEMI, _EQ, _OTHER = "word", ";", "=", "other"


def _is_word_char(c: str) -> bool:
    # As JaasConfig sets the tokenizer: 33..128 and 160..255 are word characters, as is
    # every character above 255; '/', quotes, ';' and '=' are not.
    o = ord(c)
    if c in "/;='\"":
        return False
    return 33 <= o <= 128 or o >= 160


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if ord(c) <= 32:
            i += 1
        elif c == "/":
            if text.startswith("/*", i):
                end = text.find("*/", i + 2)
                i = n if end < 0 else end + 2
            else:  # '//' or a lone '/' (the comment character): to the end of the line
                while i < n and text[i] not in "\r\n":
                    i += 1
        elif c in "'\"":
            i, value = _quoted(text, i + 1, c)
            out.append((_WORD, value))
        elif c == ";":
            out.append((_SEMI, c))
            i += 1
        elif c == "=":
            out.append((_EQ, c))
            i += 1
        elif _is_word_char(c):
            start = i
            while i < n and _is_word_char(text[i]):
                i += 1
            out.append((_WORD, text[start:i]))
        else:
            out.append((_OTHER, c))
            i += 1
    return out


def _quoted(text: str, i: int, quote: str) -> tuple[int, str]:
    """The string from ``i`` to the closing quote (or line end, as StreamTokenizer), unescaped."""
    buf: list[str] = []
    n = len(text)
    while i < n and text[i] != quote and text[i] not in "\r\n":
        c = text[i]
        i += 1
        if c == "\\" and i < n:
            c = text[i]
            i += 1
            if c in "01234567":  # up to three octal digits (\0..\377)
                digits = c
                limit = 3 if c <= "3" else 2
                while len(digits) < limit and i < n and text[i] in "01234567":
                    digits += text[i]
                    i += 1
                c = chr(int(digits, 8))
            else:
                c = _ESCAPES.get(c, c)
        buf.append(c)
    if i < n and text[i] == quote:
        i += 1
    return i, "".join(buf)


def parse_jaas(text: str, key: str = "sasl.jaas.config") -> list[JaasEntry]:
    """Every login module entry of a JAAS config value; :class:`ConfigError` naming ``key``
    when it is malformed."""

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{key}: {what}", key=key)

    tokens = _tokens(text)
    entries: list[JaasEntry] = []
    pos = 0
    while pos < len(tokens):
        number = len(entries) + 1
        kind, module = tokens[pos]
        if kind != _WORD:
            raise fail(f"entry {number} does not start with a login module class name")
        pos += 1
        if pos >= len(tokens):
            raise fail(f"login module control flag not specified for {module}")
        kind, flag = tokens[pos]
        if kind != _WORD:
            raise fail(f"login module control flag is not available for {module}")
        if flag.lower() not in FLAGS:
            raise fail(f"invalid login module control flag for {module} (expected one of {', '.join(FLAGS)})")
        pos += 1
        options: dict[str, str] = {}
        last = None
        while pos < len(tokens) and tokens[pos][0] != _SEMI:
            kind, opt = tokens[pos]
            if kind != _WORD:
                after = f" after option '{last}'" if last else ""
                raise fail(f"option name expected{after} in the entry of {module}")
            if (pos + 2 >= len(tokens) or tokens[pos + 1][0] != _EQ
                    or tokens[pos + 2][0] != _WORD):
                # Not quoting ``opt``: a malformed value may have split a password into words.
                after = f" after option '{last}'" if last else ""
                raise fail(f"value not specified for an option{after} in the entry of {module}")
            options[opt] = tokens[pos + 2][1]
            last = opt
            pos += 3
        if pos >= len(tokens):
            raise fail(f"the entry of {module} is not terminated by a semicolon")
        pos += 1
        entries.append(JaasEntry(module, flag.lower(), options))
    if not entries:
        raise fail("login module not specified")
    return entries


def single_entry(text: str, key: str) -> JaasEntry:
    """The one login module entry a broker's per-mechanism JAAS config holds (as Kafka
    requires of ``sasl.jaas.config``)."""
    entries = parse_jaas(text, key)
    if len(entries) != 1:
        raise ConfigError(f"{key}: JAAS config property contains {len(entries)} login modules, should be 1 module",
                          key=key)
    return entries[0]
