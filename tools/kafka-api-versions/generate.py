"""Regenerate ``kbroker/server/data/kafka_api_versions.json``: the API version ranges each Apache
Kafka release's broker listener advertises in ApiVersions, computed by that release's own
``kafka-clients`` jar (from Maven Central, through ``mvn dependency:copy``) running
``ApiVersionsDump.java``. Needs Java 17 and Maven; run from the repository root:

    python tools/kafka-api-versions/generate.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "kbroker" / "server" / "data" / "kafka_api_versions.json"
#: The latest patch release of each minor release covered.
RELEASES = {
    "2.8": "2.8.2", "3.0": "3.0.2", "3.1": "3.1.2", "3.2": "3.2.3", "3.3": "3.3.2", "3.4": "3.4.1",
    "3.5": "3.5.2", "3.6": "3.6.2", "3.7": "3.7.2", "3.8": "3.8.1", "3.9": "3.9.2", "4.0": "4.0.2",
    "4.1": "4.1.2",
}


def listener(release: str) -> str:
    """ZooKeeper brokers up to 3.9 (the default mode then), KRaft brokers from 4.0."""
    return "BROKER" if int(release.split(".")[0]) >= 4 else "ZK_BROKER"


def jar(version: str, into: Path) -> Path:
    """``kafka-clients-<version>.jar`` fetched from Maven Central into ``into``."""
    subprocess.run(["mvn", "-q", "dependency:copy", f"-Dartifact=org.apache.kafka:kafka-clients:{version}",
                    f"-DoutputDirectory={into}"], check=True)
    return into / f"kafka-clients-{version}.jar"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["javac", "-d", str(work), str(HERE / "ApiVersionsDump.java")], check=True)
        out: dict[str, object] = {}
        names: dict[int, str] = {}
        for release, version in RELEASES.items():
            path = jar(version, work / "jars")
            lines = subprocess.run(["java", "-cp", f"{path}:{work}", "ApiVersionsDump", listener(release)],
                                   check=True, capture_output=True, text=True).stdout.split()
            rows = [lines[i:i + 4] for i in range(0, len(lines), 4)]
            triples = [(int(k), int(lo), int(hi)) for k, lo, hi, _ in rows]
            names.update((int(k), name) for k, _, _, name in rows)
            out[release] = {
                "kafka": version,
                "listener": listener(release),
                "api_keys": {str(k): [lo, hi] for k, lo, hi in sorted(triples)},
            }
            print(f"{release} ({version}): {len(triples)} APIs", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"source": "ApiVersionsResponse of each release's kafka-clients jar "
                                 "(tools/kafka-api-versions/generate.py)",
                       "api_names": {str(k): names[k] for k in sorted(names)}, "releases": out}, indent=1)
    text = re.sub(r"\[\s+(-?\d+),\s+(-?\d+)\s+\]", r"[\1, \2]", text)  # one range a line
    OUT.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
