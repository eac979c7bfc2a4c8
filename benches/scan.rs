//! The cluster scan at scale, against librdkafka's mock cluster: thousands of consumer groups
//! with committed offsets over hundreds of partitions, while the heartbeat runs at its default
//! cadence. Prints the time per scan (the first reads every lagging partition's oldest record,
//! later ones answer from the cache), the process's memory, and the heartbeat's beat delay and
//! missed beats over the run.
//!
//!     cargo bench --bench scan
//!
//! Sizes from the environment: BENCH_GROUPS (2000), BENCH_TOPICS (20), BENCH_PARTITIONS per
//! topic (30), BENCH_SECONDS of run (120), BENCH_PERIOD seconds between scans (30),
//! BENCH_GRANULARITY of lag (`partition`). BENCH_ADMIN adds `[admin]` settings, `;`-separated
//! (e.g. `consumer.group.lag.seconds=false`). Each group commits on every partition of one
//! topic, most of them behind the log end.
//!
//! `BENCH_CASE=large` changes the defaults to ten times the groups: 10,000 groups × 10
//! partitions (10 topics of 10 partitions, a thousand groups on each), group granularity, a
//! scan every 60 s (the default period), 150 s. (The mock serves committed offsets only for the
//! partitions a request names, and the scan names every allowed one: more topics would make
//! each of the 10,000 requests name partitions the group never committed.)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::{cpu_seconds, status_field, Metrics};

/// Records written to every partition.
const RECORDS: i64 = 20;

/// Whether `BENCH_CASE=large` is asked for.
fn large() -> bool {
    std::env::var("BENCH_CASE").is_ok_and(|case| case == "large")
}

/// Setting `name` from the environment, else the default of the case.
fn setting(name: &str, default: usize) -> usize {
    let large_default = match name {
        "BENCH_GROUPS" => 10_000,
        "BENCH_TOPICS" => 10,
        "BENCH_PARTITIONS" => 10,
        "BENCH_SECONDS" => 150,
        "BENCH_PERIOD" => 60,
        _ => default,
    };
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if large() { large_default } else { default })
}

/// VmRSS and VmHWM of process `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    (
        status_field(pid, "VmRSS:") / 1024.0,
        status_field(pid, "VmHWM:") / 1024.0,
    )
}

fn topic_name(index: usize) -> String {
    format!("bench-{index:03}")
}

/// The committed offset of `group` on `partition`: spread over the log (groups of one topic
/// sit at many different offsets of each partition), a few caught up.
fn committed(group: usize, partition: usize) -> i64 {
    let mixed = (group as u64 * 2_654_435_761 + partition as u64 * 40_503) >> 7;
    (mixed % (RECORDS as u64 + 1)) as i64
}

