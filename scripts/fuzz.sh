#!/usr/bin/env bash
# Fuzzes what reads outside input (fuzz/): each target for FUZZ_SECONDS (60 by default), from
# the seeds in fuzz/seeds and what earlier runs found. cargo-fuzz runs on the stable toolchain
# with `--sanitizer none` (safe Rust: a panic or a failed assertion is the finding). A crash
# stops the run with the input saved under fuzz/artifacts/; turn it into a test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
tools="$PWD/target/test-tools"
if ! [ -x "$tools/bin/cargo-fuzz" ]; then
  cargo install --quiet --locked --root "$tools" cargo-fuzz@0.13.2
fi
export PATH="$tools/bin:$PATH"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in config_ini payload openmetrics_merge; do
  corpus="target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
  echo "+ fuzzing $target for ${seconds}s"
  if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzzing $target found a crash; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/  $target /"
done
