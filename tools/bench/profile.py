"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): top functions by self
and by inclusive time, as % of all samples.

Usage: ``python -m tools.bench.profile prof.txt [--top N] [--filter kbroker]``

Frames are ``function (path:line)``; the line is dropped so a function counts once
whatever line it was on. ``--filter`` keeps, for the inclusive table, only functions
whose path contains the given text (e.g. ``kbroker`` for the broker's own code).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def short_path(path: str) -> str:
    for marker in ("/kbroker/", "/site-packages/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + 1:]
    return path


def frame_key(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{short_path(m.group('path'))}:{m.group('func')}"


def load(path: Path) -> tuple[Counter[str], Counter[str], int]:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_key(f) for f in stack.split(";") if f]
        # py-spy puts the thread name first ("process 1:\"python\"" / "thread (0x..)"): drop non-frames.
        frames = [f for f in frames if ":" in f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return self_t, incl, total


def report(path: Path, top: int = 25, filt: str | None = None) -> str:
    self_t, incl, total = load(path)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples", "", f"Top {top} by self time:", "| % self | function |", "|---:|---|"]
    for key, n in self_t.most_common(top):
        lines.append(f"| {100 * n / total:5.1f} | `{key}` |")
    lines += ["", f"Top {top} by inclusive time" + (f" (paths containing {filt!r})" if filt else "") + ":",
              "| % incl | function |", "|---:|---|"]
    shown = 0
    for key, n in incl.most_common():
        if filt and filt not in key:
            continue
        lines.append(f"| {100 * n / total:5.1f} | `{key}` |")
        shown += 1
        if shown >= top:
            break
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--filter", help="inclusive table: only functions whose path contains this")
    args = ap.parse_args(argv)
    print(report(args.file, args.top, args.filter))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
