"""Findings: faults seen by the fuzzer, grouped by signature, each with an example reproducer."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field


@dataclass
class Finding:
    """One kind of fault: how often it was seen and the first example."""

    kind: str  # codec-exception, codec-hang, records-exception, broker-exit, broker-error, unresponsive, health
    signature: str
    count: int = 0
    case_index: int | None = None
    api: str = ""
    reproducer_hex: str = ""
    detail: str = ""
    #: Case indices that may have caused it (broker mode, before attribution).
    candidates: list[int] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"[{self.kind}] {self.signature}  (x{self.count})"]
        if self.api:
            lines.append(f"  request: {self.api}")
        if self.case_index is not None:
            lines.append(f"  case: {self.case_index}")
        if self.reproducer_hex:
            hx = self.reproducer_hex
            more = f"... ({len(hx) // 2} bytes; whole in --json)" if len(hx) > 400 else ""
            lines.append(f"  reproducer (hex, with size prefix): {hx[:400]}{more}")
        elif self.candidates:
            lines.append(f"  not reproduced alone; {len(self.candidates)} candidate cases, latest "
                         f"{self.candidates[-5:]}")
        if self.detail:
            lines.extend("  | " + d for d in self.detail.rstrip().splitlines()[-12:])
        return "\n".join(lines)


class Findings:
    """Findings by (kind, signature)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], Finding] = {}

    def add(self, kind: str, signature: str, **example: object) -> Finding:
        f = self.by_key.get((kind, signature))
        if f is None:
            f = self.by_key[(kind, signature)] = Finding(kind, signature)
            for k, v in example.items():
                setattr(f, k, v)
        f.count += 1
        return f

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.by_key.values() if f.kind in kinds]

    def __len__(self) -> int:
        return len(self.by_key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_key.values())


def exception_signature(e: BaseException) -> tuple[str, str]:
    """``(Type at innermost kbroker frame, formatted traceback)`` of an exception."""
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if "/kbroker/" in fr.filename:
            where = f"{fr.filename.split('/kbroker/', 1)[1]}:{fr.lineno} in {fr.name}"
            break
    text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return f"{type(e).__name__} at kbroker/{where}", text
