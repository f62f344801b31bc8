"""Run librdkafka's test suite (tests/test-runner) against kbroker, one test number at a time.

Each run of ``test-runner`` gets a fresh kbroker subprocess (ephemeral port, temporary data
dir) and its own ``test.conf``, so one test's leftovers or a broker crash never affect the
next. A test counts as passed only when its summary row says PASSED; a row that says
SKIPPED (e.g. a broker-version gate) has not passed.

    python -m compat.librdkafka                 # the tests in tests.allow; fails if one fails
    python -m compat.librdkafka --all           # every broker test not in tests.exclude
    python -m compat.librdkafka --tests 0001_multiobj,0012_produce_consume
    python -m compat.librdkafka --tests 0135_sasl_credentials@SASL_SSL/SCRAM-SHA-512
    python -m compat.librdkafka --cluster       # tests.cluster.allow against 3 brokers (compat/librdkafka/cluster.py)
    python -m compat.librdkafka --cluster --all # tests.allow and the multi-broker tests against 3 brokers
    python -m compat.librdkafka --suite 2.15    # librdkafka 2.15.1: the tests in tests.v2.15.allow
    python -m compat.librdkafka --suite 2.15 --all  # its KIP-848 and share-consumer tests (v215.py)

A test name may carry a security listener, ``NAME@LISTENER[/MECHANISM]`` (LISTENER one of
SASL_PLAINTEXT, SASL_SSL, SSL, MTLS of compat/security.py): that run gets a broker with the
security listeners and a ``test.conf`` that connects through LISTENER (``security.protocol``,
``sasl.mechanisms``, ``sasl.username``/``sasl.password``, ``ssl.ca.location``, the client
certificate), plus the ``SSL_*`` variables librdkafka's SSL tests read (trivup's). The
candidates are :data:`SECURITY_RUNS`; those that pass are in tests.allow.

Build librdkafka first: ``bash tools/setup-compat-env.sh --librdkafka``.

``--suite 2.15`` runs librdkafka 2.15.1's suite instead (built beside 2.12.0 by the same script,
without SSL), told the broker is Kafka 4.2.0 so that its share-consumer tests (0170 onwards) run,
and with ``TEST_CONSUMER_GROUP_PROTOCOL=consumer`` so that its consumer-group tests use the KIP-848
protocol; its candidates are listed in compat/librdkafka/v215.py, those that pass in tests.v2.15.allow.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from compat import security
from compat.broker import REPO, Broker, BrokerError
from compat.librdkafka.cluster import CLUSTER_ALLOW, CLUSTER_CANDIDATES, ClusterBroker
from compat.librdkafka.v215 import V215_CANDIDATES

HERE = Path(__file__).resolve().parent
WORK = REPO / "compat" / "work"
LIBRDKAFKA_VERSION = "2.12.0"
DEFAULT_BUILD = WORK / f"librdkafka-{LIBRDKAFKA_VERSION}"
ALLOW = HERE / "tests.allow"
EXCLUDE = HERE / "tests.exclude"
#: The Kafka version test-runner is told it talks to (else it assumes 2.4 and skips much).
KAFKA_VERSION = "4.1.0"


@dataclass(frozen=True)
class Suite:
    """One librdkafka release's test suite: where it is built, what it is told, its lists."""

    version: str
    kafka_version: str
    allow: Path
    exclude: Path
    #: Environment for every test-runner run of this suite.
    env: tuple[tuple[str, str], ...] = ()

    @property
    def build(self) -> Path:
        return WORK / f"librdkafka-{self.version}"


SUITES = {
    "2.12": Suite(LIBRDKAFKA_VERSION, KAFKA_VERSION, ALLOW, EXCLUDE),
    # Kafka 4.2 opens the share-consumer tests (TEST_BRKVER(4, 2, 0, 0)); the consumer-group
    # tests run with group.protocol=consumer, as librdkafka's own KIP-848 CI job runs them.
    "2.15": Suite("2.15.1", "4.2.0", HERE / "tests.v2.15.allow", HERE / "tests.v2.15.exclude",
                  (("TEST_CONSUMER_GROUP_PROTOCOL", "consumer"),)),
}
#: Broker settings librdkafka's own 4.2+ test clusters add (tests/cluster_testing.py): share
#: tests set a group's share.record.lock.duration.ms to a few seconds.
SUITE_BROKER_OVERRIDES = {"2.15": {"group.share.min.record.lock.duration.ms": "1000"}}

