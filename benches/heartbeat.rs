//! What the exporter costs while it runs: the release binary in its own process, at the users'
//! defaults (a heartbeat every second), against librdkafka's mock cluster of N brokers with an
//! M-partition heartbeat topic (the mock runs in this process), and against a real 3-node
//! Kafka cluster when its jars are there (`KAFKA_LIBS`, as `scripts/test.sh` fetches them).
//!
//!     cargo bench --bench heartbeat
//!
//! Prints one table and writes it as JSON to `target/bench/heartbeat.json`. Per case: CPU (% of
//! one core) and RSS over the measured window, threads, beat delay p99 and missed beats,
//! end-to-end latency p50/p99, the size of `/metrics` (bytes and samples) and the time to
//! scrape it (as OpenMetrics, as Prometheus asks, and in the text format), and the time from
//! start to the first heartbeat read back. The first case is also scraped by 50 concurrent
//! clients, to show what that costs the heartbeat.
//!
//! A replication pipeline's cost is the difference between two cases: `pair`, two mock
//! clusters of 3 brokers and 3 partitions monitored by one exporter, and `pipeline`, the same
//! with the second a replica of the first (`mirror.of`), the first's heartbeats copied to it by
//! the tests' replicator (in the benchmark's process): one more consumer, the mirror reader.
//!
//! From the environment: BENCH_CASES (`3x3,30x300,100x1000,kafka,pair,pipeline`; `BxP` is a
//! mock cluster of B brokers and P partitions, `kafka` the real cluster), BENCH_SECONDS measured per case (60),
//! BENCH_WARMUP seconds before it (15), BENCH_ADMIN `[admin]` settings, `;`-separated.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use support::{cpu_seconds, status_field, Metrics};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The cumulative buckets (upper bound, count) of histogram `name`, summed over its series.
fn buckets(metrics: &Metrics, name: &str) -> Vec<(f64, f64)> {
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for sample in metrics.select(&format!("{name}_bucket"), &[]) {
        let bound = sample.labels["le"].parse().unwrap_or(f64::INFINITY);
        match sums.iter_mut().find(|(b, _)| *b == bound) {
            Some(entry) => entry.1 += sample.value,
            None => sums.push((bound, sample.value)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    sums
}

/// `quantile` of what histogram `name` observed between `before` and `after`, interpolated
/// linearly inside its bucket as Prometheus' `histogram_quantile` does; NaN without
/// observations.
fn quantile_between(before: &Metrics, after: &Metrics, name: &str, quantile: f64) -> f64 {
    let old = buckets(before, name);
    let delta: Vec<(f64, f64)> = buckets(after, name)
        .into_iter()
        .map(|(bound, count)| {
            let earlier = old.iter().find(|(b, _)| *b == bound).map_or(0.0, |e| e.1);
            (bound, count - earlier)
        })
        .collect();
    let total = delta.last().map_or(0.0, |bucket| bucket.1);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = total * quantile;
    let mut lower = (0.0, 0.0);
    for (bound, count) in delta {
        if count >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let share = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                1.0
            };
            return lower.0 + (bound - lower.0) * share;
        }
        lower = (bound, count);
    }
    f64::NAN
}

/// One case's figures.
#[derive(Debug, Default, Serialize)]
struct Figures {
    case: String,
    brokers: usize,
    partitions: usize,
    cpu_percent: f64,
    rss_mib: f64,
    threads: u64,
    beat_delay_p99_ms: f64,
    missed_beats: f64,
    end_to_end_p50_ms: f64,
    end_to_end_p99_ms: f64,
    lost: f64,
    produce_failures: f64,
    metrics_bytes: usize,
    metrics_samples: usize,
    scrape_ms: f64,
    /// The same, in the Prometheus text format.
    text_scrape_ms: f64,
    first_round_trip_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scrapers: Option<Scrapers>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<Replication>,
}

/// What a replica's mirror reader measured over the window.
#[derive(Debug, Default, Serialize)]
struct Replication {
    replicated: f64,
    lost: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
}

/// What 50 concurrent scrapers got, and what it cost the heartbeat meanwhile.
#[derive(Debug, Default, Serialize)]
struct Scrapers {
    clients: usize,
    requests_per_second: f64,
    p99_ms: f64,
    failed: usize,
    beat_delay_p99_ms: f64,
    missed_beats: f64,
}

/// What keeps a case's cluster alive while the exporter runs against it.
type Target = Box<dyn std::any::Any>;

/// The `[default]` and `[admin]` lines besides the users' defaults.
fn config(client: &str, topic: &str) -> String {
    format!(
        "[default]\n\
         {client}\n\
         [admin]\n\
         heartbeat.topic = {topic}\n\
         metrics.listener.host = 127.0.0.1\n\
         metrics.listener.port = 0\n\
         {extra}\n",
        extra = std::env::var("BENCH_ADMIN")
            .unwrap_or_default()
            .replace(';', "\n"),
    )
}

/// A scrape as Prometheus makes it (OpenMetrics asked for).
async fn scrape(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client
        .get(url)
        .header("accept", support::PROMETHEUS_ACCEPT)
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

/// A scrape as curl or Telegraf makes it: the text format, rewritten from OpenMetrics.
async fn scrape_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    response.text().await.ok()
}

/// Scrapes `url` until `condition` holds (returning the scrape), or `limit` passes.
async fn scrape_until(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
    condition: impl Fn(&Metrics) -> bool,
) -> Option<Metrics> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(text) = scrape(client, url).await {
            let metrics = Metrics::parse(&text);
            if condition(&metrics) {
                return Some(metrics);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// 50 clients scraping as fast as they are answered for `seconds`.
async fn scrapers(url: &str, seconds: u64) -> (f64, f64, usize) {
    let clients = 50;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut failed = 0;
            while Instant::now() < until {
                let start = Instant::now();
                match scrape(&client, &url).await {
                    Some(_) => latencies.push(start.elapsed().as_secs_f64()),
                    None => failed += 1,
                }
            }
            (latencies, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (latencies, failures) = task.await.expect("scraper");
        all.extend(latencies);
        failed += failures;
    }
    all.sort_by(f64::total_cmp);
    let p99 = all
        .get(((all.len() as f64) * 0.99) as usize)
        .copied()
        .unwrap_or(f64::NAN);
    (all.len() as f64 / seconds as f64, p99, failed)
}

/// Runs the exporter against `target` and measures it.
async fn measure(
    name: &str,
    brokers: usize,
    partitions: usize,
    ini: String,
    with_scrapers: bool,
) -> Figures {
    let warmup = setting("BENCH_WARMUP", 15);
    let seconds = setting("BENCH_SECONDS", 60);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = support::write_config(dir.path(), &ini);
    let started = Instant::now();
    let mut exporter = support::Process::start(&["--config", path.to_str().unwrap()], &[]);
    let pid = exporter.id();
    let url = format!("http://{}/metrics", exporter.address());
    let client = reqwest::Client::new();
    let first = scrape_until(&client, &url, Duration::from_secs(120), |m| {
        m.sum("heartbeat_messages_consumed_total", &[]) > 0.0
    })
    .await;
    let first_round_trip = started.elapsed().as_secs_f64();
    assert!(
        first.is_some(),
        "{name}: no heartbeat read back within 120 s:\n{}",
        exporter.log()
    );
    tokio::time::sleep(Duration::from_secs(warmup)).await;

    let before = Metrics::parse(&scrape(&client, &url).await.expect("scrape"));
    let cpu_before = cpu_seconds(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (cpu_seconds(pid) - cpu_before) / window.elapsed().as_secs_f64();
    let rss = status_field(pid, "VmRSS:") / 1024.0;
    let threads = status_field(pid, "Threads:") as u64;
    // The scrape itself: the median of five, one at a time.
    let mut scrapes = Vec::new();
    let mut text = String::new();
    for _ in 0..5 {
        let start = Instant::now();
        text = scrape(&client, &url).await.expect("scrape");
        scrapes.push(start.elapsed().as_secs_f64());
    }
    scrapes.sort_by(f64::total_cmp);
    let mut text_scrapes = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        scrape_text(&client, &url).await.expect("scrape");
        text_scrapes.push(start.elapsed().as_secs_f64());
    }
    text_scrapes.sort_by(f64::total_cmp);
    let after = Metrics::parse(&text);
    let delta = |name: &str| after.sum(name, &[]) - before.sum(name, &[]);
    let mut figures = Figures {
        case: name.to_string(),
        brokers,
        partitions,
        cpu_percent: cpu * 100.0,
        rss_mib: rss,
        threads,
        beat_delay_p99_ms: quantile_between(&before, &after, "heartbeat_beat_delay_seconds", 0.99)
            * 1000.0,
        missed_beats: delta("heartbeat_beats_missed_total"),
        end_to_end_p50_ms: quantile_between(
            &before,
            &after,
            "heartbeat_end_to_end_latency_seconds",
            0.5,
        ) * 1000.0,
        end_to_end_p99_ms: quantile_between(
            &before,
            &after,
            "heartbeat_end_to_end_latency_seconds",
            0.99,
        ) * 1000.0,
        lost: delta("heartbeat_messages_lost_total"),
        produce_failures: delta("heartbeat_produce_failures_total"),
        metrics_bytes: text.len(),
        metrics_samples: text.lines().filter(|line| !line.starts_with('#')).count(),
        scrape_ms: scrapes[2] * 1000.0,
        text_scrape_ms: text_scrapes[2] * 1000.0,
        first_round_trip_s: first_round_trip,
        scrapers: None,
        mirror: None,
    };
    if text.contains("heartbeat_mirror_latency_seconds") {
        let outcome = |metrics: &Metrics, outcome: &str| {
            metrics.sum("heartbeat_mirror_messages_total", &[("outcome", outcome)])
        };
        figures.mirror = Some(Replication {
            replicated: outcome(&after, "replicated") - outcome(&before, "replicated"),
            lost: outcome(&after, "lost") - outcome(&before, "lost"),
            latency_p50_ms: quantile_between(
                &before,
                &after,
                "heartbeat_mirror_latency_seconds",
                0.5,
            ) * 1000.0,
            latency_p99_ms: quantile_between(
                &before,
                &after,
                "heartbeat_mirror_latency_seconds",
                0.99,
            ) * 1000.0,
        });
    }
    if with_scrapers {
        let before = after;
        let (rate, p99, failed) = scrapers(&url, 10).await;
        let after = Metrics::parse(&scrape(&client, &url).await.expect("scrape"));
        figures.scrapers = Some(Scrapers {
            clients: 50,
            requests_per_second: rate,
            p99_ms: p99 * 1000.0,
            failed,
            beat_delay_p99_ms: quantile_between(
                &before,
                &after,
                "heartbeat_beat_delay_seconds",
                0.99,
            ) * 1000.0,
            missed_beats: after.sum("heartbeat_beats_missed_total", &[])
                - before.sum("heartbeat_beats_missed_total", &[]),
        });
    }
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0), "{name}: the exporter did not stop cleanly");
    figures
}

/// Starts the cluster of case `name` and returns it with the exporter's configuration.
fn cluster(name: &str) -> Option<(Target, usize, usize, String)> {
    let topic = "cc-heartbeat";
    if name == "kafka" {
        let libs = std::env::var_os("KAFKA_LIBS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/kafka"),
            PathBuf::from,
        );
        if !libs.join("pom.xml").exists() {
            println!("kafka: skipped, no broker jars in {}", libs.display());
            return None;
        }
        let cluster = support::kafka::KafkaCluster::start(3);
        let (user, password) = support::kafka::PLAIN_USERS[0];
        support::kafka::grant(&cluster, user, topic);
        let ini = config(&cluster.client_properties("PLAIN", user, password), topic);
        return Some((Box::new(cluster), 3, 3, ini));
    }
    if name == "pair" || name == "pipeline" {
        return Some(pair(name == "pipeline"));
    }
    let (brokers, partitions) = name.split_once('x')?;
    let (brokers, partitions): (usize, usize) = (brokers.parse().ok()?, partitions.parse().ok()?);
    // Setting each partition's leader is one request to the mock's thread per partition, and
    // one in about a thousand of those never returns (librdkafka 2.12): the large cases take
    // the leaders the mock spreads itself.
    let mock = if partitions <= 100 {
        support::mock_cluster(brokers as i32, topic, partitions as i32)
    } else {
        let mock = support::Mock::new(brokers as i32).expect("mock cluster");
        mock.create_topic(topic, partitions as i32, brokers.min(3) as i32)
            .expect("heartbeat topic");
        mock
    };
    let ini = config(
        &format!("bootstrap.servers = {}", mock.bootstrap_servers()),
        topic,
    );
    Some((Box::new(mock), brokers, partitions, ini))
}

