"""The scenarios with kcat, driven as a user would from a shell (``s_<scenario>(bootstrap)``).

kcat has no admin commands, so topics a scenario needs are created beforehand with
confluent-kafka's AdminClient (librdkafka, the library kcat is built on); everything
the scenario checks goes through the ``kcat`` binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from compat.clients.common import (
    LARGE_SIZE,
    OVERSIZE,
    SEC_ROUNDTRIPS,
    Login,
    NotSupported,
    check,
    group_name,
    login,
    payloads,
    sec_refusals,
    topic_name,
    wait_until,
)

CLIENT = "kcat"
KCAT = shutil.which("kcat") or "kcat"


def new_topic(bootstrap: str, scenario: str, partitions: int = 1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = topic_name(CLIENT, scenario)
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(name, partitions, 1)], operation_timeout=20).values():
        f.result(30)
    return name


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([KCAT, "-b", bootstrap, *args], input=stdin, capture_output=True,
                          timeout=timeout)
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        key = [ln for ln in err if "FATAL" in ln or "ERROR" in ln]
        raise RuntimeError(f"kcat exited {proc.returncode}: {(key or err or [''])[0 if key else -1]}")
    return proc


def produce(bootstrap: str, topic: str, lines: list[bytes], *extra: str, timeout: float = 30) -> None:
    """One message per line (``-D '\\n'``); ``extra`` kcat options (-K, -H, -z, -X ...)."""
    kcat(bootstrap, "-P", "-t", topic, "-X", "message.timeout.ms=20000", *extra,
         stdin=b"\n".join(lines) + b"\n", timeout=timeout)


def consume(bootstrap: str, topic: str, count: int, *extra: str, timeout: float = 30) -> list[dict[str, Any]]:
    """``count`` messages as kcat's JSON envelopes (-J), from the beginning unless -o is given."""
    if "-o" not in extra:
        extra = ("-o", "beginning", *extra)
    proc = kcat(bootstrap, "-C", "-t", topic, "-J", "-c", str(count), *extra, timeout=timeout)
    out = [json.loads(ln) for ln in proc.stdout.decode().splitlines() if ln.strip()]
    check(len(out) == count, f"consumed {len(out)} of {count}")
    return out


def values(msgs: list[dict[str, Any]]) -> list[Any]:
    return [None if m["payload"] is None else m["payload"].encode() for m in msgs]


# ---------------------------------------------------------------- scenarios

def s_metadata(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "metadata", 3)
    md = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic).stdout)
    host, port = bootstrap.rsplit(":", 1)
    check(any(b["name"] == f"{host}:{port}" for b in md["brokers"]), f"brokers {md['brokers']}")
    t = [t for t in md["topics"] if t["topic"] == topic]
    check(t and not t[0].get("error"), f"topic missing or in error: {t}")
    parts = sorted(p["partition"] for p in t[0]["partitions"])
    check(parts == [0, 1, 2], f"partitions {parts}")
    ids = {b["id"] for b in md["brokers"]}
    check(all(p["leader"] in ids for p in t[0]["partitions"]), "partition without a known leader")


def _acks(bootstrap: str, acks: str, scenario: str) -> None:
    topic = new_topic(bootstrap, scenario)
    vals = payloads(20)
    produce(bootstrap, topic, vals, "-X", f"acks={acks}")
    check(values(consume(bootstrap, topic, 20)) == vals, "records differ from what was produced")


def s_produce_acks0(bootstrap: str) -> None:
    _acks(bootstrap, "0", "produce_acks0")


def s_produce_acks1(bootstrap: str) -> None:
    _acks(bootstrap, "1", "produce_acks1")


def s_produce_acksall(bootstrap: str) -> None:
    _acks(bootstrap, "all", "produce_acksall")


def s_keys_partitioner(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "keys", 6)
    lines = [f"key-{i % 12}:v{i}".encode() for i in range(60)]
    produce(bootstrap, topic, lines, "-K", ":")
    got = consume(bootstrap, topic, 60)
    where: dict[str, set[int]] = {}
    for m in got:
        where.setdefault(m["key"], set()).add(m["partition"])
    check(len(where) == 12 and all(len(s) == 1 for s in where.values()), "a key is in several partitions")
    check(len({p for s in where.values() for p in s}) > 1, "all keys in one partition")
    check(sorted(f"{m['key']}:{m['payload']}".encode() for m in got) == sorted(lines), "records differ")


def s_headers(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "headers")
    produce(bootstrap, topic, [b"with-headers"], "-H", "h1=v1", "-H", "h2=", "-H", "h1=dup")
    got = consume(bootstrap, topic, 1)
    check(got[0].get("headers") == ["h1", "v1", "h2", "", "h1", "dup"], f"headers {got[0].get('headers')}")


