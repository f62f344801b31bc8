"""Generate the README's configuration tables from the config definitions.

``python -m kbroker.config.docs`` rewrites the part of README.md between the
``<!-- config-table:begin -->`` and ``<!-- config-table:end -->`` markers;
``--check`` only reports (exit 1) when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from kbroker.config.broker import env_var_name
from kbroker.config.broker_keys import BROKER_CONFIGS
from kbroker.config.topic import TOPIC_CONFIGS
from kbroker.config.types import ConfigDef

BEGIN = "<!-- config-table:begin -->"
END = "<!-- config-table:end -->"


def _cell(value: str | None) -> str:
    if value is None:
        return "—"
    if value == "":
        return '`""`'
    return f"`{value}`"


def broker_table(definitions: Iterable[ConfigDef] = BROKER_CONFIGS.values()) -> str:
    """A Markdown table of broker keys: key, default, description."""
    lines = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for d in definitions:
        lines.append(f"| `{d.name}` | {_cell(d.default_str)} | {d.doc} |")
    return "\n".join(lines)


def topic_table() -> str:
    """A Markdown table of topic configs and the broker keys they default to."""
    lines = ["| Topic config | Broker default from |", "| --- | --- |"]
    for d in TOPIC_CONFIGS.values():
        source = ", ".join(f"`{key}`" for key, _ in d.synonyms) or f"— (default {_cell(d.default_str)})"
        lines.append(f"| `{d.name}` | {source} |")
    return "\n".join(lines)


def generated_section() -> str:
    """The whole generated block, markers included."""
    example = env_var_name("log.dirs")
    return "\n".join(
        [
            BEGIN,
            f"Broker keys (environment variable: `KBROKER_` + key with dots as underscores, e.g. `{example}`):",
            "",
            broker_table(),
            "",
            "Topic configs (CreateTopics / AlterConfigs; an unknown name is rejected):",
            "",
            topic_table(),
            END,
        ]
    )


def update_readme(text: str) -> str:
    """Return ``text`` with the generated block replaced by the current one."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return text[:start] + generated_section() + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or ``--check``) the generated block of a README file."""
    parser = argparse.ArgumentParser(prog="python -m kbroker.config.docs")
    parser.add_argument("readme", nargs="?", default="README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    old = path.read_text(encoding="utf-8")
    new = update_readme(old)
    if args.check:
        if new != old:
            print(f"{path}: configuration table is out of date; run make config-docs", file=sys.stderr)
            return 1
        return 0
    if new != old:
        path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