#: Broker settings for the suite: librdkafka's own test clusters (tests/scenarios/*.json)
#: auto-create topics with 4 partitions, and many tests produce to partitions 1..3. They run
#: Kafka's default group.initial.rebalance.delay.ms (3 s), which tests such as
#: 0118_commit_rebalance rely on to get both members into the first generation.
BROKER_OVERRIDES = {"num.partitions": "4", "group.initial.rebalance.delay.ms": "3000"}
#: Where the Kafka tool scripts (bin/kafka-topics.sh, ...) some tests run are generated: KAFKA_PATH.
KAFKA_PATH = WORK / "kafka-path"
#: test.timeout.multiplier in test.conf.
TIMEOUT_MULTIPLIER = 3

#: librdkafka's SASL and SSL tests (and a few others) through a security listener: every one
#: that needs only one broker and no external service (no Kerberos, no OIDC endpoint).
SECURITY_RUNS = [
    # SSL certificate verification: trusted and untrusted client keys in PEM, DER and PKCS#12,
    # with client authentication required and requested.
    "0097_ssl_verify@MTLS",
    "0097_ssl_verify@SSL",
    # Wrong credentials, an authentication error, then sasl_set_credentials() with the right ones.
    "0135_sasl_credentials@SASL_PLAINTEXT/PLAIN",
    "0135_sasl_credentials@SASL_PLAINTEXT/SCRAM-SHA-256",
    "0135_sasl_credentials@SASL_SSL/SCRAM-SHA-512",
    # KIP-368 re-authentication while producing, consuming and in transactions; a failing one.
    "0142_reauthentication@SASL_PLAINTEXT/SCRAM-SHA-256",
    "0142_reauthentication@SASL_SSL/PLAIN",
    # ... and with OAUTHBEARER: tokens living shorter and longer than the re-authentication period.
    "0142_reauthentication@SASL_PLAINTEXT/OAUTHBEARER",
    # Plain producing, consuming and committing through the security listeners.
    "0012_produce_consume@SASL_SSL/SCRAM-SHA-512",
    "0012_produce_consume@MTLS",
    "0030_offset_commit@SASL_PLAINTEXT/PLAIN",
    "0103_transactions@SASL_PLAINTEXT/SCRAM-SHA-512",
]
#: Broker settings some tests need: 0142 reads connections.max.reauth.ms (DescribeConfigs) and
#: skips when it is 0 (Kafka's default); each of its 5 parts lasts about one period.
#: 0115/0119 add a deny-all ACL for one topic with kafka-acls.sh and expect authorization errors
#: there only, so they need an authorizer that allows what no ACL covers.
_ACL_BROKER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
               "allow.everyone.if.no.acl.found": "true"}
TEST_BROKER_OVERRIDES = {"0142_reauthentication": {"connections.max.reauth.ms": "10000"},
                         "0115_producer_auth": _ACL_BROKER, "0119_consumer_auth": _ACL_BROKER,
                         "0081_admin": _ACL_BROKER}
#: Tests run without test-runner's quick mode (-Q), which skips every sub-test they have.
FULL_RUNS = {"0142_reauthentication"}


def split_entry(entry: str) -> tuple[str, str]:
    """``NAME@LISTENER[/MECHANISM]`` -> (NAME, "LISTENER[/MECHANISM]"); a plain name -> (NAME, "")."""
    name, _, variant = entry.partition("@")
    return name, variant


def check_variant(variant: str) -> str | None:
    """Why ``LISTENER[/MECHANISM]`` is not a security run compat/security.py's broker offers (None if it is)."""
    listener, _, mechanism = variant.partition("/")
    if listener not in security.LISTENERS or listener == "PLAINTEXT":
        return f"unknown security listener {listener!r}"
    protocol = security.LISTENERS[listener]
    if protocol.startswith("SASL_") and mechanism not in security.MECHANISMS:
        return f"{listener} needs a mechanism, one of {', '.join(security.MECHANISMS)}"
    if not protocol.startswith("SASL_") and mechanism:
        return f"{listener} takes no SASL mechanism"
    return None


