#!/usr/bin/env bash
# The Apache Kafka broker and its tools, for the real-cluster tests: jars from Maven Central,
# the version pinned in tests/support/kafka/pom.xml, into target/test-tools/kafka (fetched again
# when the pom changes); MirrorMaker 2's the same way, from tests/support/mirrormaker/pom.xml
# into target/test-tools/mirrormaker. Prints the broker's directory, for KAFKA_LIBS.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fetches the jars of `pom` into `dir`, unless they are there for this very pom.
fetch() {
  local pom=$1 dir=$2
  if ! cmp -s "$pom" "$dir/pom.xml"; then
    rm -rf "$dir"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir" >&2
    cp "$pom" "$dir/pom.xml"
  fi
}

kafka_libs="$PWD/target/test-tools/kafka"
fetch tests/support/kafka/pom.xml "$kafka_libs"
fetch tests/support/mirrormaker/pom.xml "$PWD/target/test-tools/mirrormaker"
echo "$kafka_libs"
