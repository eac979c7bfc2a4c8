#!/usr/bin/env bash
# Rehearses the container image's build and run as faithfully as a machine without a Docker
# engine can:
# 1. the builder stage: a build in an empty directory holding exactly what the Dockerfile's
#    COPY lines bring into it (after .dockerignore), with its RUN step;
# 2. the runtime stage: a minimal Debian bookworm root (debootstrap) with only the runtime
#    stage's packages, the binary and files copied as the Dockerfile does, run as uid 10001:
#    `--version`, `--demo` serving /metrics, and the `healthcheck` subcommand.
# Needs root (debootstrap, chroot) and debootstrap; the root is cached in target/test-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD

work=$(mktemp -d)
cleanup() {
  if [ -n "${demo_pid:-}" ]; then kill "$demo_pid" 2>/dev/null || true; fi
  if [ -n "${runtime:-}" ] && mountpoint -q "$runtime/proc" 2>/dev/null; then umount "$runtime/proc"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The builder stage's context: what its COPY lines name, filtered by .dockerignore.
context=$work/context
python3 - "$context" <<'PY'
import fnmatch, os, shutil, sys
context = sys.argv[1]
ignore = []
for line in open(".dockerignore"):
    line = line.strip()
    if line and not line.startswith("#"):
        ignore.append(line)
def ignored(path):
    verdict = False
    for pattern in ignore:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:i + 1]), pattern) for i in range(len(parts))) \
                or fnmatch.fnmatch(os.path.basename(path), pattern):
            verdict = not negate
    return verdict
stage = 0
for line in open("Dockerfile"):
    words = line.split()
    if not words:
        continue
    if words[0].upper() == "FROM":
        stage += 1
    if stage != 1 or words[0].upper() != "COPY" or any(w.startswith("--") for w in words[1:]):
        continue
    *sources, destination = words[1:]
    for source in sources:
        if os.path.isdir(source):
            files = [os.path.join(base, name) for base, _, names in os.walk(source) for name in names]
        else:
            files = [source]
        for path in files:
            path = os.path.normpath(path)
            if ignored(path):
                continue
            if os.path.isdir(source):
                target = os.path.join(destination, os.path.relpath(path, source))
            elif destination.endswith("/") or destination in (".", "./"):
                target = os.path.join(destination, os.path.basename(path))
            else:
                target = destination
            target = os.path.join(context, os.path.normpath(target))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(path, target)
PY
echo "+ builder stage in a context of $(find "$context" -type f | wc -l) files"
# The RUN step. Its build output is kept between runs in target/image-build (compiled
# dependencies are reused; the crate is built anew from the context's sources, whose path is
# new each time).
mkdir -p "$root_dir/target/image-build"
ln -s "$root_dir/target/image-build" "$context/target"
(cd "$context" && scripts/build-release.sh)

# 2. The runtime stage in a bookworm root of its own, with only its packages.
runtime=$root_dir/target/test-tools/bookworm-root
packages=$(python3 - <<'PY'
import re
text = open("Dockerfile").read()
runtime = text[text.index("FROM debian:bookworm-slim"):]
match = re.search(r"install -y --no-install-recommends((?:[^&\\]|\\\n)*)", runtime)
print(",".join(match.group(1).replace("\\\n", " ").split()))
PY
)
if [ ! -x "$runtime/bin/sh" ] || [ "$(cat "$runtime/.packages" 2>/dev/null)" != "$packages" ]; then
  rm -rf "$runtime"
  echo "+ debootstrap bookworm with $packages"
  debootstrap --variant=minbase --include="$packages" bookworm "$runtime" http://deb.debian.org/debian \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
  echo "$packages" > "$runtime/.packages"
fi
# What the runtime stage's RUN and COPY lines put in place.
chroot "$runtime" sh -c 'id -u cc-heartbeat >/dev/null 2>&1 || useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cc-heartbeat'
mkdir -p "$runtime/etc/cc-heartbeat"
printf '%s\n' '# Settings come from CC_HEARTBEAT__* variables, or mount your own file here.' \
  > "$runtime/etc/cc-heartbeat/config.ini"
install -m 0755 target/image-build/release/cc-heartbeat "$runtime/usr/local/bin/cc-heartbeat"
install -m 0644 config.example.ini "$runtime/etc/cc-heartbeat/config.example.ini"
mountpoint -q "$runtime/proc" || mount -t proc proc "$runtime/proc"

environment=(env -i PATH=/usr/local/bin:/usr/bin:/bin MALLOC_ARENA_MAX=2)
run_as_image() {
  chroot --userspec=10001:10001 "$runtime" "${environment[@]}" "$@"
}
echo "+ runtime stage: $(run_as_image cc-heartbeat --version)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Started with exec all the way down (not through the function, which would run in a subshell
# of its own), so $! is the exporter itself and the kill below stops it.
chroot --userspec=10001:10001 "$runtime" "${environment[@]}" sh -c \
  "CC_HEARTBEAT_DEMO=true CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT=$port \
  exec cc-heartbeat --config /etc/cc-heartbeat/config.ini" > "$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 100); do
  if python3 - "$port" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
sys.exit(0 if "heartbeat_messages_consumed_total" in body and "# EOF" in body else 1)
PY
  sleep 0.2
done
python3 - "$port" <<'PY' || { cat "$work/demo.log"; exit 1; }
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=2).read().decode()
assert "heartbeat_messages_consumed_total" in body, body[:500]
PY
echo "+ --demo serves /metrics as uid 10001"
run_as_image cc-heartbeat --config /etc/cc-heartbeat/config.ini healthcheck \
  --address "127.0.0.1:$port"
echo "+ healthcheck answers"
kill "$demo_pid"
wait "$demo_pid" 2>/dev/null || true
demo_pid=
if pgrep -u 10001 -x cc-heartbeat >/dev/null; then
  echo "the rehearsed exporter did not stop" >&2
  exit 1
fi
echo "image rehearsal passed"
