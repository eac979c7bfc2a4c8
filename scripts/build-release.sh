#!/usr/bin/env bash
# The release build, exactly as the container image's builder stage runs it (and CI, on the
# host, so these steps are exercised without a Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
./target/release/cc-heartbeat --version
