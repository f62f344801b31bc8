"""Reference mode: the same matrix against a real Apache Kafka 4.1.1, and what differs.

``python -m compat --reference`` runs every selected cell against kbroker *and* against Apache
Kafka 4.1.1. Kafka comes from one of two places:

* **local jars** (preferred, no Docker): tools/kafka_reference starts a single KRaft node
  (broker and controller in one JVM) from Maven Central's jars; needs ``java`` and ``mvn``.
* **Docker** (fallback, only where a Docker engine runs): testcontainers' KafkaContainer
  with the ``apache/kafka:4.1.1`` image.

Both brokers get the same settings on top of their defaults (compat.broker.BASE_OVERRIDES,
plus Kafka's own single-node replication settings), so a scenario sees the same broker
behaviour apart from the implementation under test.

Two cells *differ* when their status (pass, fail, n/a) differs, or when both pass and their
comparable detail differs (a group's assignment, compared as a set of partition sets, since
which member gets which share depends on random member ids). compat/DIFFERENCES.md lists
every expected difference with its reason; ``--check-differences`` fails on any other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from compat.broker import BASE_OVERRIDES, BrokerError
from compat.report import Cell, md_escape, md_unescape, split_row

#: The Kafka release the reference runs (tools/kafka_reference pins the jars to it).
KAFKA_VERSION = "4.1.1"
#: Column label of the reference broker in reports.
KAFKA_LABEL = f"Kafka {KAFKA_VERSION}"
#: Apache Kafka's own image for the Docker fallback, KRaft mode.
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"


class BrokerLike(Protocol):
    """What the runner needs of a broker: compat.broker.Broker's interface."""

    bootstrap: str

    @property
    def log_path(self) -> Path | str: ...

    def start(self) -> BrokerLike: ...

    def alive(self) -> bool: ...

    def tail(self, n: int = 5) -> list[str]: ...

    def stop(self) -> None: ...


def kafka_config() -> dict[str, str]:
    """Settings on top of tools/kafka_reference's single-node defaults: the ones kbroker's compat
    runs use (compat.broker.BASE_OVERRIDES) and kbroker's defaults where a scenario depends on them."""
    conf = {
        "num.partitions": "1",               # auto-created topics (kbroker's default too)
        "auto.create.topics.enable": "true",
        "message.max.bytes": "1048588",      # large_messages probes this limit
    }
    conf.update(BASE_OVERRIDES)
    return conf


