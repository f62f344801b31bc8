"""Run the catalog against both brokers and compare each answer."""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat.wirediff import catalog
from compat.wirediff.catalog import Case, State
from compat.wirediff.compare import Difference, compare_bodies
from compat.wirediff.wire import Connection, Outcome, frame
from kbroker.codec import api_table

ACCEPTED_FILE = Path(__file__).resolve().parent / "accepted.toml"


class Side:
    """One broker: a long-lived connection for prep steps and valid requests, fresh ones for malformed."""

    def __init__(self, name: str, bootstrap: str, timeout: float = 5.0) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.conn = Connection(bootstrap, timeout)
        self.setup = State()
        self.versions: dict[int, tuple[int, int]] = {}

    def call(self, api_key: int, version: int, body: dict[str, Any], wait: float | None = None) -> Outcome:
        cid = self.conn.next_cid()
        return self.conn.exchange(api_key, version, frame(api_key, version, cid, body), cid, wait=wait)

    def wait_topic(self, name: str, partitions: int, timeout: float = 10.0) -> Any:
        """Poll until every partition of ``name`` has a leader that answers ListOffsets (Kafka's
        metadata names a leader a moment before that leader serves); returns the topic id."""
        deadline = time.monotonic() + timeout
        probe = {"replica_id": -1, "isolation_level": 0, "timeout_ms": 1000, "topics": [
            {"name": name, "partitions": [{"partition_index": p, "current_leader_epoch": -1, "timestamp": -1}
                                          for p in range(partitions)]}]}
        while True:
            out = self.call(catalog.METADATA, 12, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
            if out.kind == "response" and out.body.topics:
                t = out.body.topics[0]
                if t.error_code == 0 and len(t.partitions) >= partitions and all(
                        p.error_code == 0 and p.leader_id >= 0 for p in t.partitions):
                    offsets = self.call(catalog.LIST_OFFSETS, 7, probe)
                    if offsets.kind == "response" and not any(catalog.error_codes(catalog.plain_body(offsets))):
                        return t.topic_id
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def run_setup(self, steps: Iterable[catalog.Prep]) -> None:
        for s in steps:
            s(self, self.setup)
        out = self.call(catalog.API_VERSIONS, 3, {"client_software_name": "wirediff",
                                                  "client_software_version": "1"})
        if out.kind != "response":
            raise RuntimeError(f"{self.name}: ApiVersions failed: {out.summary()}")
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in out.body.api_keys}

    def run(self, case: Case) -> Outcome:
        st = State(self.setup)
        try:
            for p in case.prep:
                p(self, st)
            conn = self.conn if case.kind == "valid" else Connection(self.bootstrap, self.timeout)
            cid = conn.next_cid()
            data = case.raw(cid, st) if case.raw is not None else frame(case.api, case.version, cid,
                                                                         case.resolve(st))
        except Exception as e:  # a prep answer the request needed was missing
            return Outcome("error", detail=f"prep: {type(e).__name__}: {e}")
        try:
            return conn.exchange(case.api, case.version, data, cid, expect_response=case.expect_response,
                                 wait=case.wait)
        finally:
            if conn is not self.conn:
                conn.close()

    def close(self) -> None:
        self.conn.close()


@dataclass
class Rule:
    """One accepted difference (see accepted.toml)."""

    api: str
    versions: str
    case: str
    path: str
    reason: str
    kafka: str = "*"
    kbroker: str = "*"
    used: int = 0

    def matches(self, api: str, version: int, case: str, d: Difference) -> bool:
        return (_any(self.api, api) and _in_versions(self.versions, version) and _any(self.case, case)
                and _any(self.path, d.path) and _glob(self.kafka, _text(d.kafka))
                and _glob(self.kbroker, _text(d.kbroker)))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


def _any(patterns: str, text: str) -> bool:
    """Comma-separated alternatives, each a :func:`_glob`."""
    return any(_glob(p.strip(), text) for p in patterns.split(","))


def _glob(pattern: str, text: str) -> bool:
    """``*`` matches anything; every other character is literal (paths contain brackets)."""
    regex = ".*".join(re.escape(p) for p in pattern.split("*"))
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _in_versions(spec: str, version: int) -> bool:
    for part in spec.split(","):
        part = part.strip()
        if part == "*":
            return True
        if part.endswith("+") and version >= int(part[:-1]):
            return True
        if "-" in part:
            lo, hi = part.split("-")
            if int(lo) <= version <= int(hi):
                return True
        elif part.isdigit() and int(part) == version:
            return True
    return False