def s_null_values(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "null")
    produce(bootstrap, topic, [b"k1:"], "-K", ":", "-Z")  # -Z: empty value is sent as NULL
    produce(bootstrap, topic, [b"k2:"], "-K", ":")        # without -Z: an empty value
    got = consume(bootstrap, topic, 2)
    check(got[0]["key"] == "k1" and got[0]["payload"] is None, f"tombstone read as {got[0]['payload']!r}")
    check(got[1]["key"] == "k2" and got[1]["payload"] == "", f"empty value read as {got[1]['payload']!r}")


def _compression(bootstrap: str, codec: str) -> None:
    topic = new_topic(bootstrap, "compression-" + codec)
    vals = [v * 20 for v in payloads(50)]
    produce(bootstrap, topic, vals, "-z", codec, "-X", "linger.ms=50")
    check(values(consume(bootstrap, topic, 50)) == vals, "records differ")






def s_consume_assign(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "assign", 3)
    vals = payloads(10)
    produce(bootstrap, topic, vals, "-p", "1")
    got = consume(bootstrap, topic, 5, "-p", "1", "-o", "5")
    check([(m["offset"], m["payload"].encode()) for m in got] == list(zip(range(5, 10), vals[5:], strict=True)),
          f"got offsets {[m['offset'] for m in got]}")


def s_consume_timestamp(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "timestamp")
    produce(bootstrap, topic, [b"t0", b"t1"])
    time.sleep(0.05)
    produce(bootstrap, topic, [b"t2", b"t3", b"t4"])
    got = consume(bootstrap, topic, 5)
    ts = got[2]["ts"]
    check(ts > got[1]["ts"], "second batch has no later timestamp")
    q = kcat(bootstrap, "-Q", "-t", f"{topic}:0:{ts}").stdout.decode()
    m = re.search(r"offset (\d+)", q)
    check(m and int(m.group(1)) == 2, f"-Q for timestamp gave: {q.strip()}")
    first = consume(bootstrap, topic, 1, "-o", f"s@{ts}")
    check(first[0]["payload"] == "t2" and first[0]["ts"] == ts, f"consumed from s@ts: {first[0]}")


def _assignment(stderr: str) -> set[int]:
    """The partitions a kcat -G consumer holds, replayed from its rebalance log lines."""
    held: set[int] = set()
    for line in stderr.splitlines():
        if "rebalanced" not in line:
            continue
        parts = {int(p) for p in re.findall(r"\[(\d+)\]", line.split("protocol)")[-1].split("):")[-1])}
        if "incremental assign" in line:
            held |= parts
        elif "incremental revoke" in line:
            held -= parts
        elif "assigned" in line:
            held = parts
        elif "revoked" in line:
            held = set()
    return held


def _group(bootstrap: str, scenario: str, strategy: str) -> str:
    topic = new_topic(bootstrap, scenario, 4)
    produce(bootstrap, topic, [f"{i}:v{i}".encode() for i in range(40)], "-K", ":")
    group = group_name(CLIENT, scenario)
    tmp = tempfile.mkdtemp(prefix="kcat-group-")
    procs = []
    try:
        for i in range(2):
            out = open(os.path.join(tmp, f"{i}.out"), "wb")  # noqa: SIM115
            err = open(os.path.join(tmp, f"{i}.err"), "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(
                [KCAT, "-b", bootstrap, "-u", "-G", group, "-J", "-X", f"partition.assignment.strategy={strategy}",
                 "-X", "auto.offset.reset=earliest", "-X", "heartbeat.interval.ms=500",
                 "-X", "session.timeout.ms=10000", topic], stdout=out, stderr=err))
            time.sleep(0.5)

        def state() -> tuple[list[set[int]], set[str]]:
            held, seen = [], set()
            for i in range(2):
                with open(os.path.join(tmp, f"{i}.err"), errors="replace") as f:
                    held.append(_assignment(f.read()))
                with open(os.path.join(tmp, f"{i}.out"), errors="replace") as f:
                    for ln in f:
                        if ln.strip().startswith("{"):
                            with contextlib.suppress(ValueError):
                                seen.add(json.loads(ln)["payload"])
            return held, seen

        def done() -> bool:
            for p in procs:
                check(p.poll() is None, f"kcat exited {p.returncode}")
            a, seen = state()
            return bool(a[0] and a[1] and not a[0] & a[1] and a[0] | a[1] == {0, 1, 2, 3} and len(seen) == 40)

        try:
            wait_until(done, 45, "a balanced 2-member group that consumed all 40 records")
        except AssertionError as e:
            a, seen = state()
            raise AssertionError(f"{e} (assigned {a}, consumed {len(seen)}/40)") from None
        a, _ = state()
        return f"assignment {sorted(a[0])} / {sorted(a[1])}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def s_group_range(bootstrap: str) -> str:
    return _group(bootstrap, "group_range", "range")


