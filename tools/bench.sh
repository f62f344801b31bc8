#!/usr/bin/env bash
# Broker benchmark, kbroker against Tansu and Apache Kafka: `tools/bench.sh --quick` (CI), `tools/bench.sh --json out.json`.
# Everything after the script name goes to `python -m tools.bench`; see docs/performance.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" -m tools.bench "$@"
