#!/usr/bin/env python3
"""Soak test: run cc-heartbeat in demo mode for a while and report what it saw.

Usage: scripts/soak.py [SECONDS] [--binary PATH]

Builds nothing: run `cargo build --release` first (or pass --binary). Starts the exporter
against its embedded 3-broker cluster, samples its RSS and CPU every 5 s, and at the end reports
heartbeats produced, consumed, lost, duplicated, late and failed, latency quantiles, peak RSS and
mean CPU. Exits non-zero if any heartbeat was lost, duplicated, late or failed.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

SAMPLE_EVERY = 5.0


def scrape(address):
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


def total(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    result = 0.0
    pattern = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        series = match.group(1) or ""
        if all(f'{key}="{value}"' in series for key, value in labels.items()):
            result += float(match.group(2))
    return result


def largest(text, name, **labels):
    values = []
    pattern = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})? (\S+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            values.append(float(match.group(2)))
    return max(values) if values else float("nan")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seconds", type=float, nargs="?", default=600)
    parser.add_argument("--binary", default="target/release/cc-heartbeat")
    args = parser.parse_args()

    environment = dict(os.environ)
    environment.update(
        {
            "CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST": "127.0.0.1",
            "CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT": "0",
            "RUST_LOG": "info",
        }
    )
    process = subprocess.Popen(
        [args.binary, "--demo", "--config", "/nonexistent/config.ini"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=environment,
        text=True,
    )
    address = None
    for line in process.stderr:
        found = re.search(r"serving metrics on http://([^/]+)/metrics", line)
        if found:
            address = found.group(1)
            break
    if address is None:
        sys.exit("the exporter did not start")
    # Keep reading its log so it never blocks on a full pipe.
    log_lines = []

    def drain():
        for line in process.stderr:
            log_lines.append(line)

    import threading

    threading.Thread(target=drain, daemon=True).start()

    start = time.monotonic()
    cpu_start = cpu_seconds(process.pid)
    peak_rss = 0
    rss_samples = []
    try:
        while time.monotonic() - start < args.seconds:
            time.sleep(SAMPLE_EVERY)
            rss = rss_kib(process.pid)
            peak_rss = max(peak_rss, rss)
            rss_samples.append(rss)
        text = scrape(address)
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(process.pid) - cpu_start
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)

    produced = total(text, "heartbeat_messages_produced_total")
    consumed = total(text, "heartbeat_messages_consumed_total")
    lost = total(text, "heartbeat_messages_lost_total")
    duplicated = total(text, "heartbeat_messages_duplicated_total")
    late = total(text, "heartbeat_messages_skipped_total", kind="late")
    failed = total(text, "heartbeat_produce_failures_total")
    missed = total(text, "heartbeat_beats_missed_total")
    print(f"duration            {elapsed:.0f} s")
    print(f"produced            {produced:.0f}")
    print(f"consumed            {consumed:.0f}")
    print(f"lost                {lost:.0f}")
    print(f"duplicated          {duplicated:.0f}")
    print(f"late                {late:.0f}")
    print(f"produce failures    {failed:.0f}")
    print(f"beats missed        {missed:.0f}")
    for name in ("produce_latency", "end_to_end_latency"):
        p50 = largest(text, f"heartbeat_{name}_recent_seconds", quantile="0.5")
        p99 = largest(text, f"heartbeat_{name}_recent_seconds", quantile="0.99")
        print(f"{name:<20}p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms (worst partition, last minute)")
    print(f"RSS                 peak {peak_rss / 1024:.1f} MiB, last {rss_samples[-1] / 1024:.1f} MiB" if rss_samples else "RSS n/a")
    print(f"CPU                 {100 * cpu / elapsed:.2f} % of one core on average")
    bad = lost + duplicated + late + failed
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
