#!/usr/bin/env bash
# Install what the compatibility matrix (python -m compat) needs, idempotently:
#   - kcat (Debian package)
#   - kafkajs 2.2.4 + its snappy/lz4 codecs (npm) into compat/work/node_modules
#   - build dependencies for librdkafka's test suite (gcc, make, zlib, ...)
#   - the reference Apache Kafka's jars (Maven Central, tools/kafka_reference)
#   - the Java client and Kafka Streams app of the matrix (tools/setup-java-clients.sh)
# With --librdkafka it also fetches librdkafka 2.12.0's source (the copy vendored in the
# npm package node-rdkafka@3.6.1) into compat/work/ and builds librdkafka + tests/test-runner
# (about 2 minutes on 2 cores) for python -m compat.librdkafka, and librdkafka 2.15.1's (the
# copy vendored in @confluentinc/kafka-javascript@1.10.1; without SSL; about 5 minutes) beside it
# for python -m compat.librdkafka --suite 2.15 (its KIP-848 and share-consumer tests). Each build
# is kept in compat/work and redone only when its test-runner is missing.
# Python clients (kafka-python, confluent-kafka, aiokafka) come from tools/setup-test-env.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
WORK=$ROOT/compat/work
LIBRDKAFKA_VERSION=2.12.0
NODE_RDKAFKA=node-rdkafka@3.6.1
LIBRDKAFKA_NEXT_VERSION=2.15.1
KAFKA_JAVASCRIPT=@confluentinc/kafka-javascript@1.10.1
KAFKAJS_PKGS=(kafkajs@2.2.4 kafkajs-snappy@1.1.0 kafkajs-lz4@1.2.1)

WITH_LIBRDKAFKA=0
for arg in "$@"; do
    case $arg in
        --librdkafka) WITH_LIBRDKAFKA=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "setup-compat-env: unknown option $arg" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup-compat-env: apt-get install ${missing[*]}" >&2
    if [ $APT_UPDATED -eq 0 ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kcat, node/npm for kafkajs, and librdkafka's build dependencies (OpenSSL for its SSL/SASL tests).
apt_install kcat
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
apt_install build-essential pkg-config python3 zlib1g-dev liblz4-dev libssl-dev

mkdir -p "$WORK"
want_kafkajs() {
    [ -f "$WORK/node_modules/kafkajs/package.json" ] || return 0
    node -e 'process.exit(require(process.argv[1]).version === "2.2.4" ? 1 : 0)' \
        "$WORK/node_modules/kafkajs/package.json" || return 1
    return 0
}
lz4_loads() { node -e 'require(process.argv[1])' "$WORK/node_modules/kafkajs-lz4" >/dev/null 2>&1; }
if want_kafkajs || [ ! -d "$WORK/node_modules/kafkajs-snappy" ] || ! lz4_loads; then
    echo "setup-compat-env: npm install ${KAFKAJS_PKGS[*]} into compat/work" >&2
    [ -f "$WORK/package.json" ] || echo '{"name":"kbroker-compat-work","private":true,"version":"0.0.0"}' > "$WORK/package.json"
    # kafkajs-lz4 depends on lz4, whose install script compiles a native addon with
    # node-gyp (g++ and node's headers; Debian's nodejs ships them, so no download).
    (cd "$WORK" && npm install --no-audit --no-fund --loglevel=error "${KAFKAJS_PKGS[@]}" >/dev/null)
    node -e 'require(process.argv[1])' "$WORK/node_modules/kafkajs-lz4" || {
        echo "setup-compat-env: kafkajs-lz4 does not load (lz4 native build failed?)" >&2; exit 1; }
else
    echo "setup-compat-env: kafkajs already installed" >&2
fi

# The reference Apache Kafka (tools/kafka_reference): its jars from Maven Central, cached in
# tools/.cache (git-ignored); the JDK and Maven normally come with the machine.
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null 2>&1 || apt_install maven
echo "setup-compat-env: resolving the reference Kafka's jars (Maven)" >&2
PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} python3 -m tools.kafka_reference fetch >/dev/null
# The Java client and Kafka Streams columns (kafka-clients/kafka-streams 4.1.1 → compat/work/java-clients).
bash "$ROOT/tools/setup-java-clients.sh"

bash "$ROOT/tools/setup-go-clients.sh"   # franz-go, sarama, kafka-go -> compat/work/go-clients/bin