def load_rules(path: Path = ACCEPTED_FILE) -> list[Rule]:
    """The accepted differences; every rule needs a reason."""
    data = tomllib.loads(path.read_text())
    rules = []
    for entry in data.get("accept", []):
        if not entry.get("reason"):
            raise ValueError(f"{path}: a rule without a reason: {entry}")
        rules.append(Rule(api=entry.get("api", "*"), versions=str(entry.get("versions", "*")),
                          case=entry.get("case", "*"), path=entry.get("path", "*"), reason=entry["reason"],
                          kafka=entry.get("kafka", "*"), kbroker=entry.get("kbroker", "*")))
    return rules


@dataclass
class CaseResult:
    """Both outcomes of one case and how they compare."""

    api: int
    version: int
    name: str
    kind: str
    kafka: Outcome
    kbroker: Outcome
    diffs: list[Difference] = field(default_factory=list)
    accepted: list[tuple[Difference, Rule]] = field(default_factory=list)
    unaccepted: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def api_name(self) -> str:
        return api_name(self.api)

    @property
    def status(self) -> str:
        if not self.diffs:
            return "same"
        return "accepted" if not self.unaccepted else "differs"


def api_name(key: int) -> str:
    api = api_table().get(key)
    return api.name if api is not None else f"ApiKey{key}"


def compare_outcomes(kafka: Outcome, kbroker: Outcome, api_key: int | None = None) -> list[Difference]:
    """Answered versus closed first; then the bodies field by field."""
    if kafka.kind != kbroker.kind:
        return [Difference("<outcome>", kafka.summary(), kbroker.summary(),
                           "; ".join(x for x in (kafka.detail, kbroker.detail) if x))]
    if kafka.kind == "response":
        return compare_bodies(kafka.body, kbroker.body, api_key)
    return []


def classify(result: CaseResult, rules: list[Rule]) -> None:
    """Split a result's differences into accepted (with their rule) and not."""
    result.accepted, result.unaccepted = [], []
    for d in result.diffs:
        rule = next((r for r in rules if r.matches(result.api_name, result.version, result.name, d)), None)
        if rule is None:
            result.unaccepted.append(d)
        else:
            rule.used += 1
            result.accepted.append((d, rule))


@dataclass
class Run:
    """Everything one run found."""

    results: list[CaseResult]
    kafka_versions: dict[int, tuple[int, int]]
    kbroker_versions: dict[int, tuple[int, int]]
    seconds: float
    fast: bool
    rules: list[Rule]


def plan(kbroker_versions: dict[int, tuple[int, int]], kafka_versions: dict[int, tuple[int, int]],
         apis: set[int] | None = None, fast: bool = False) -> list[Case]:
    """The cases to run: every version kbroker advertises (the highest only with ``fast``), a request
    at a version past each side's range, and one default request to each API only Kafka serves."""
    cases: list[Case] = []
    table = api_table()
    for key, (lo, hi) in sorted(kbroker_versions.items()):
        if apis is not None and key not in apis:
            continue
        versions = [hi] if fast else list(range(lo, hi + 1))
        for v in versions:
            cases += catalog.cases_for(key, v)
        cases.append(catalog.bad_version_case(key, hi, hi + 1))
        if lo > 0:
            cases.append(catalog.bad_version_case(key, lo, lo - 1))
    for key, (lo, hi) in sorted(kafka_versions.items()):
        if key in kbroker_versions or (apis is not None and key not in apis) or key not in table:
            continue
        v = min(hi, table[key].versions.high)
        if v >= lo and not fast:
            cases.append(catalog.default_case(key, v))
    return cases


def run(kafka_bootstrap: str, kbroker_bootstrap: str, apis: set[int] | None = None, fast: bool = False,
        rules: list[Rule] | None = None, progress: Any = None) -> Run:
    """Set both brokers up alike, send every planned case to both, compare."""
    t0 = time.monotonic()
    rules = load_rules() if rules is None else rules
    kafka, kb = Side("kafka", kafka_bootstrap), Side("kbroker", kbroker_bootstrap)
    results: list[CaseResult] = []
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: s.run_setup(catalog.shared_setup()), (kafka, kb)))
        cases = plan(kb.versions, kafka.versions, apis, fast)
        for i, case in enumerate(cases):
            t1 = time.monotonic()
            fk, fb = pool.submit(kafka.run, case), pool.submit(kb.run, case)
            ok, ob = fk.result(), fb.result()
            r = CaseResult(case.api, case.version, case.name, case.kind, ok, ob, compare_outcomes(ok, ob, case.api),
                           seconds=time.monotonic() - t1)
            classify(r, rules)
            results.append(r)
            if progress is not None:
                progress(i + 1, len(cases), r)
    kafka.close()
    kb.close()
    return Run(results, kafka.versions, kb.versions, time.monotonic() - t0, fast, rules)