def security_test_conf(variant: str, endpoints: dict[str, str], pki_dir: Path) -> tuple[str, dict[str, str]]:
    """test.conf lines and environment for a run through ``LISTENER[/MECHANISM]``."""
    listener, _, mechanism = variant.partition("/")
    protocol = security.LISTENERS[listener]
    conf = {"metadata.broker.list": endpoints[listener], "security.protocol": protocol}
    env: dict[str, str] = {}
    if mechanism == "OAUTHBEARER":
        # librdkafka's built-in unsecured JWS token; its principal is the sub claim.
        conf.update({"sasl.mechanisms": mechanism, "enable.sasl.oauthbearer.unsecure.jwt": "true",
                     "sasl.oauthbearer.config": f"principal={security.USER}"})
    elif protocol.startswith("SASL_"):
        conf.update({"sasl.mechanisms": mechanism, "sasl.username": security.USER,
                     "sasl.password": security.PASSWORD})
    if protocol.endswith("SSL"):
        conf["ssl.ca.location"] = str(pki_dir / "ca.pem")
    if protocol == "SSL":
        from tools.pki import PASSWORD as KEY_PASSWORD
        stores = security.client_keystores(pki_dir)
        conf.update({"ssl.certificate.location": str(pki_dir / "client.pem"),
                     "ssl.key.location": str(pki_dir / "client-key.pem"), "ssl.key.password": KEY_PASSWORD})
        # What trivup exports for 0097_ssl_verify: the client certificate, key and CA in each encoding.
        env.update({
            "SSL_pkcs": str(stores["client.p12"]), "SSL_password": KEY_PASSWORD,
            "SSL_pub_der": str(stores["client.der"]), "SSL_pub_pem": str(pki_dir / "client.pem"),
            "SSL_priv_der": str(stores["client-key.der"]), "SSL_priv_pem": str(pki_dir / "client-key.pem"),
            "SSL_ca_der": str(stores["ca.der"]), "SSL_all_cas_pem": str(pki_dir / "ca.pem"),
            "SSL_client_auth": "required" if listener == "MTLS" else "requested",
        })
    return "".join(f"{k}={v}\n" for k, v in conf.items()), env

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*([A-Z ]+?)\s*\|\s*([0-9.]+)s\s*\|\s*(.*)$")


@dataclass(frozen=True)
class TestDef:
    name: str
    flags: str
    scenario: str  # "default" unless the test asks for another

    @property
    def num(self) -> str:
        return self.name[:4]


def parse_tests(test_c: Path) -> list[TestDef]:
    """The entries of ``struct test tests[]`` in tests/test.c."""
    src = test_c.read_text(errors="replace")
    body = src[src.index("struct test tests[] = {"):]
    body = body[: body.index("{NULL}")]
    out = []
    for m in re.finditer(r"_TEST\(\s*(\w+)\s*,\s*([^,)]*)(.*?)\)\s*,\s*(?=_TEST|#|/\*|\{NULL|$)", body, re.S):
        name, flags, rest = m.group(1), m.group(2).strip(), m.group(3)
        sm = re.search(r'\.scenario\s*=\s*"([^"]+)"', rest)
        scenario = sm.group(1).split(",")[0] if sm else "default"
        out.append(TestDef(name, flags, scenario))
    return out


def read_list(path: Path) -> dict[str, str]:
    """``name [reason]`` per line; ``#`` starts a comment."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        name, _, reason = line.partition(" ")
        out[name] = reason.strip()
    return out


def read_exclude(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.strip().partition(" ")
        out[name] = reason.strip()
    return out


def parse_summary(output: str) -> dict[str, tuple[str, str]]:
    """``{test name: (state, reason)}`` from test-runner's summary table."""
    rows: dict[str, tuple[str, str]] = {}
    for line in _ANSI.sub("", output).splitlines():
        m = _ROW.match(line.strip())
        if m and m.group(1) != "<MAIN>":
            rows[m.group(1)] = (m.group(2).strip(), m.group(4).strip().rstrip("|").strip())
    return rows