/// Two mock clusters of 3 brokers and 3 partitions, `primary` and `dr`; with `pipeline`, `dr`
/// is a replica of `primary`, the primary's heartbeats copied there by the tests' replicator.
fn pair(pipeline: bool) -> (Target, usize, usize, String) {
    let primary = support::mock_cluster(3, "cc-heartbeat", 3);
    let dr = support::mock_cluster(3, "dr-heartbeat", 3);
    let mut ini = config("", "cc-heartbeat")
        + &format!(
            "[cluster:primary]\nbootstrap.servers = {}\n\
             [cluster:dr]\nbootstrap.servers = {}\n\
             [cluster:dr:admin]\nheartbeat.topic = dr-heartbeat\n",
            primary.bootstrap_servers(),
            dr.bootstrap_servers()
        );
    let replicator = pipeline.then(|| {
        dr.create_topic("primary.cc-heartbeat", 3, 3)
            .expect("mirror topic");
        ini.push_str("mirror.of = primary\nmirror.topic = primary.cc-heartbeat\n");
        support::replicator::Replicator::start(
            &primary.bootstrap_servers(),
            "cc-heartbeat",
            3,
            &dr.bootstrap_servers(),
            "primary.cc-heartbeat",
        )
    });
    // Dropped in this order: the replicator before the clusters it reads and writes.
    (Box::new((replicator, primary, dr)), 6, 6, ini)
}

