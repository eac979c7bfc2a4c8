#!/usr/bin/env bash
# The Helm chart: `helm lint` and `helm template` of the default and the sharded values, each
# rendered object decoded strictly against the Kubernetes and Prometheus Operator API types
# (scripts/k8s-validate), the PrometheusRule checked against prometheus/rules/, and the plain
# manifests under deploy/kubernetes/ checked to be what the chart renders.
#   scripts/check-helm.sh           check
#   scripts/check-helm.sh --write   render deploy/kubernetes/ anew
# Helm and the validator are built from the Go module proxy, with Go 1.26 or newer (fetched
# from the proxy too when the machine has none).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="$PWD/target/test-tools"
# Go: on the PATH, where its release tarball puts it, or else the Go toolchain module itself,
# fetched once from the Go module proxy into target/test-tools (a fresh machine has no Go).
go_version=1.26.8
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  toolchain="$tools/go/golang.org/toolchain@v0.0.1-go$go_version.linux-$arch"
  if [ ! -x "$toolchain/bin/go" ]; then
    mkdir -p "$tools/go"
    proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%,*}
    curl -fsSL -o "$tools/go/toolchain.zip" \
      "$proxy/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-$arch.zip"
    # Unpacked keeping each file's mode (the zip's own), which unzip may not be there to do.
    python3 - "$tools/go/toolchain.zip" "$tools/go" <<'PY'
import os, sys, zipfile
archive, target = sys.argv[1:]
with zipfile.ZipFile(archive) as z:
    for info in z.infolist():
        path = z.extract(info, target)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
PY
    rm -f "$tools/go/toolchain.zip"
  fi
  export PATH="$toolchain/bin:$PATH"
fi
helm="$tools/bin/helm"
if ! "$helm" version 2>/dev/null | grep -q 'v4.3'; then
  GOBIN="$tools/bin" go install helm.sh/helm/v4/cmd/helm@v4.3.2
fi
(cd scripts/k8s-validate && go build -o "$tools/bin/k8s-validate" .)

chart=deploy/helm/cc-heartbeat
render() {
  # Helm says (on stderr) that it follows the rules/ link: only that is left out.
  "$helm" template cc-heartbeat "$chart" "$@" 2> >(grep -v "found symbolic link" >&2)
}
declare -A variants=(
  [cc-heartbeat.yaml]=""
  [cc-heartbeat-sharded.yaml]="--values $chart/ci/sharded-values.yaml"
)
status=0
for file in "${!variants[@]}"; do
  # shellcheck disable=SC2086
  args=(${variants[$file]})
  "$helm" lint --strict "$chart" "${args[@]}" 2>&1 | grep -v '^level=INFO'
  rendered=$(render "${args[@]}")
  if [ "${1:-}" = --write ]; then
    printf '%s\n' "$rendered" > "deploy/kubernetes/$file"
  elif ! diff -u "deploy/kubernetes/$file" <(printf '%s\n' "$rendered"); then
    echo "deploy/kubernetes/$file is not what the chart renders: run scripts/check-helm.sh --write" >&2
    status=1
  fi
  printf '%s\n' "$rendered" | "$tools/bin/k8s-validate" -rules prometheus/rules
done
# values.schema.json refuses what would be silently ignored: a misspelt key, a shard count of 0.
for wrong in shard=3 shards=0 service.port=http; do
  if "$helm" lint --strict "$chart" --set "$wrong" >/dev/null 2>&1; then
    echo "helm lint accepted --set $wrong: values.schema.json should refuse it" >&2
    status=1
  fi
done
exit $status