def _local_unavailable() -> str | None:
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (the local reference Kafka runs from Maven Central's jars)"
    return None


def _docker_unavailable() -> str | None:
    if _kafka_container_class() is None:
        return "the testcontainers package is not installed (pip install 'testcontainers[kafka]')"
    docker = shutil.which("docker")
    if docker is None:
        return "no Docker client on PATH"
    try:
        probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the Docker engine did not answer: {e}"
    if probe.returncode != 0 or not probe.stdout.strip():
        first = (probe.stderr.strip().splitlines() or ["no server version"])[0]
        return f"no Docker engine is running ({first})"
    return None


def backend() -> tuple[str | None, str]:
    """``("local", "")`` or ``("docker", "")`` for the reference Kafka to use, or ``(None, why)``."""
    local = _local_unavailable()
    if local is None:
        return "local", ""
    docker = _docker_unavailable()
    if docker is None:
        return "docker", ""
    return None, f"{local}; and the Docker fallback cannot run either: {docker}"


def unavailable_reason() -> str | None:
    """Why reference mode cannot run here at all, or None when it can."""
    kind, why = backend()
    return None if kind else why


def make_reference(log_dir: Path) -> BrokerLike:
    """A not yet started reference Kafka of the preferred kind (see :func:`backend`)."""
    kind, why = backend()
    if kind == "local":
        return LocalKafka(log_dir)
    if kind == "docker":
        return DockerKafka()
    raise BrokerError(f"no reference Kafka can run here: {why}")


class LocalKafka:
    """tools/kafka_reference's Kafka with compat.broker.Broker's interface.

    Its work dir (data, server.properties, log) is a fresh temporary directory, removed by
    ``stop()`` after the broker's log has been copied to ``log_dir/kafka-<time>.log``.
    """

    def __init__(self, log_dir: Path, heap: str = "512m") -> None:
        self.log_dir = log_dir
        self.heap = heap
        self.workdir = Path(tempfile.mkdtemp(prefix="kafka-reference-compat-"))
        self.kept_log = log_dir / f"kafka-{time.strftime('%Y%m%d-%H%M%S')}-{self.workdir.name[-8:]}.log"
        self._kafka: Any = None
        self.bootstrap = ""

    @property
    def log_path(self) -> Path:
        """The live log while the broker runs; its kept copy once stopped."""
        if self._kafka is not None and self._kafka.proc is not None:
            return Path(self._kafka.log_path)
        return self.kept_log

    def start(self) -> LocalKafka:
        """Resolve the jars (once), format storage, start; raises BrokerError on failure."""
        from tools.kafka_reference import KafkaReference, resolve_jars

        try:
            resolve_jars()
            self._kafka = KafkaReference(self.workdir, heap=self.heap, extra_config=kafka_config())
            self._kafka.start()
        except Exception as e:  # Maven's or Kafka's failure text is the reason
            self.stop()
            raise BrokerError(f"reference Kafka did not start: {str(e)[:500]}") from e
        self.bootstrap = self._kafka.bootstrap
        return self

    def alive(self) -> bool:
        """Whether the JVM is still running."""
        return self._kafka is not None and self._kafka.proc is not None and self._kafka.proc.poll() is None

    def tail(self, n: int = 5) -> list[str]:
        """The last ``n`` lines of Kafka's log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-n:]

    def stop(self) -> None:
        """Stop the JVM, keep its log, remove the work dir."""
        if self._kafka is not None:
            live_log = Path(self._kafka.log_path)
            self._kafka.stop()
            if live_log.exists():
                self.log_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(live_log, self.kept_log)
            self._kafka = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _kafka_container_class() -> Any:
    """testcontainers' KafkaContainer (moved to testcontainers.community in 4.x), or None."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            return None
    return KafkaContainer


class DockerKafka:
    """Apache Kafka in a container (testcontainers), with compat.broker.Broker's interface."""

    def __init__(self, image: str = KAFKA_IMAGE) -> None:
        container_class = _kafka_container_class()
        if container_class is None:
            raise BrokerError("testcontainers is not installed")
        container = container_class(image).with_kraft()
        for key, value in kafka_config().items():
            container = container.with_env("KAFKA_" + key.upper().replace(".", "_"), value)
        self._container: Any = container
        self._running = False
        self.bootstrap = ""
        self.log_path = "docker logs"

    def start(self) -> DockerKafka:
        """Start the container and wait for Kafka."""
        try:
            self._container.start()
        except Exception as e:
            raise BrokerError(f"reference Kafka container did not start: {e}") from e
        self._running = True
        self.bootstrap = self._container.get_bootstrap_server()
        return self

    def alive(self) -> bool:
        """Whether the container still runs."""
        if not self._running:
            return False
        try:
            self._container.get_wrapped_container().reload()
            return bool(self._container.get_wrapped_container().status == "running")
        except Exception:
            return False

    def tail(self, n: int = 5) -> list[str]:
        """The last ``n`` lines of the container's output."""
        out, err = self._container.get_logs()
        return bytes(out + err).decode(errors="replace").splitlines()[-n:]

    def stop(self) -> None:
        """Stop and remove the container."""
        if self._running:
            self._running = False
            self._container.stop()


# --- comparing cells ------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"assignment\s*(\[[^\]]*\])\s*/\s*(\[[^\]]*\])")


def comparable_detail(cell: Cell) -> str:
    """The part of a passing cell's detail two brokers must agree on.

    A two-member group's ``assignment [a] / [b]`` becomes the sorted pair of partition sets
    (which member is listed first depends on random member ids). Other detail text is a
    client's note (timings, counts of a run, library quirks) and is not compared.
    """
    m = _ASSIGNMENT.search(cell.detail)
    if m:
        shares = sorted(tuple(sorted(int(p) for p in re.findall(r"\d+", g))) for g in m.groups())
        return "assignment " + " / ".join(str(list(s)) for s in shares)
    return ""


#: Scenarios whose passing detail is not compared: a sticky assignor's shares depend on the
#: previous assignment, i.e. on whether the second member joined before the first generation
#: completed, which is timing on either broker.
DETAIL_NOT_COMPARED = frozenset({"group_sticky", "group_cooperative_sticky"})


def differs(ours: Cell | None, theirs: Cell | None, scenario: str = "") -> bool:
    """Whether a kbroker cell and a Kafka cell disagree (False when either was not run)."""
    if ours is None or theirs is None or "missing" in (ours.status, theirs.status):
        return False
    if ours.status != theirs.status:
        return True
    return (ours.status == "pass" and scenario not in DETAIL_NOT_COMPARED
            and comparable_detail(ours) != comparable_detail(theirs))


def _short(cell: Cell, scenario: str) -> str:
    label = {"na": "n/a"}.get(cell.status, cell.status)
    if cell.status == "pass" and scenario not in DETAIL_NOT_COMPARED and _ASSIGNMENT.search(cell.detail):
        return f"{label} ({comparable_detail(cell)})"
    return label


@dataclass(frozen=True)
class Difference:
    """One (client, scenario) where kbroker and Kafka disagree."""

    client: str
    scenario: str
    kbroker: str  # short form: status, plus the assignment for group scenarios
    kafka: str
    reason: str = ""

    @property
    def intermittent(self) -> bool:
        """A difference that shows only in some runs (its reason starts with "Intermittent")."""
        return self.reason.lower().startswith("intermittent")


def differences(kbroker: dict[tuple[str, str], Cell],
                kafka: dict[tuple[str, str], Cell]) -> list[Difference]:
    """Every (client, scenario) run on both brokers whose cells differ, in the given order."""
    out = []
    for key, ours in kbroker.items():
        theirs = kafka.get(key)
        if theirs is not None and differs(ours, theirs, key[1]):
            out.append(Difference(key[0], key[1], _short(ours, key[1]), _short(theirs, key[1])))
    return out


DIFF_HEADER = ["client", "scenario", "kbroker", "Kafka", "reason"]


def parse_differences(path: Path) -> dict[tuple[str, str], Difference]:
    """The table of DIFFERENCES.md: ``{(client, scenario): Difference}``."""
    out: dict[tuple[str, str], Difference] = {}
    if not path.exists():
        return out
    in_table = False
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cols = split_row(line)
        if [c.lower() for c in cols] == [h.lower() for h in DIFF_HEADER]:
            in_table = True
            continue
        if not in_table or set("".join(cols)) <= set("-: "):
            continue
        if len(cols) != len(DIFF_HEADER):
            raise ValueError(f"{path}: a row needs {len(DIFF_HEADER)} columns: {line}")
        client, scenario, ours, theirs, reason = (md_unescape(c.strip("`")) for c in cols)
        if not reason.strip():
            raise ValueError(f"{path}: {client} × {scenario} has no reason")
        out[(client, scenario)] = Difference(client, scenario, ours, theirs, reason)
    return out


def _status_of(short: str) -> str:
    return short.split(" ", 1)[0]


def check_differences(found: list[Difference], listed: dict[tuple[str, str], Difference],
                      ran: set[tuple[str, str]]) -> tuple[list[Difference], list[Difference]]:
    """``(unlisted, gone)``: differences found that DIFFERENCES.md does not list (or lists with
    other outcomes), and listed ones whose cells were run on both brokers and no longer differ
    (except intermittent ones, which are expected not to show every time)."""
    unlisted = []
    for d in found:
        known = listed.get((d.client, d.scenario))
        if known is None or (_status_of(known.kbroker), _status_of(known.kafka)) != \
                (_status_of(d.kbroker), _status_of(d.kafka)):
            unlisted.append(d)
    seen = {(d.client, d.scenario) for d in found}
    gone = [d for key, d in listed.items() if key in ran and key not in seen and not d.intermittent]
    return unlisted, gone


def write_differences(path: Path, found: list[Difference], listed: dict[tuple[str, str], Difference],
                      note: str) -> None:
    """A DIFFERENCES.md for ``found``: reasons kept from ``listed``, new ones marked to explain."""
    lines = [
        "# kbroker vs Apache Kafka 4.1.1: where the compatibility matrix differs",
        "",
        note,
        "",
        "| " + " | ".join(DIFF_HEADER) + " |",
        "|" + "---|" * len(DIFF_HEADER),
    ]
    for d in found:
        known = listed.get((d.client, d.scenario))
        reason = known.reason if known else "UNEXPLAINED: investigate, then fix kbroker or give the reason"
        cols = [md_escape(d.client), f"`{d.scenario}`", md_escape(d.kbroker), md_escape(d.kafka), md_escape(reason)]
        lines.append("| " + " | ".join(cols) + " |")
    lines.append("")
    path.write_text("\n".join(lines))