fn table(rows: &[Figures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| case | CPU % | RSS MiB | threads | beat delay p99 ms | missed | e2e p50 ms | e2e p99 ms \
         | lost | failures | /metrics bytes | samples | scrape ms | text scrape ms \
         | first round trip s |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(15));
    for f in rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.1} | {} | {:.1} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} |",
            f.case,
            f.cpu_percent,
            f.rss_mib,
            f.threads,
            f.beat_delay_p99_ms,
            f.missed_beats,
            f.end_to_end_p50_ms,
            f.end_to_end_p99_ms,
            f.lost,
            f.produce_failures,
            f.metrics_bytes,
            f.metrics_samples,
            f.scrape_ms,
            f.text_scrape_ms,
            f.first_round_trip_s
        );
    }
    for f in rows {
        if let Some(m) = &f.mirror {
            let _ = writeln!(
                out,
                "\n{}: replication p50 {:.1} ms, p99 {:.1} ms, {} replicated, {} lost",
                f.case, m.latency_p50_ms, m.latency_p99_ms, m.replicated, m.lost
            );
        }
        if let Some(s) = &f.scrapers {
            let _ = writeln!(
                out,
                "\n{}: {} concurrent scrapers: {:.0} requests/s, p99 {:.1} ms, {} failed; \
                 meanwhile beat delay p99 {:.1} ms, {} missed beats",
                f.case,
                s.clients,
                s.requests_per_second,
                s.p99_ms,
                s.failed,
                s.beat_delay_p99_ms,
                s.missed_beats
            );
        }
    }
    out
}

fn main() {
    let cases = std::env::var("BENCH_CASES")
        .unwrap_or_else(|_| "3x3,30x300,100x1000,kafka,pair,pipeline".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();
    for (index, name) in cases.split(',').map(str::trim).enumerate() {
        let Some((target, brokers, partitions, ini)) = cluster(name) else {
            continue;
        };
        let figures = runtime.block_on(measure(name, brokers, partitions, ini, index == 0));
        println!("{name}: {figures:?}");
        rows.push(figures);
        drop(target);
    }
    let table = table(&rows);
    println!("\n{table}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let json = serde_json::to_string_pretty(&rows).expect("json");
    std::fs::write(dir.join("heartbeat.json"), json).expect("write the figures");
    println!("written to {}", dir.join("heartbeat.json").display());
}
