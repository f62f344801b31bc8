#!/usr/bin/env bash
# Build the Go clients of the compatibility matrix, idempotently:
#   compat/clients/go (franz-go, sarama, kafka-go; versions pinned in go.mod/go.sum)
#   -> compat/work/go-clients/bin/{franz,sarama,kafkago}
# Modules come from the Go module proxy into the usual module cache (GOMODCACHE/GOPATH as
# set in the environment are respected). Rebuilds only when a source file, go.mod, go.sum
# or the Go toolchain changed. Needs Go >= 1.26 (franz-go 1.22 requires it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SRC=$ROOT/compat/clients/go
OUT=$ROOT/compat/work/go-clients
BIN=$OUT/bin
PROGRAMS=(franz sarama kafkago)

if ! command -v go >/dev/null 2>&1; then
    echo "setup-go-clients: go is not installed (Go >= 1.26 is needed to build the Go clients)" >&2
    exit 1
fi
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$SRC/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "setup-go-clients: go $have is older than the $need that compat/clients/go/go.mod needs" >&2
    exit 1
fi

# What the binaries are built from: the sources, go.mod and go.sum (the digest that
# compat/clients/golang.py checks before it runs them) and the toolchain.
sources=$(PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} python3 -c \
    'from compat.clients.golang import source_digest; print(source_digest())')
stamp="$sources $(go env GOVERSION)"
built=1
for p in "${PROGRAMS[@]}"; do [ -x "$BIN/$p" ] || built=0; done
if [ $built -eq 1 ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "setup-go-clients: Go clients already built ($BIN)" >&2
    exit 0
fi

echo "setup-go-clients: building the Go clients into $BIN" >&2
mkdir -p "$BIN"
rm -f "$OUT/stamp"
started=$(date +%s)
(
    cd "$SRC"
    # go.mod and go.sum are committed and complete: the build fetches exactly the modules
    # it needs at those versions (-mod=readonly never rewrites them). No VCS stamping
    # (worktrees, tarballs).
    go build -mod=readonly -buildvcs=false -trimpath -o "$BIN/" ./cmd/...
)
for p in "${PROGRAMS[@]}"; do
    [ -x "$BIN/$p" ] || { echo "setup-go-clients: $BIN/$p was not built" >&2; exit 1; }
done
echo "$stamp" > "$OUT/stamp"
echo "setup-go-clients: built ${PROGRAMS[*]} in $(( $(date +%s) - started )) s" >&2
