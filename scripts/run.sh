#!/usr/bin/env bash
# Builds (release) and runs the exporter with the given arguments, first installing the Debian
# packages building needs where missing: what a fresh machine with Rust lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
exec cargo run --release -- "$@"