def s_group_roundrobin(bootstrap: str) -> str:
    return _group(bootstrap, "group_roundrobin", "roundrobin")


def s_group_sticky(bootstrap: str) -> None:
    raise NotSupported("librdkafka ships range, roundrobin and cooperative-sticky (no eager sticky)")


def s_group_cooperative_sticky(bootstrap: str) -> str:
    return _group(bootstrap, "group_cooperative_sticky", "cooperative-sticky")


def s_commit_resume(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "commit")
    vals = payloads(10)
    produce(bootstrap, topic, vals)
    group = group_name(CLIENT, "commit")
    conf = ["-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true"]
    # -G with -c 4: kcat stores the offsets of the 4 messages it printed and commits them on close.
    first = kcat(bootstrap, "-G", group, "-J", "-c", "4", *conf, topic).stdout.decode().splitlines()
    check(len(first) == 4, f"first consumer read {len(first)}")
    got = kcat(bootstrap, "-G", group, "-J", "-c", "1", *conf, topic).stdout.decode().splitlines()
    msg = json.loads(got[0])
    check(msg["offset"] == 4 and msg["payload"].encode() == vals[4], f"resumed at offset {msg['offset']}")


def s_idempotent_producer(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "idempotent")
    vals = payloads(10)
    produce(bootstrap, topic, vals, "-X", "enable.idempotence=true", "-X", "message.timeout.ms=15000")
    check(values(consume(bootstrap, topic, 10)) == vals, "records differ")


