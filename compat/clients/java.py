"""The Java columns of the matrix: kafka-clients (CompatCell) and a Kafka Streams app (StreamsCell).

Both are built by tools/setup-java-clients.sh (run by tools/setup-compat-env.sh) from
compat/clients/java/: its pom resolves kafka-clients, kafka-streams and slf4j-simple into
compat/work/java-clients/lib and javac compiles src/*.java into compat/work/java-clients/classes.
Each cell is one JVM: ``java -cp CLASSES:LIB/* CompatCell|StreamsCell SCENARIO BOOTSTRAP``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from compat.client import Client

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "work" / "java-clients"
CLASSES = BUILD / "classes"
LIB = BUILD / "lib"

#: Short-lived JVMs: small heap, serial GC and the C1 compiler only start and finish faster.
JVM_FLAGS = ["-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]


def _command(main_class: str) -> list[str]:
    return ["java", *JVM_FLAGS, "-cp", f"{CLASSES}:{LIB}/*", main_class]


def _check(main_class: str) -> str:
    if not shutil.which("java"):
        return "java not installed"
    if not (CLASSES / f"{main_class}.class").exists() or not any(LIB.glob("kafka-clients-*.jar")):
        return "not built: run tools/setup-compat-env.sh"
    return ""


def _version(artifact: str) -> str:
    for jar in sorted(LIB.glob(f"{artifact}-*.jar")):
        m = re.fullmatch(re.escape(artifact) + r"-(\d[\w.\-]*)\.jar", jar.name)
        if m:
            return f"{artifact} {m.group(1)}"
    return "not installed"


JAVA_CLIENTS: list[Client] = [
    Client("java", "program", command=lambda: _command("CompatCell"), check=lambda: _check("CompatCell"),
           version_of=lambda: _version("kafka-clients")),
    Client("kafka-streams", "program", command=lambda: _command("StreamsCell"), check=lambda: _check("StreamsCell"),
           version_of=lambda: _version("kafka-streams")),
]


def java_matrix_status() -> str:
    """One sentence for the report: the Java columns and their versions, or why they cannot run."""
    why = _check("StreamsCell")
    if why:
        return f"columns java and kafka-streams unavailable: {why}"
    return (f"columns java ({_version('kafka-clients')}) and kafka-streams ({_version('kafka-streams')}), "
            "built by tools/setup-java-clients.sh")
