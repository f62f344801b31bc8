"""``kbroker trace``: read a flight recorder file (``kbroker serve --record FILE``) as one
readable line per request, filtered by API, client, topic or errors, or follow a live one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: How often ``--follow`` looks for new lines.
POLL_SECONDS = 0.1


def register(subparsers: Any) -> None:
    """Add the ``trace`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "trace", help="show a flight recorder file (serve --record) one line per request",
        description=("Show the requests a broker recorded (kbroker serve --record FILE, record.file): "
                     "time, connection, client, API and version, latency, sizes, topics and errors."))
    parser.add_argument("file", metavar="FILE", help="the recorder's JSON lines file")
    parser.add_argument("--api", action="append", default=[], metavar="API",
                        help="only this API, by name (Produce, fetch) or key (0); repeatable, or comma-separated")
    parser.add_argument("--client", metavar="C",
                        help="only clients whose client id or host:port contains C")
    parser.add_argument("--topic", metavar="T", help="only requests naming topic T (or answering an error for it)")
    parser.add_argument("--errors", action="store_true",
                        help="only requests answered with an error code, failed, or closed")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep reading as the broker records (until interrupted)")
    parser.add_argument("--json", action="store_true", help="print the matching lines as recorded (JSON)")
    parser.set_defaults(handler=run)


class Filter:
    """Which recorded lines to show."""

    def __init__(self, apis: list[str], client: str | None, topic: str | None, errors: bool) -> None:
        wanted = [a.strip().lower() for spec in apis for a in spec.split(",") if a.strip()]
        self.names = {a for a in wanted if not a.lstrip("-").isdigit()}
        self.keys = {int(a) for a in wanted if a.lstrip("-").isdigit()}
        self.client = client
        self.topic = topic
        self.errors = errors

    @property
    def selects(self) -> bool:
        """Whether any filter is set (lines other than requests are shown only without one)."""
        return bool(self.names or self.keys or self.client or self.topic or self.errors)

    def __call__(self, line: dict[str, Any]) -> bool:
        if line.get("event") != "request":
            return not self.selects
        if (self.names or self.keys) and not (str(line.get("api", "")).lower() in self.names
                                              or line.get("api_key") in self.keys):
            return False
        if self.client is not None and not (self.client in str(line.get("client_id") or "")
                                            or self.client in str(line.get("client", ""))):
            return False
        if self.topic is not None and self.topic not in (line.get("topics") or []) and not any(
                e.get("topic") == self.topic for e in line.get("errors") or []):
            return False
        return not self.errors or bool(line.get("errors")) or line.get("outcome") in ("closed", "failed")


def _records(value: Any) -> int:
    """Records counted in a recorded body's record data summaries."""
    if isinstance(value, dict):
        inner = value.get("records")
        if isinstance(inner, dict):
            n = inner.get("records")
            return n if isinstance(n, int) else len(n) if isinstance(n, list) else 0
        return sum(_records(v) for v in value.values() if isinstance(v, (dict, list)))
    if isinstance(value, list):
        return sum(_records(v) for v in value if isinstance(v, (dict, list)))
    return 0


def _where(error: dict[str, Any]) -> str:
    """Where an error was: ``topic-partition``, a group or a resource."""
    if "topic" in error:
        return f"{error['topic']}-{error['partition']}" if "partition" in error else str(error["topic"])
    for key in ("group", "resource"):
        if key in error:
            return f"{key} {error[key]}"
    return ""


def format_line(line: dict[str, Any]) -> str:
    """One recorded line as text."""
    event = line.get("event")
    clock = str(line.get("time", ""))[11:23]
    if event == "start":
        return f"{clock} -- recording started (kbroker {line.get('kbroker')}, payloads {line.get('payloads')})"
    if event == "stop":
        dropped = f", {line.get('dropped')} lines dropped" if line.get("dropped") else ""
        return f"{clock} -- recording stopped{dropped}"
    if event == "dropped":
        return (f"{clock} -- {line.get('count')} lines dropped: the recorder fell behind "
                f"({line.get('total')} in all)")
    if event != "request":
        return f"{clock} -- {json.dumps(line)}"
    response_size = line.get("response_size")
    size = f"{line.get('request_size')}B>" + (f"{response_size}B" if response_size is not None else "-")
    parts = [clock, f"conn {line.get('conn')}", str(line.get("client")), repr(line.get("client_id")),
             f"{line.get('api')} v{line.get('version')}", f"corr {line.get('correlation_id')}",
             f"{line.get('latency_ms', 0):.1f}ms", size]
    records = _records(line.get("request")) + _records(line.get("response"))
    if records:
        parts.append(f"{records} records")
    if line.get("topics"):
        shown = line["topics"][:5]
        more = f" +{len(line['topics']) - 5}" if len(line["topics"]) > 5 else ""
        parts.append("topics " + ",".join(shown) + more)
    outcome = line.get("outcome")
    if outcome == "closed":
        parts.append(f"CLOSED ({line.get('reason')})")
    elif outcome == "failed":
        parts.append(f"FAILED ({line.get('reason')})")
    elif outcome == "no_response":
        parts.append("NO RESPONSE")
    errors = line.get("errors") or []
    if errors:
        shown_errors = []
        for e in errors[:5]:
            where = _where(e)
            shown_errors.append(f"{e.get('error')}" + (f"({where})" if where else ""))
        left = len(errors) - 5 + int(line.get("errors_not_shown", 0))
        parts.append("ERROR " + " ".join(shown_errors) + (f" +{left} more" if left > 0 else ""))
    elif outcome == "response":
        parts.append("ok")
    if line.get("throttle_ms"):
        parts.append(f"throttled {line['throttle_ms']}ms")
    return "  ".join(parts)


def read_lines(f: IO[str], follow: bool) -> Iterator[str]:
    """The complete lines of ``f``; with ``follow``, waits for more at the end (forever)."""
    partial = ""
    while True:
        chunk = f.readline()
        if chunk:
            partial += chunk
            if partial.endswith("\n"):
                yield partial
                partial = ""
            continue
        if not follow:
            if partial:
                yield partial  # a last line without its newline
            return
        time.sleep(POLL_SECONDS)


def _open(path: Path, follow: bool) -> IO[str] | None:
    """The file, waiting for it to appear when following."""
    while True:
        try:
            # Bytes that are not UTF-8 (a file that is no recording) make that line unreadable, not the run.
            return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by run
        except FileNotFoundError:
            if not follow:
                return None
            time.sleep(POLL_SECONDS)


def run(args: argparse.Namespace) -> int:
    """Print the recorded lines that pass the filters."""
    path = Path(args.file)
    select = Filter(args.api, args.client, args.topic, args.errors)
    try:
        f = _open(path, args.follow)
    except OSError as e:
        print(f"kbroker: error: cannot read {path}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if f is None:
        print(f"kbroker: error: no such file: {path}", file=sys.stderr)
        return 1
    bad = 0
    try:
        with f:
            for number, text in enumerate(read_lines(f, args.follow), 1):
                try:
                    line = json.loads(text)
                    if not isinstance(line, dict):
                        raise ValueError("not an object")
                    shown = (json.dumps(line) if args.json else format_line(line)) if select(line) else None
                except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
                    # Not JSON, or JSON of another shape (a file that is no recording, a line cut short).
                    bad += 1
                    print(f"kbroker: warning: line {number} of {path} is not a recorded line", file=sys.stderr)
                    continue
                if shown is not None:
                    print(shown, flush=args.follow)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kbroker trace FILE | head`
        sys.stderr.close()  # nothing more can be said
        return 0
    except OSError as e:
        print(f"kbroker: error: cannot read {path}: {e}", file=sys.stderr)
        return 1
    return 1 if bad else 0
