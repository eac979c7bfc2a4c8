#!/usr/bin/env bash
# The Apache Kafka broker and its tools, for the real-cluster tests: jars from Maven Central,
# the version pinned in tests/support/kafka/pom.xml, into target/test-tools/kafka (fetched again
# when the pom changes). Prints the directory, for KAFKA_LIBS.
set -euo pipefail
cd "$(dirname "$0")/.."

pom=tests/support/kafka/pom.xml
kafka_libs="$PWD/target/test-tools/kafka"
if ! cmp -s "$pom" "$kafka_libs/pom.xml"; then
  rm -rf "$kafka_libs"
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$kafka_libs" >&2
  cp "$pom" "$kafka_libs/pom.xml"
fi
echo "$kafka_libs"