if [ $WITH_LIBRDKAFKA -eq 1 ]; then
    SRC=$WORK/librdkafka-$LIBRDKAFKA_VERSION
    if [ ! -f "$SRC/configure" ]; then
        echo "setup-compat-env: fetching librdkafka $LIBRDKAFKA_VERSION source ($NODE_RDKAFKA from npm)" >&2
        tmp=$(mktemp -d)
        (cd "$tmp" && npm pack --silent "$NODE_RDKAFKA" >/dev/null && tar xzf node-rdkafka-*.tgz)
        grep -q "RD_KAFKA_VERSION  *0x020c00ff" "$tmp/package/deps/librdkafka/src/rdkafka.h" || {
            echo "setup-compat-env: $NODE_RDKAFKA does not vendor librdkafka $LIBRDKAFKA_VERSION" >&2; exit 1; }
        rm -rf "$SRC"
        mv "$tmp/package/deps/librdkafka" "$SRC"
        rm -rf "$tmp"
    fi
    # 0103_transactions and 0142_reauthentication create topics with replication factor 3
    # (librdkafka's CI runs three brokers) but need nothing else of a cluster: asked for factor 1
    # they run against one broker.
    for RF_TEST in "$SRC/tests/0103-transactions.c" "$SRC/tests/0142-reauthentication.c"; do
        if grep -q 'test_create_topic_wait_exists(p1\?, [a-z_]*, [0-9a-z_]*, 3, 5000)' "$RF_TEST"; then
            sed -i 's/test_create_topic_wait_exists(\(p1\?\), \([a-z_]*\), \([0-9a-z_]*\), 3, 5000)/test_create_topic_wait_exists(\1, \2, \3, 1, 5000)/' \
                "$RF_TEST"
            rm -f "$SRC/tests/test-runner"
        fi
    done
    # 0077_compaction creates its topic with segment.bytes=10000, which Kafka 4.x's kafka-topics.sh
    # refuses (at least 1048576) before asking the broker; its small segments only serve to roll
    # the written records out of the active segment so they can be compacted, which a 1 ms
    # segment.ms does as well (each later produce rolls the segment; the test writes in bursts
    # a few milliseconds apart).
    COMPACTION_TEST=$SRC/tests/0077-compaction.c
    if grep -q '"--config segment.bytes=10000 "' "$COMPACTION_TEST"; then
        sed -i 's/"--config segment.ms=10000 "/"--config segment.ms=1 "/; s/"--config segment.bytes=10000 "/"--config segment.bytes=1048576 "/' \
            "$COMPACTION_TEST"
        rm -f "$SRC/tests/test-runner"
    fi
    # With OpenSSL: the SSL and SASL (PLAIN, SCRAM) tests run against kbroker's security
    # listeners (python -m compat.librdkafka --security). A build configured without it is redone.
    if [ -x "$SRC/tests/test-runner" ] && ! grep -q '^#define WITH_SSL 1' "$SRC/config.h" 2>/dev/null; then
        echo "setup-compat-env: librdkafka was built without SSL: rebuilding" >&2
        (cd "$SRC" && make clean >/dev/null 2>&1 || true)
        rm -f "$SRC/tests/test-runner"
    fi
    if [ ! -x "$SRC/tests/test-runner" ]; then
        echo "setup-compat-env: building librdkafka and tests/test-runner (log: compat/work/build.log)" >&2
        (cd "$SRC" && ./configure --disable-gssapi --disable-zstd --disable-curl \
            && make -j"$(nproc)" libs && make -j"$(nproc)" -C tests test-runner) > "$WORK/build.log" 2>&1 || {
            tail -20 "$WORK/build.log" >&2; exit 1; }
    else
        echo "setup-compat-env: librdkafka test-runner already built" >&2
    fi

    NEXT=$WORK/librdkafka-$LIBRDKAFKA_NEXT_VERSION
    if [ ! -f "$NEXT/configure" ]; then
        echo "setup-compat-env: fetching librdkafka $LIBRDKAFKA_NEXT_VERSION source ($KAFKA_JAVASCRIPT from npm)" >&2
        tmp=$(mktemp -d)
        (cd "$tmp" && npm pack --silent "$KAFKA_JAVASCRIPT" >/dev/null && tar xzf confluentinc-kafka-javascript-*.tgz)
        grep -q "RD_KAFKA_VERSION  *0x020f01ff" "$tmp/package/deps/librdkafka/src/rdkafka.h" || {
            echo "setup-compat-env: $KAFKA_JAVASCRIPT does not vendor librdkafka $LIBRDKAFKA_NEXT_VERSION" >&2; exit 1; }
        rm -rf "$NEXT"
        mv "$tmp/package/deps/librdkafka" "$NEXT"
        rm -rf "$tmp"
    fi
    if [ ! -x "$NEXT/tests/test-runner" ]; then
        echo "setup-compat-env: building librdkafka $LIBRDKAFKA_NEXT_VERSION and its test-runner" \
             "(log: compat/work/build-$LIBRDKAFKA_NEXT_VERSION.log)" >&2
        (cd "$NEXT" && ./configure --disable-ssl --disable-gssapi --disable-zstd --disable-curl \
            && make -j"$(nproc)" libs && make -j"$(nproc)" -C tests test-runner) > "$WORK/build-$LIBRDKAFKA_NEXT_VERSION.log" 2>&1 || {
            tail -20 "$WORK/build-$LIBRDKAFKA_NEXT_VERSION.log" >&2; exit 1; }
    else
        echo "setup-compat-env: librdkafka $LIBRDKAFKA_NEXT_VERSION test-runner already built" >&2
    fi
fi
echo "setup-compat-env: done" >&2