def first_failure(output: str) -> str:
    """The reason under the first ``### Test "..." failed at ...: ###`` banner."""
    lines = _ANSI.sub("", output).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("### Test") and "failed" in line:
            reason = lines[i + 1].strip() if i + 1 < len(lines) else ""
            where = line.split(" failed at ", 1)[-1].split(" at ")[0]
            return f"{where}: {reason}"[:300]
    return ""


def make_kafka_path() -> tuple[Path | None, str]:
    """Generate :data:`KAFKA_PATH` from the reference Kafka's jars: (path, "") or (None, why not).

    Tests such as 0052_msg_timestamps create topics with ``$KAFKA_PATH/bin/kafka-topics.sh
    --bootstrap-server $BROKERS``; the scripts run Kafka's own tool classes (tools/kafka_reference).
    """
    if shutil.which("java") is None:
        return None, "java is not on PATH"
    try:
        from tools.kafka_reference import write_kafka_path
        return write_kafka_path(KAFKA_PATH), ""
    except Exception as e:  # Maven's failure text is the reason
        return None, f"the Kafka jars could not be resolved: {str(e)[:300]}"


def make_java_tests(build: Path, kafka_path: Path) -> str:
    """Compile the suite's Java helpers (tests/java: TransactionProducerCli for 0098_consumer_txn,
    IncrementalRebalanceCli for 0113) against the reference Kafka's client jar unless already
    compiled: "" or why they could not be."""
    java_dir = build / "tests" / "java"
    if not (java_dir / "Makefile").exists():
        return f"no {java_dir}/Makefile"
    sources = sorted(java_dir.glob("*.java"))
    # Concurrent runs (pytest-xdist workers) check and compile one at a time, so that none
    # sees a class file another is still writing.
    with open(java_dir / ".compile.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(src.with_suffix(".class").exists() for src in sources):
            return ""
        if shutil.which("javac") is None:
            return "javac is not on PATH"
        proc = subprocess.run(["make", "-C", str(java_dir), f"KAFKA_PATH={kafka_path}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return "" if proc.returncode == 0 else proc.stdout.decode("utf-8", "replace")[-300:]


def run_group(build: Path, num: str, scenario: str, timeout: float, log_dir: Path,
              broker_overrides: dict[str, str],
              kafka_path: Path | None = None, variant: str = "",
              quick: bool = True, cluster: bool = False,
              suite: Suite = SUITES["2.12"]) -> tuple[dict[str, tuple[str, str]], str, float]:
    """Run ``TESTS=num`` under ``scenario`` against a fresh broker: (rows, note, seconds).

    With a ``variant`` (``LISTENER[/MECHANISM]``) the broker has compat/security.py's listeners
    and the test connects through that one; with ``cluster``, a fresh 3-broker local cluster
    stands in for the broker."""
    tests_dir = build / "tests"
    overrides = dict(broker_overrides)
    if scenario == "noautocreate":
        overrides["auto.create.topics.enable"] = "false"
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{num}-{scenario}" + ("-" + variant.replace("/", "-") if variant else "")
    broker: Broker | ClusterBroker
    if cluster:
        broker = ClusterBroker(overrides, log_path=log_dir / f"{tag}.broker.log")
    elif variant:
        broker = security.SecureKbroker(log_path=log_dir / f"{tag}.broker.log", overrides=overrides)
    else:
        broker = Broker(overrides, log_path=log_dir / f"{tag}.broker.log")
    t0 = time.monotonic()
    try:
        broker.start()
    except BrokerError as e:
        return {}, f"broker did not start: {e}", 0.0
    try:
        conf = broker.data_dir / "test.conf"
        extra_env: dict[str, str] = {}
        if isinstance(broker, security.SecureKbroker):
            lines, extra_env = security_test_conf(variant, broker.endpoints, broker.pki_dir)
        else:
            lines = f"metadata.broker.list={broker.bootstrap}\n"
        # A Python broker on 2 cores is slower than Kafka; upstream CI also raises the
        # multiplier (test.c adds 2 when CI is set).
        conf.write_text(lines + f"test.timeout.multiplier={TIMEOUT_MULTIPLIER}\n")
        env = dict(os.environ)
        env.update(extra_env)
        env.update(dict(suite.env))
        env.update({
            "TESTS": num,
            "TEST_KAFKA_VERSION": suite.kafka_version,
            "RDKAFKA_TEST_CONF": str(conf),
            "LD_LIBRARY_PATH": f"{build / 'src'}:{build / 'src-cpp'}",
        })
        if kafka_path is not None:
            # test_kafka_topics() runs $KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS.
            env.update({"KAFKA_PATH": str(kafka_path), "BROKERS": broker.bootstrap})
        args = ["./test-runner", "-p1", *(["-Q"] if quick else []), "-E", "-s", scenario]
        note = ""
        try:
            proc = subprocess.run(args, cwd=tests_dir, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True)
            output = proc.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode("utf-8", "replace")
            note = f"timed out after {timeout:.0f}s"
        if not broker.alive():
            note = (note + "; " if note else "") + "broker died: " + " | ".join(broker.tail(3))
        (log_dir / f"{tag}.log").write_text(output)
        rows = parse_summary(output)
        if not rows or note:
            note = note or first_failure(output) or "no summary"
        reason = first_failure(output)
        rows = {k: (st, reason if st == "FAILED" and reason else why) for k, (st, why) in rows.items()}
        return rows, note, time.monotonic() - t0
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compat.librdkafka", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=sorted(SUITES), default="2.12",
                    help="which librdkafka release's suite (2.15: librdkafka 2.15.1, KIP-848 and share tests)")
    ap.add_argument("--build-dir", type=Path, default=None, help="default: compat/work/librdkafka-<version>")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="every broker test not in tests.exclude")
    g.add_argument("--tests", help="comma-separated test names (or 4-digit numbers)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per test-runner run")
    ap.add_argument("--cluster", action="store_true",
                    help="against a 3-broker local cluster: tests.cluster.allow; with --all, tests.allow and "
                         "the multi-broker tests")
    ap.add_argument("--results", type=Path, default=None,
                    help="results JSON (default: compat/work/librdkafka[-cluster]-results.json)")
    ap.add_argument("--logs", type=Path, default=None,
                    help="per-test logs (default: compat/work/librdkafka[-cluster]-logs)")
    args = ap.parse_args(argv)
    suite = SUITES[args.suite]
    v215 = args.suite == "2.15"
    if v215 and args.cluster:
        print("--suite 2.15 runs against a single broker only", file=sys.stderr)
        return 2
    args.build_dir = args.build_dir or suite.build
    suffix = "-cluster" if args.cluster else "-2.15" if v215 else ""
    args.results = args.results or WORK / f"librdkafka{suffix}-results.json"
    args.logs = args.logs or WORK / f"librdkafka{suffix}-logs"

    runner = args.build_dir / "tests" / "test-runner"
    if not runner.exists():
        print(f"librdkafka test-runner not built at {runner}; run: bash tools/setup-compat-env.sh "
              "--librdkafka", file=sys.stderr)
        return 2
    defs = {t.name: t for t in parse_tests(args.build_dir / "tests" / "test.c")}
    allow = list(read_list(CLUSTER_ALLOW if args.cluster else suite.allow))
    exclude = read_exclude(suite.exclude)
    if args.cluster and any("@" in e for e in [*allow, *(args.tests or "").split(",")]):
        print("--cluster runs plaintext only: no security listeners", file=sys.stderr)
        return 2
    # The 2.15.1 build has no SSL and runs against one broker: no security or cluster runs.
    for entry in [*allow, *(V215_CANDIDATES if v215 else [*SECURITY_RUNS, *CLUSTER_CANDIDATES])]:
        name, variant = split_entry(entry)
        if name not in defs:
            print(f"unknown test: {entry}", file=sys.stderr)
            return 2
        if variant and (v215 or check_variant(variant)):
            print(f"{entry}: {check_variant(variant) or 'no security listeners in the 2.15 suite'}", file=sys.stderr)
            return 2
        if entry in exclude and entry in allow and not args.cluster:
            print(f"{entry} is both allowed and excluded", file=sys.stderr)
            return 2
    if args.all and args.cluster:
        # Plaintext only: the security runs need compat/security.py's single broker.
        selected = list(dict.fromkeys([*(e for e in read_list(ALLOW) if "@" not in e), *CLUSTER_CANDIDATES]))
    elif args.all and v215:
        selected = [n for n in V215_CANDIDATES if n not in exclude]
    elif args.all:
        selected = [n for n in defs if n not in exclude] + [e for e in SECURITY_RUNS if e not in exclude]
    elif args.tests:
        want = [w.strip() for w in args.tests.split(",") if w.strip()]
        bad = [w for w in want if "@" in w and (v215 or split_entry(w)[0] not in defs
                                                or check_variant(split_entry(w)[1]))]
        if bad:
            print(f"unknown tests or security listeners: {bad}", file=sys.stderr)
            return 2
        selected = [w for w in want if "@" in w] + [n for n in defs if n in want or (
            (n not in exclude or args.cluster) and any(n.startswith(w + "_") or n[:4] == w for w in want))]
        if v215:  # its local (mock-cluster) variants never reach the broker
            selected = [n for n in selected if n in V215_CANDIDATES or n in want]
    else:
        selected = allow
    unlisted = [n for n in (V215_CANDIDATES if v215 else defs) if n not in exclude and n not in allow]

    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for entry in selected:
        name, variant = split_entry(entry)
        groups[(defs[name].num, defs[name].scenario, variant)].append(entry)

    kafka_path, why = make_kafka_path()
    if kafka_path is None:
        print(f"KAFKA_PATH not set ({why}): tests that run Kafka's CLI tools will fail", file=sys.stderr)
    elif why := make_java_tests(args.build_dir, kafka_path):
        print(f"tests/java not compiled ({why}): tests that run its Java clients will fail", file=sys.stderr)
    results: dict[str, dict[str, object]] = {}
    for (num, scenario, variant), names in sorted(groups.items()):
        overrides = dict(BROKER_OVERRIDES) | SUITE_BROKER_OVERRIDES.get(args.suite, {})
        for entry in names:
            overrides.update(TEST_BROKER_OVERRIDES.get(split_entry(entry)[0], {}))
        # Quick mode (-Q) skips every SUB_TEST() that is not SUB_TEST_QUICK(): most of the 2.15.1
        # consumer-group tests would then pass without running anything.
        quick = not v215 and not any(split_entry(entry)[0] in FULL_RUNS for entry in names)
        rows, note, secs = run_group(args.build_dir, num, scenario, args.timeout, args.logs, overrides,
                                     kafka_path, variant, quick, cluster=args.cluster, suite=suite)
        for name in names:
            state, reason = rows.get(split_entry(name)[0], ("MISSING", ""))
            if state == "PASSED" and note:
                state = "FAILED"
            detail = note if note else reason
            results[name] = {"state": state, "detail": detail, "seconds": round(secs, 1)}
            mark = {"PASSED": "pass", "SKIPPED": "skip"}.get(state, "FAIL")
            print(f"{mark:4} {name:45} {secs:6.1f}s {detail[:150]}", flush=True)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, sort_keys=True))
    passed = sorted(n for n, r in results.items() if r["state"] == "PASSED")
    failed_allowed = sorted(n for n in allow if n in results and results[n]["state"] != "PASSED")
    print(f"\nlibrdkafka {suite.version} vs kbroker{' (3-broker cluster)' if args.cluster else ''}: "
          f"{len(passed)}/{len(results)} passed; "
          f"allow list {len(allow)}, exclude list {len(exclude)}, unlisted {len(unlisted)}")
    if args.all or args.tests:
        newly = [n for n in passed if n not in allow]
        if newly:
            print(f"passing but not in {(CLUSTER_ALLOW if args.cluster else suite.allow).name}: " + " ".join(newly))
    if failed_allowed:
        print("allowed tests that did not pass: " + " ".join(failed_allowed))
    print(f"{len(passed)} passed, {len(results) - len(passed)} failed")
    return 1 if failed_allowed else 0


if __name__ == "__main__":
    sys.exit(main())