def s_transactions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "txn")
    txn = ["-X", f"transactional.id={topic}-tx", "-X", "message.timeout.ms=15000"]
    produce(bootstrap, topic, [b"c1", b"c2", b"c3"], *txn)  # committed when stdin closes
    # A transaction kcat aborts: interrupted (SIGINT) while its input is still open.
    p = subprocess.Popen([KCAT, "-b", bootstrap, "-P", "-t", topic, *txn], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stdin is not None
    p.stdin.write(b"a1\na2\n")
    p.stdin.flush()
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    produce(bootstrap, topic, [b"c4"], *txn)
    got = consume(bootstrap, topic, 4, "-X", "isolation.level=read_committed")
    check(values(got) == [b"c1", b"c2", b"c3", b"c4"], f"read {values(got)}")


def _no_txn_control(bootstrap: str) -> None:
    raise NotSupported("kcat -P runs one transaction per invocation (committed at end of input): no control "
                       "over several transactions, partitions of two topics or consumed offsets")


s_txn_abort_multi = s_txn_read_committed = s_txn_read_uncommitted = s_txn_send_offsets = _no_txn_control


def _no_admin(bootstrap: str) -> None:
    raise NotSupported("kcat has no admin commands")


s_admin_topics = s_admin_partitions = s_admin_configs = s_admin_groups = _no_admin


def s_large_messages(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "large")
    big = os.urandom(LARGE_SIZE // 2).hex().encode()  # text: kcat reads messages from lines
    check(len(big) == LARGE_SIZE, "size")
    conf = ["-X", "message.max.bytes=4194304", "-X", "message.timeout.ms=20000"]
    produce(bootstrap, topic, [big], *conf)
    got = consume(bootstrap, topic, 1, "-X", "fetch.max.bytes=4194304",
                  "-X", "max.partition.fetch.bytes=4194304")
    check(got[0]["payload"].encode() == big, "large value differs")
    try:
        produce(bootstrap, topic, [os.urandom(OVERSIZE // 2).hex().encode()], *conf, "-X", "retries=0")
    except RuntimeError as e:
        check("too large" in str(e).lower() or "MSG_SIZE_TOO_LARGE" in str(e), f"rejected with {e}")
    else:
        raise AssertionError("broker accepted a record over max.message.bytes")


def s_many_partitions(bootstrap: str) -> None:
    topic = new_topic(bootstrap, "many", 64)
    # One kcat -P per partition (-p picks it).
    for i in range(64):
        produce(bootstrap, topic, [f"p{i}".encode()], "-p", str(i))
    got = consume(bootstrap, topic, 64, timeout=60)
    check(sorted((m["partition"], m["payload"]) for m in got) == sorted((i, f"p{i}") for i in range(64)),
          "records differ")


# ---------------------------------------------------------------- security

def _login_args(lg: Login) -> list[str]:
    """kcat's ``-X`` options (librdkafka's settings) for a Login."""
    conf = {"security.protocol": lg.protocol}
    if lg.mechanism == "OAUTHBEARER":
        # librdkafka's built-in unsecured JWS token (principal = the sub claim).
        conf.update({"sasl.mechanisms": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": "true",
                     "sasl.oauthbearer.config": f"principal={lg.user}"})
    elif lg.sasl:
        conf.update({"sasl.mechanisms": lg.mechanism or "", "sasl.username": lg.user or "",
                     "sasl.password": lg.password or ""})
    if lg.tls:
        conf["ssl.ca.location"] = lg.ca or ""
        if lg.cert:
            conf.update({"ssl.certificate.location": lg.cert, "ssl.key.location": lg.key or ""})
    return [arg for k, v in conf.items() for arg in ("-X", f"{k}={v}")]


#: librdkafka before 2.6.1 sends a wrong SCRAM client-final nonce (the client nonce appended twice,
#: confluentinc/librdkafka#4895); Kafka 4.x compares it strictly (RFC 5802) and refuses every login.
SCRAM_FIXED_IN = (2, 6, 1)


def _librdkafka_version() -> tuple[int, ...]:
    """The librdkafka version kcat runs on (``kcat -V``)."""
    text = subprocess.run([KCAT, "-V"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in m.groups()) if m else (0,)


def _scram_problem() -> str:
    """Why this kcat cannot log in with SCRAM ('' when it can)."""
    version = _librdkafka_version()
    if version >= SCRAM_FIXED_IN:
        return ""
    return (f"kcat's librdkafka {'.'.join(map(str, version))} sends a wrong SCRAM nonce, which Kafka 4.x refuses "
            "(RFC 5802's nonce check; fixed in librdkafka 2.6.1, confluentinc/librdkafka#4895)")


def _sec_roundtrip(bootstrap: str, scenario: str, lg: Login) -> str:
    """Create a topic over PLAINTEXT; produce and read back with kcat over ``lg``'s listener."""
    if (lg.mechanism or "").startswith("SCRAM") and _scram_problem():
        raise NotSupported(_scram_problem())
    topic = new_topic(bootstrap, scenario, 2)
    lines = payloads(10, "sec")
    produce(lg.bootstrap, topic, lines, *_login_args(lg))
    msgs = consume(lg.bootstrap, topic, 10, *_login_args(lg))
    check(sorted(values(msgs)) == lines, "records read back differ")
    return f"10 records over {lg.protocol}" + (f"/{lg.mechanism}" if lg.mechanism else "")


def _sec_refused(bootstrap: str, scenario: str) -> str:
    if scenario == "sec_oauthbearer_expired":
        raise NotSupported("kcat takes no token of one's own: librdkafka's unsecured token builder always "
                           "makes a fresh one")
    bad, good = sec_refusals(scenario)
    notes = []
    if (good.mechanism or "").startswith("SCRAM") and _scram_problem():
        # This kcat's SCRAM logins fail whatever the password, so they show nothing here: the
        # refusals are checked with PLAIN and the broker's service after them with PLAIN.
        bad = [(label, lg) for label, lg in bad if not (lg.mechanism or "").startswith("SCRAM")]
        good = login("SASL_PLAINTEXT", "PLAIN")
        notes.append("SCRAM not checked: " + _scram_problem())
    for label, lg in bad:
        if (lg.mechanism or "").startswith("SCRAM") and _scram_problem():
            notes.append(f"{label}: not checked (SCRAM unusable with this kcat)")
            continue
        # kcat -L (metadata) exits non-zero once librdkafka gives up; its log on stderr says why:
        # the broker's SASL error, or the TLS handshake (or the read after it, TLS 1.3) failing.
        proc = subprocess.run([KCAT, "-b", lg.bootstrap, "-L", "-m", "8", *_login_args(lg)], capture_output=True,
                              timeout=40)
        err = proc.stderr.decode(errors="replace")
        check(proc.returncode != 0, f"{label}: kcat -L succeeded")
        words = ("SASL authentication error",) if lg.sasl else ("SSL", "ssl://")
        reason = next((ln for ln in err.splitlines() if any(w in ln for w in words)), None)
        check(reason is not None, f"{label}: kcat failed without saying why: {err.strip().splitlines()[-1:]}")
        assert reason is not None
        notes.append(f"{label}: {reason[reason.rfind(': ', 0, reason.find(words[0])) + 2:][:90]}")
    return _sec_roundtrip(bootstrap, scenario, good) + "; refused: " + "; ".join(notes)


def _security(scenario: str) -> Any:
    if scenario in SEC_ROUNDTRIPS:
        listener, mechanism = SEC_ROUNDTRIPS[scenario]
        return lambda bootstrap: _sec_roundtrip(bootstrap, scenario, login(listener, mechanism))
    return lambda bootstrap: _sec_refused(bootstrap, scenario)
