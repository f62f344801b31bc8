#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian/Ubuntu machine:
# kcat, etcd-server, chromium and chromium-driver (apt) and this package with its [test] extras (pip, editable).
# Idempotent, and quick when everything is already installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
else
    SUDO=(sudo)
fi

# The web console's browser tests: Debian's chromium and chromium-driver. Where apt has no
# chromium-driver (Ubuntu ships chromium as a snap), a Chrome and chromedriver already on the
# machine serve (GitHub's runner images carry both; $CHROMIUM_BIN/$CHROMEDRIVER point at
# others); the tests fail in CI when they find neither.
have_browser() {
    { command -v chromium || command -v chromium-browser || command -v google-chrome || [ -n "${CHROMIUM_BIN:-}" ]; } \
        >/dev/null 2>&1 &&
        { command -v chromedriver || [ -n "${CHROMEDRIVER:-}" ] || [ -x "${CHROMEWEBDRIVER:-/nonexistent}/chromedriver" ]; } \
        >/dev/null 2>&1
}

# kcat, and etcd (the cluster's coordination service, for the cluster tests): from Debian, with
# the browser, after one apt-get update.
APT=()
command -v kcat >/dev/null 2>&1 || APT+=(kcat)
command -v etcd >/dev/null 2>&1 || APT+=(etcd-server)
BROWSER=0
have_browser || BROWSER=1
if { [ "${#APT[@]}" -gt 0 ] || [ "$BROWSER" -eq 1 ]; } && command -v apt-get >/dev/null 2>&1; then
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    if [ "$BROWSER" -eq 1 ]; then
        # Read whole, then matched: `grep -q` in a pipe may end it early, and pipefail would count
        # apt-cache's broken pipe as "no candidate".
        policy="$(apt-cache policy chromium-driver 2>/dev/null || true)"
        if [[ "$policy" =~ Candidate:\ [0-9] ]]; then
            APT+=(chromium chromium-driver)
        else
            echo "setup: apt has no chromium-driver here; the console's browser tests need chromium and chromedriver" >&2
        fi
    fi
    if [ "${#APT[@]}" -gt 0 ]; then
        echo "setup: installing ${APT[*]}" >&2
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT[@]}" >/dev/null
    fi
    # Debian starts the etcd service it installs: the tests run their own, on their own ports.
    if [[ " ${APT[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi

# Skip pip when kbroker is installed editable from this checkout and every
# requirement (base + [test]) in pyproject.toml is already satisfied.
if "$PYTHON" - <<'PY'
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    sys.exit(1)

# look only at installed packages, not at a kbroker.egg-info left in the checkout
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path.cwd().resolve()]

root = Path.cwd().resolve()
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
try:
    dist = metadata.distribution(project["name"])
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
except metadata.PackageNotFoundError:
    sys.exit(1)
if dist.version != project["version"] or direct.get("url") != root.as_uri():
    sys.exit(1)
if not direct.get("dir_info", {}).get("editable"):
    sys.exit(1)
wanted = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("test", []))
for line in wanted:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(installed, prereleases=True):
        sys.exit(1)
# the installed metadata must still declare the same scripts and entry points
declared = {(ep.group, ep.name, ep.value) for ep in dist.entry_points}
expected = {("console_scripts", k, v) for k, v in project.get("scripts", {}).items()}
for group, entries in project.get("entry-points", {}).items():
    expected |= {(group, k, v) for k, v in entries.items()}
sys.exit(0 if expected <= declared else 1)
PY
then
    echo "setup: python test dependencies already installed" >&2
else
    echo "setup: pip install -e '.[test]'" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