fn produce(bootstrap: &str, topics: usize, partitions: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for topic in (0..topics).map(topic_name) {
        for partition in 0..partitions as i32 {
            for record in 0..RECORDS {
                // Ten seconds apart, the first ten minutes ago.
                let timestamp = now - 600_000 + record * 10_000;
                let mut message = BaseRecord::<(), str>::to(&topic)
                    .partition(partition)
                    .payload("order")
                    .timestamp(timestamp);
                while let Err((_, back)) = producer.send(message) {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Commits every group's offsets, as offset tools do (no membership), four threads at a time.
fn commit_groups(bootstrap: &str, groups: usize, topics: usize, partitions: usize) {
    std::thread::scope(|scope| {
        for worker in 0..4 {
            scope.spawn(move || {
                for group in (worker..groups).step_by(4) {
                    let consumer: BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", bootstrap)
                        .set("group.id", format!("group-{group:05}"))
                        .set("enable.auto.commit", "false")
                        .create()
                        .expect("consumer");
                    let topic = topic_name(group % topics);
                    let mut list = TopicPartitionList::new();
                    for partition in 0..partitions {
                        list.add_partition_offset(
                            &topic,
                            partition as i32,
                            Offset::Offset(committed(group, partition)),
                        )
                        .expect("partition");
                    }
                    consumer.commit(&list, CommitMode::Sync).expect("commit");
                }
            });
        }
    });
}

fn config(bootstrap: &str, groups: usize, period: usize) -> String {
    let names: Vec<String> = (0..groups)
        .map(|group| format!("group-{group:05}"))
        .collect();
    format!(
        "[default]\n\
         bootstrap.servers = {bootstrap}\n\
         [admin]\n\
         heartbeat.topic = cc-heartbeat\n\
         check.consumer.group.period.seconds = {period}\n\
         consumer.group.topic.allow = ^bench-\n\
         consumer.group.names = {names}\n\
         consumer.group.lag.granularity = {granularity}\n\
         metrics.listener.host = 127.0.0.1\n\
         metrics.listener.port = 0\n\
         {extra}\n",
        names = names.join(","),
        granularity = std::env::var("BENCH_GRANULARITY").unwrap_or_else(|_| if large() {
            "group"
        } else {
            "partition"
        }
        .to_string()),
        extra = std::env::var("BENCH_ADMIN")
            .unwrap_or_default()
            .replace(';', "\n"),
    )
}

/// The histogram bucket bound below which `quantile` of the observations fall.
fn bucket_quantile(metrics: &Metrics, name: &str, quantile: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = metrics
        .select(&format!("{name}_bucket"), &[])
        .map(|sample| {
            let bound = sample.labels["le"].parse().unwrap_or(f64::INFINITY);
            (bound, sample.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |bucket| bucket.1);
    buckets
        .iter()
        .find(|bucket| bucket.1 >= total * quantile)
        .map_or(f64::NAN, |bucket| bucket.0)
}

fn main() {
    let groups = setting("BENCH_GROUPS", 2000);
    let topics = setting("BENCH_TOPICS", 20);
    let partitions = setting("BENCH_PARTITIONS", 30);
    let seconds = setting("BENCH_SECONDS", 120);
    let period = setting("BENCH_PERIOD", 30);

    let setup = Instant::now();
    let mock = support::mock_cluster(3, "cc-heartbeat", 3);
    for topic in (0..topics).map(topic_name) {
        mock.create_topic(&topic, partitions as i32, 3)
            .expect("topic");
    }
    let bootstrap = mock.bootstrap_servers();
    produce(&bootstrap, topics, partitions);
    commit_groups(&bootstrap, groups, topics, partitions);
    let group_partitions = groups * partitions;
    let lagging = (0..groups)
        .flat_map(|group| (0..partitions).map(move |p| committed(group, p)))
        .filter(|offset| *offset < RECORDS)
        .count();
    println!(
        "cluster: {topics} topics x {partitions} partitions, {RECORDS} records each; \
         {groups} groups, {group_partitions} committed group-partitions, {lagging} behind \
         (set up in {:.0} s)",
        setup.elapsed().as_secs_f64()
    );

    // The exporter runs as users run it: its own process (the release binary), so its memory
    // and CPU are its own.
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = support::write_config(dir.path(), &config(&bootstrap, groups, period));
    let mut exporter = support::Process::start(&["--config", path.to_str().unwrap()], &[]);
    let pid = exporter.id();
    let url = format!("http://{}/metrics", exporter.address());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut scans: Vec<f64> = Vec::new();
        let mut last_duration = 0.0;
        let mut peak_rss: f64 = 0.0;
        let mut scrape_seconds: f64 = 0.0;
        let mut metrics = None;
        let start = Instant::now();
        let cpu_start = cpu_seconds(pid);
        while start.elapsed() < Duration::from_secs(seconds as u64) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            peak_rss = peak_rss.max(memory(pid).0);
            let scrape = Instant::now();
            let Ok(response) = reqwest::get(&url).await else {
                continue;
            };
            let Ok(text) = response.text().await else {
                continue;
            };
            scrape_seconds = scrape_seconds.max(scrape.elapsed().as_secs_f64());
            let current = Metrics::parse(&text);
            let duration = current.sum("heartbeat_cluster_scan_duration_seconds", &[]);
            if duration != last_duration && duration > 0.0 {
                scans.push(duration);
                last_duration = duration;
            }
            metrics = Some(current);
        }
        let cpu = (cpu_seconds(pid) - cpu_start) / start.elapsed().as_secs_f64();
        let m = metrics.expect("metrics were scraped");
        let series = m.text.lines().filter(|line| !line.starts_with('#')).count();
        println!(
            "scans: {} completed in {seconds} s; durations {}",
            scans.len(),
            scans
                .iter()
                .map(|s| format!("{s:.2} s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let probes = |kind: &str| {
            m.sum(
                "heartbeat_consumer_group_lag_probes_total",
                &[("kind", kind)],
            )
        };
        println!(
            "lag in seconds: {} read, {} cached, {} timed out, {} failed; scan failures {}",
            probes("read"),
            probes("cached"),
            probes("timed_out"),
            probes("failed"),
            m.sum("heartbeat_cluster_scan_failures_total", &[])
        );
        println!(
            "groups reported {}, lag series {}, lag-seconds series {}; /metrics: {series} samples, \
             slowest scrape {:.0} ms",
            m.sum("heartbeat_consumer_groups", &[]),
            m.select("heartbeat_consumer_group_lag", &[]).count(),
            m.select("heartbeat_consumer_group_lag_seconds", &[]).count(),
            scrape_seconds * 1000.0
        );
        println!(
            "heartbeat: {} produced, {} consumed, {} lost, {} missed beats; beat delay p99 <= {} s, \
             max <= {} s; produce p99 <= {} s",
            m.sum("heartbeat_messages_produced_total", &[]),
            m.sum("heartbeat_messages_consumed_total", &[]),
            m.sum("heartbeat_messages_lost_total", &[]),
            m.sum("heartbeat_beats_missed_total", &[]),
            bucket_quantile(&m, "heartbeat_beat_delay_seconds", 0.99),
            bucket_quantile(&m, "heartbeat_beat_delay_seconds", 1.0),
            bucket_quantile(&m, "heartbeat_produce_latency_seconds", 0.99),
        );
        let (rss, hwm) = memory(pid);
        println!(
            "exporter process: RSS peak {peak_rss:.1} MiB, {rss:.1} MiB at the end (high-water \
             mark {hwm:.1} MiB); mean CPU {:.1} % of a core",
            cpu * 100.0
        );
    });
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0), "the exporter did not stop cleanly");
}
