#!/usr/bin/env bash
# Installs the Debian packages building and testing cc-heartbeat need, where missing:
# build tools and libraries for rdkafka (librdkafka with system OpenSSL and zlib), pip for
# fetching test tools from PyPI, curl (Go for the chart's checks, when missing), openssl (its s_client resumes sessions in a test), stunnel4 (TLS in front of the mock cluster in tests),
# prometheus with promtool and docker-compose (checks of the deployment files), the Python
# client's parsers of both exposition formats (python3-prometheus-client), and a Java 17
# JDK with Maven (the real Apache Kafka cluster of the tests, its jars from Maven Central; javac
# compiles the brokers' token validator that logs SASL extensions),
# debootstrap (the container image's runtime stage, rehearsed without a Docker engine), and
# chromium (the status page's test, in a real headless browser).
set -euo pipefail

# `install-deps.sh build`: only what building needs (for scripts/run.sh).
build=(build-essential pkg-config libssl-dev zlib1g-dev perl)
packages=("${build[@]}" curl openssl python3 python3-pip python3-prometheus-client stunnel4 prometheus docker-compose
  openjdk-17-jdk-headless maven debootstrap chromium)
if [ "${1:-}" = build ]; then
  packages=("${build[@]}")
fi
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "missing Debian packages: ${missing[*]} (install them as root)" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}"
