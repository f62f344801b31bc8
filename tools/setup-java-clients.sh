#!/usr/bin/env bash
# Build the Java columns of the compatibility matrix, idempotently:
#   - resolve compat/clients/java/pom.xml (kafka-clients + kafka-streams 4.1.1 + slf4j-simple, from Maven
#     Central) into compat/work/java-clients/lib — the classpath a user application has, nothing more;
#   - compile compat/clients/java/src/*.java with javac into compat/work/java-clients/classes.
# Rebuilds only when the pom or a source changes (a hash of them is kept in compat/work/java-clients/.stamp).
# Needs a JDK (17+) and Maven; tools/setup-compat-env.sh calls this.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=compat/clients/java
OUT=compat/work/java-clients
for tool in java javac mvn; do
    command -v "$tool" >/dev/null 2>&1 || { echo "setup-java-clients: $tool not installed" >&2; exit 1; }
done

stamp=$(cat "$SRC/pom.xml" "$SRC"/src/*.java | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ] && [ -f "$OUT/classes/CompatCell.class" ]; then
    echo "setup-java-clients: Java clients already built" >&2
    exit 0
fi

echo "setup-java-clients: resolving kafka-clients/kafka-streams (Maven) into $OUT/lib" >&2
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/lib" "$OUT.tmp/classes"
mvn -q -B -Dstyle.color=never -f "$SRC/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$PWD/$OUT.tmp/lib" -DincludeScope=runtime > "$OUT.tmp/mvn.log" 2>&1 || {
    cat "$OUT.tmp/mvn.log" >&2; echo "setup-java-clients: resolving the jars failed" >&2; exit 1; }
echo "setup-java-clients: compiling $SRC/src" >&2
javac -nowarn -Xlint:none --release 17 -encoding UTF-8 -d "$OUT.tmp/classes" -cp "$OUT.tmp/lib/*" "$SRC"/src/*.java
echo "$stamp" > "$OUT.tmp/.stamp"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "setup-java-clients: built $OUT" >&2
