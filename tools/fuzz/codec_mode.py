"""In-process fuzzing of the codec: mutated frames through FrameReader and decode_request.

The codec may refuse a frame only with its own errors (:class:`CodecError` and subclasses);
any other exception, or a decode that does not finish in time, is a finding. Decoded
Produce requests also go through the record batch validator, whose faults are reported
under their own kind.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kbroker.codec import CodecError, FrameReader, decode_request
from kbroker.records.batch import BatchError, validate_batches
from kbroker.records.record import iter_records
from tools.fuzz.findings import Findings, exception_signature
from tools.fuzz.mutate import Case, Mutator

MAX_FRAME = 100 * 1024 * 1024


class Hang(Exception):
    """A decode took longer than the hang limit."""


@dataclass
class CodecSummary:
    cases: int = 0
    frames: int = 0
    decoded: int = 0
    codec_errors: int = 0
    seconds: float = 0.0
    findings: Findings = field(default_factory=Findings)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _frames(wire: bytes, cuts: list[int]) -> tuple[list[bytes], str | None]:
    """The frames a FrameReader yields when ``wire`` arrives in pieces cut at ``cuts``; and
    the error that ended the stream, if any."""
    reader = FrameReader(MAX_FRAME)
    out: list[bytes] = []
    prev = 0
    try:
        for cut in [*cuts, len(wire)]:
            reader.feed(wire[prev:cut])
            prev = cut
            while (frame := reader.next_frame()) is not None:
                out.append(frame)
    except CodecError as e:
        return out, type(e).__name__
    return out, None


def check_framing(case: Case, summary: CodecSummary, wire: bytes | None = None) -> None:
    """The frames must not depend on how the bytes (``case.wire`` unless given) were split into reads."""
    wire = case.wire if wire is None else wire
    r = random.Random(case.index)
    whole = _frames(wire, [])
    n = len(wire)
    cuts = sorted(r.sample(range(1, n), min(n - 1, r.choice([1, 2, 5, 20, 100])))) if n > 1 else []
    split = _frames(wire, cuts)
    if split != whole:
        summary.findings.add("framing-mismatch", "FrameReader yields different frames for the same bytes "
                             "split differently", case_index=case.index, api=f"{case.api_name} v{case.version}",
                             reproducer_hex=wire.hex(), detail=f"cuts {cuts}")


def check_case(case: Case, summary: CodecSummary, hang_seconds: float = 2.0) -> None:
    """Decode one case; record any finding in ``summary``."""
    summary.cases += 1
    if case.strategy == "framing" or case.index % 8 == 0:
        check_framing(case, summary)
    reader = FrameReader(MAX_FRAME)
    stage = "codec"
    try:
        with _deadline(hang_seconds):
            reader.feed(case.wire)
            while True:
                frame = reader.next_frame()
                if frame is None:
                    break
                summary.frames += 1
                stage = "codec"
                try:
                    request = decode_request(frame)
                except CodecError:
                    summary.codec_errors += 1
                    continue
                summary.decoded += 1
                if request.api.name == "Produce":
                    stage = "records"
                    _check_records(request.body)
    except CodecError:
        summary.codec_errors += 1
    except Hang as e:
        summary.findings.add(f"{stage}-hang", f"{case.api_name} v{case.version}: {e}", case_index=case.index,
                             api=f"{case.api_name} v{case.version}", reproducer_hex=case.wire.hex())
    except Exception as e:
        sig, text = exception_signature(e)
        summary.findings.add(f"{stage}-exception", sig, case_index=case.index,
                             api=f"{case.api_name} v{case.version} ({case.strategy})",
                             reproducer_hex=case.wire.hex(), detail=text)


def _check_records(body: object) -> None:
    for topic in getattr(body, "topic_data", None) or ():
        for part in topic.partition_data or ():
            records = part.records
            if not records:
                continue
            try:
                headers = validate_batches(records)
            except BatchError:
                continue
            pos = 0
            for h in headers:
                try:
                    for _ in iter_records(memoryview(records)[pos:pos + h.size]):
                        pass
                except BatchError:
                    pass
                pos += h.size


def run_codec(mutator: Mutator, requests: int | None, seconds: float | None, hang_seconds: float = 2.0,
              start: int = 0) -> CodecSummary:
    """Run cases ``start, start+1, ...`` until ``requests`` cases or ``seconds`` have passed."""
    summary = CodecSummary()
    t0 = time.monotonic()
    i = start
    while True:
        if requests is not None and summary.cases >= requests:
            break
        if seconds is not None and (i & 63) == 0 and time.monotonic() - t0 >= seconds:
            break
        case = mutator.case(i)
        check_case(case, summary, hang_seconds)
        if i % 8 == 1:
            # A pipeline as a connection receives it: several frames back to back.
            check_framing(case, summary, b"".join(mutator.case(i + k).wire for k in range(4)))
        i += 1
    summary.seconds = time.monotonic() - t0
    return summary
