//! Chaos against the real cluster: the faults users get, together and for as long as asked,
//! with the exporter at its default settings and a real Prometheus evaluating the shipped
//! rules. `scripts/chaos --duration 60m` runs it for an hour; the test suite for three
//! minutes (`tests/kafka_faults.rs`).
//!
//! The span is cut into rounds of ten minutes (one round when shorter). Each round starts
//! with a broker killed (`kill -9`, a different one each round) and restarted after a minute
//! (a ninth of the round when shorter); then come, one per round in this order and all in the
//! one round of a short run: a client quota set and removed, the exporter's right to read its
//! group removed and restored, its credentials rotated (a second SCRAM user, as a Confluent
//! Cloud API key is rotated: the new one written to the files the exporter reads, the old one
//! deleted once the exporter took the new), and a rolling restart. At least two brokers serve
//! throughout, so the cluster is never unreachable. After the last fault the preferred leaders
//! are elected. The start's figures are taken after a calm minute (every series made on first
//! use exists by then), the end's two minutes after the last fault, once the series of former
//! leaders and coordinators have gone (kept 90 s here, an hour by default).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::kafka::{grant, revoke, Exporter, KafkaCluster};
use super::prometheus::{api, Prometheus};
use super::{get, status_field, Metrics};

const ROUND: Duration = Duration::from_secs(600);
const TOPIC: &str = "chaos-heartbeat";
const USERS: [&str; 2] = ["chaos-a", "chaos-b"];
const GROUP: &str = "cc-heartbeat";
const QUOTA: &str = "producer_byte_rate=64,consumer_byte_rate=64";
/// After a fault ends, its consequences (lost heartbeats: the lost deadline) still count to it.
const AFTERMATH: Duration = Duration::from_secs(30);
/// How long a former leader's or coordinator's series are kept (`broker.missing.retention.
/// seconds`, an hour by default): longer than a broker is down, shorter than the settling
/// time, so that the series at the end compare with those at the start.
const RETENTION: Duration = Duration::from_secs(90);
/// After the last fault, before the end's figures are taken.
const SETTLE: Duration = Duration::from_secs(120);
/// Before the first fault, before the start's figures are taken.
const CALM: Duration = Duration::from_secs(60);

/// One thing done to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Kill(i32),
    Restart(i32),
    QuotaOn,
    QuotaOff,
    RightRemoved,
    RightRestored,
    Rotate,
    RollingRestart,
}

/// What is done when, from the start.
#[derive(Debug, Clone)]
pub struct Plan {
    pub total: Duration,
    pub steps: Vec<(Duration, Step)>,
}

impl Plan {
    pub fn new(total: Duration, nodes: &[i32]) -> Plan {
        let rounds = (total.as_secs() / ROUND.as_secs()).max(1) as u32;
        let round = total / rounds;
        let down = (round / 9).min(Duration::from_secs(60));
        let others = [
            Step::QuotaOn,
            Step::RightRemoved,
            Step::Rotate,
            Step::RollingRestart,
        ];
        let mut steps = Vec::new();
        for r in 0..rounds {
            let start = round * r;
            let victim = nodes[r as usize % nodes.len()];
            steps.push((start, Step::Kill(victim)));
            steps.push((start + down, Step::Restart(victim)));
            let mine: Vec<Step> = others
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % rounds == r)
                .map(|(_, step)| *step)
                .collect();
            if mine.is_empty() {
                continue;
            }
            // What is left of the round once the broker is back, in equal slots.
            let from = start + down * 2;
            let slot = (start + round - from) / mine.len() as u32;
            for (i, step) in mine.into_iter().enumerate() {
                let at = from + slot * i as u32;
                steps.push((at, step));
                match step {
                    Step::QuotaOn => steps.push((at + slot - down / 2, Step::QuotaOff)),
                    Step::RightRemoved => steps.push((at + slot - down / 2, Step::RightRestored)),
                    _ => {}
                }
            }
        }
        steps.sort_by_key(|(at, _)| *at);
        Plan { total, steps }
    }

    /// How long the fault that `on` starts lasts (until `off`), if the plan has it.
    fn span(&self, on: Step, off: Step) -> Option<Duration> {
        let start = self.steps.iter().find(|(_, step)| *step == on)?.0;
        let end = self.steps.iter().find(|(_, step)| *step == off)?.0;
        Some(end - start)
    }

    /// The alerts the faults must fire (those that last longer than the rule's `for`, with
    /// time for the fault to show), and those they may (what a fault truly does: a dead
    /// broker is unreachable, a throttled client's heartbeats are late). Any other is a false
    /// alarm.
    pub fn alerts(&self) -> (BTreeSet<&'static str>, BTreeSet<&'static str>) {
        let mut must = BTreeSet::new();
        let mut may: BTreeSet<&'static str> = [
            // A broker down: its partitions fail until their leadership moves, its replicas
            // are behind, it leads nothing until the preferred leaders are elected again.
            "KafkaBrokerUnreachable",
            "KafkaBrokerMissing",
            "KafkaUnderReplicatedPartitions",
            "KafkaBrokerLeadsNoHeartbeat",
            "KafkaHeartbeatProduceFailing",
            "KafkaHeartbeatErrorBudgetBurnFast",
            "KafkaHeartbeatErrorBudgetBurnSlow",
            "KafkaEndToEndLatencyHigh",
        ]
        .into();
        if let Some(span) = self.span(Step::QuotaOn, Step::QuotaOff) {
            // Throttled to 64 B/s, heartbeats wait, some past their deadlines.
            may.extend([
                "KafkaClientThrottled",
                "KafkaHeartbeatsLost",
                "KafkaHeartbeatsNotFlowing",
            ]);
            if span >= Duration::from_secs(7 * 60) {
                must.insert("KafkaClientThrottled");
            }
        }
        if let Some(span) = self.span(Step::RightRemoved, Step::RightRestored) {
            may.extend(["KafkaPermissionMissing", "KafkaOffsetCommitsFailing"]);
            if span >= Duration::from_secs(2 * 60) {
                must.insert("KafkaPermissionMissing");
            }
        }
        may.extend(must.iter().copied());
        (must, may)
    }

    /// The spans (with their aftermath) in which heartbeats may rightly be lost: throttled.
    fn throttled(&self) -> Vec<(Duration, Duration)> {
        let on = self.steps.iter().filter(|(_, s)| *s == Step::QuotaOn);
        let off = self.steps.iter().filter(|(_, s)| *s == Step::QuotaOff);
        on.zip(off)
            .map(|((start, _), (end, _))| (*start, *end + AFTERMATH))
            .collect()
    }

    pub fn describe(&self) -> String {
        let kills = self
            .steps
            .iter()
            .filter(|(_, step)| matches!(step, Step::Kill(_)))
            .count();
        let span = |on, off| {
            self.span(on, off)
                .map_or("none".to_string(), |span| format!("{} s", span.as_secs()))
        };
        format!(
            "{} s: {kills} broker(s) killed and restarted, a quota for {}, a right removed for {}, \
             credentials rotated, a rolling restart",
            self.total.as_secs(),
            span(Step::QuotaOn, Step::QuotaOff),
            span(Step::RightRemoved, Step::RightRestored)
        )
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub plan: String,
    pub sent: f64,
    pub lost: f64,
    /// Lost outside the throttled spans.
    pub lost_unexplained: f64,
    pub failed: f64,
    pub cannot_reach: usize,
    pub samples: usize,
    /// Scrapes with `heartbeat_up` 0 (two brokers or more served throughout).
    pub up_dips: usize,
    /// When those were (seconds from the start).
    pub up_dips_at: Vec<f64>,
    /// The exporter's lines saying it cannot reach the cluster.
    pub cannot_reach_lines: Vec<String>,
    /// Scrapes that got no answer within 5 s.
    pub scrape_failures: usize,
    pub fired: BTreeSet<String>,
    pub pending_only: BTreeSet<String>,
    pub must: BTreeSet<String>,
    pub may: BTreeSet<String>,
    pub rss_mib: (f64, f64),
    pub series: (usize, usize),
    /// The families with more series at the end than at the start, most grown first.
    pub series_grown: Vec<(String, i64)>,
    /// The largest beat delay is at most this (a histogram bound), seconds.
    pub beat_delay_at_most: f64,
    /// What was done, when (seconds from the start).
    pub done: Vec<(f64, String)>,
}

impl Report {
    pub fn missed(&self) -> BTreeSet<String> {
        self.must.difference(&self.fired).cloned().collect()
    }

    pub fn false_alarms(&self) -> BTreeSet<String> {
        self.fired.difference(&self.may).cloned().collect()
    }

    fn change(pair: (f64, f64)) -> String {
        format!("{:+.1} %", (pair.1 - pair.0) / pair.0 * 100.0)
    }

    /// The report as a Markdown table.
    pub fn table(&self) -> String {
        let list = |set: &BTreeSet<String>| {
            if set.is_empty() {
                "none".to_string()
            } else {
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let mut text = format!(
            "Chaos, {}\n\n| measure | value | goal |\n|---|---|---|\n",
            self.plan
        );
        let mut row = |what: &str, value: String, goal: &str| {
            let _ = writeln!(text, "| {what} | {value} | {goal} |");
        };
        row("heartbeats sent", format!("{:.0}", self.sent), "");
        row(
            "heartbeats lost",
            format!(
                "{:.0} ({:.0} outside the quota's span and its aftermath)",
                self.lost, self.lost_unexplained
            ),
            "0 outside the quota",
        );
        row(
            "heartbeats failed (not acknowledged)",
            format!("{:.0}", self.failed),
            "only on a dead broker's partitions, or throttled",
        );
        row(
            "\"cannot reach the cluster\" lines",
            self.cannot_reach.to_string(),
            "0",
        );
        row(
            "scrapes with `heartbeat_up` 0 (two brokers or more served)",
            format!("{} of {}", self.up_dips, self.samples),
            "0",
        );
        row(
            "scrapes not answered within 5 s",
            self.scrape_failures.to_string(),
            "0",
        );
        row("alerts fired", list(&self.fired), "");
        row("alerts only pending", list(&self.pending_only), "");
        row(
            "alerts the faults must fire, missed",
            list(&self.missed()),
            "none",
        );
        row(
            "alerts fired that no fault explains",
            list(&self.false_alarms()),
            "none",
        );
        row(
            "RSS, start → end",
            format!(
                "{:.1} → {:.1} MiB ({})",
                self.rss_mib.0,
                self.rss_mib.1,
                Self::change(self.rss_mib)
            ),
            "within 10 %",
        );
        row(
            "series, start → end",
            format!(
                "{} → {} ({})",
                self.series.0,
                self.series.1,
                Self::change((self.series.0 as f64, self.series.1 as f64))
            ),
            "within 10 %",
        );
        let grown: Vec<String> = self
            .series_grown
            .iter()
            .map(|(family, more)| format!("{family} +{more}"))
            .collect();
        row("families with more series", grown.join(", "), "");
        row(
            "largest beat delay",
            format!("at most {} s", self.beat_delay_at_most),
            "",
        );
        let done: Vec<String> = self
            .done
            .iter()
            .map(|(at, what)| format!("{at:.0} s {what}"))
            .collect();
        let _ = writeln!(text, "\nDone: {}.", done.join("; "));
        if !self.up_dips_at.is_empty() {
            let at: Vec<String> = self
                .up_dips_at
                .iter()
                .map(|at| format!("{at:.0}"))
                .collect();
            let _ = writeln!(text, "\n`heartbeat_up` 0 at (s): {}.", at.join(", "));
        }
        for line in &self.cannot_reach_lines {
            let _ = writeln!(text, "\n    {line}");
        }
        text
    }
}

/// The largest bound of `heartbeat_beat_delay_seconds` below which every beat started.
fn beat_delay_at_most(metrics: &Metrics) -> f64 {
    let count = metrics.sum("heartbeat_beat_delay_seconds_count", &[]);
    let mut buckets: Vec<(f64, f64)> = metrics
        .select("heartbeat_beat_delay_seconds_bucket", &[])
        .filter_map(|sample| Some((sample.labels.get("le")?.parse().ok()?, sample.value)))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
        .into_iter()
        .find(|(_, below)| *below >= count)
        .map_or(f64::INFINITY, |(le, _)| le)
}

fn series(metrics: &Metrics) -> usize {
    metrics.samples.len()
}

/// The families with more series in `end` than in `start`, most grown first.
fn grown_families(start: &Metrics, end: &Metrics) -> Vec<(String, i64)> {
    let count = |metrics: &Metrics| {
        let mut families: BTreeMap<String, i64> = BTreeMap::new();
        for sample in &metrics.samples {
            let family = ["_bucket", "_count", "_sum", "_total", "_created"]
                .iter()
                .find_map(|suffix| sample.name.strip_suffix(suffix))
                .unwrap_or(&sample.name);
            *families.entry(family.to_string()).or_default() += 1;
        }
        families
    };
    let before = count(start);
    let mut grown: Vec<(String, i64)> = count(end)
        .into_iter()
        .map(|(family, n)| {
            let more = n - before.get(&family).copied().unwrap_or(0);
            (family, more)
        })
        .filter(|(_, more)| *more > 0)
        .collect();
    grown.sort_by_key(|(_, more)| -more);
    grown
}

/// The exporter's credentials, in the files it reads them from.
struct Credentials {
    dir: PathBuf,
    active: usize,
    rotations: usize,
}

impl Credentials {
    fn write(&self, user: &str, password: &str) {
        // Each file replaced whole: a reader sees the old content or the new.
        for (name, value) in [("password", password), ("username", user)] {
            let temporary = self.dir.join(format!(".{name}"));
            std::fs::write(&temporary, value).unwrap();
            std::fs::rename(&temporary, self.dir.join(name)).unwrap();
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn password(user: &str, rotation: usize) -> String {
        format!("{user}-secret-{rotation}")
    }
}

/// Runs the plan against `cluster`; returns what it measured.
pub async fn run(cluster: &'static KafkaCluster, total: Duration) -> Report {
    cluster.restore(3);
    let nodes = cluster.node_ids();
    let plan = Plan::new(total, &nodes);
    cluster.create_topic(TOPIC, nodes.len() as i32, 3).await;
    let secrets = tempfile::tempdir().unwrap();
    let credentials = Arc::new(Mutex::new(Credentials {
        dir: secrets.path().to_path_buf(),
        active: 0,
        rotations: 0,
    }));
    let mut granted = Vec::new();
    for user in USERS {
        cluster.scram_user(user, &Credentials::password(user, 0));
        granted.push(grant(cluster, user, TOPIC));
    }
    credentials
        .lock()
        .unwrap()
        .write(USERS[0], &Credentials::password(USERS[0], 0));
    // The users' defaults throughout: only where to listen, where the credentials are, and
    // how long series of former leaders are kept.
    let client = cluster
        .client_properties("SCRAM-SHA-512", "unused", "unused")
        .replace(
            "sasl.username = unused",
            &format!(
                "sasl.username.file = {}",
                credentials.lock().unwrap().path("username").display()
            ),
        )
        .replace(
            "sasl.password = unused",
            &format!(
                "sasl.password.file = {}",
                credentials.lock().unwrap().path("password").display()
            ),
        );
    let mut exporter = Exporter::start(&format!(
        "[default]\n{client}[admin]\nheartbeat.topic = {TOPIC}\n\
         metrics.listener.host = 127.0.0.1\nmetrics.listener.port = 0\n\
         broker.missing.retention.seconds = {}\n",
        RETENTION.as_secs()
    ));
    let partitions = nodes.len();
    exporter
        .wait_for_every_partition(partitions, Duration::from_secs(90))
        .await;
    // The start's figures after a minute of calm, once every series made on first use (the
    // first commit's, the clients' first statistics) exists.
    tokio::time::sleep(CALM).await;
    let start_metrics = exporter
        .wait_for("a scrape after the calm", Duration::from_secs(5), |_| true)
        .await;
    let prometheus_dir = tempfile::tempdir().unwrap();
    let prometheus =
        Prometheus::with_shipped_rules(prometheus_dir.path(), &exporter.address.to_string());
    let pid = exporter.process.id();
    let (must, may) = plan.alerts();
    let mut report = Report {
        plan: plan.describe(),
        must: must.iter().map(|name| name.to_string()).collect(),
        may: may.iter().map(|name| name.to_string()).collect(),
        ..Report::default()
    };
    let rss_start = status_field(pid, "VmRSS:") / 1024.0;
    let series_start = series(&start_metrics);

    // The faults, on a thread of their own (the cluster's tools block), on the plan's times.
    let started = Instant::now();
    let done: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let faults = {
        let (plan, done, credentials) = (plan.clone(), done.clone(), credentials.clone());
        let address = exporter.address;
        std::thread::spawn(move || {
            for (at, step) in plan.steps {
                if let Some(wait) = at.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                let what = act(cluster, step, &credentials, address);
                done.lock()
                    .unwrap()
                    .push((started.elapsed().as_secs_f64(), what));
            }
            // Leadership back where it belongs now, rather than at the controller's next check
            // while the end's figures are taken.
            cluster.elect_preferred_leaders();
            done.lock().unwrap().push((
                started.elapsed().as_secs_f64(),
                "preferred leaders elected".to_string(),
            ));
        })
    };

    let throttled = plan.throttled();
    let mut lost = Growth::from(&start_metrics, "heartbeat_messages_lost_total");
    let mut failed = Growth::from(&start_metrics, "heartbeat_produce_failures_total");
    let mut previous: Option<Duration> = None;
    let mut alerts: BTreeMap<String, String> = BTreeMap::new();
    let mut last = start_metrics.clone();
    // Sampled every second until the faults are done and have settled.
    let mut settled_from: Option<Instant> = None;
    loop {
        let at = started.elapsed();
        match tokio::time::timeout(Duration::from_secs(5), get(exporter.address, "/metrics")).await
        {
            Ok((200, text, _)) => {
                let metrics = Metrics::parse(&text);
                report.samples += 1;
                if metrics.sum("heartbeat_up", &[]) != 1.0 {
                    report.up_dips += 1;
                    report.up_dips_at.push(at.as_secs_f64());
                }
                let lost_now = lost.see(&metrics);
                failed.see(&metrics);
                if let Some(previous_at) = previous {
                    let explained = throttled
                        .iter()
                        .any(|(from, to)| previous_at >= *from && at <= *to);
                    if lost_now > 0.0 && !explained {
                        report.lost_unexplained += lost_now;
                    }
                }
                previous = Some(at);
                last = metrics;
            }
            _ => report.scrape_failures += 1,
        }
        if let Some(data) = api(&prometheus, "/api/v1/alerts", &[]).await {
            for alert in data["alerts"].as_array().into_iter().flatten() {
                let name = alert["labels"]["alertname"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                let state = alert["state"].as_str().unwrap_or("?").to_string();
                let seen = alerts.entry(name).or_default();
                if state == "firing" || seen.is_empty() {
                    *seen = state;
                }
            }
        }
        if faults.is_finished() && at >= plan.total {
            let settled = *settled_from.get_or_insert_with(Instant::now);
            if settled.elapsed() >= SETTLE {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    faults.join().expect("the faults ran");

    report.sent = last.sum("heartbeat_beat_delay_seconds_count", &[]) * partitions as f64
        - start_metrics.sum("heartbeat_beat_delay_seconds_count", &[]) * partitions as f64;
    report.lost = lost.total();
    report.failed = failed.total();
    report.cannot_reach_lines = exporter
        .process
        .log()
        .lines()
        .filter(|line| line.contains("cannot reach the cluster"))
        .map(str::to_string)
        .collect();
    report.cannot_reach = report.cannot_reach_lines.len();
    for (name, state) in alerts {
        if state == "firing" {
            report.fired.insert(name);
        } else {
            report.pending_only.insert(name);
        }
    }
    report.rss_mib = (rss_start, status_field(pid, "VmRSS:") / 1024.0);
    report.series = (series_start, series(&last));
    report.series_grown = grown_families(&start_metrics, &last);
    report.beat_delay_at_most = beat_delay_at_most(&last);
    report.done = done.lock().unwrap().clone();

    drop(exporter);
    drop(prometheus);
    cluster.restore(3);
    for (user, acls) in USERS.iter().zip(&granted) {
        revoke(cluster, user, acls);
        // What is already gone (a quota removed, a user deleted by a rotation) may be refused.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cluster.remove_user_quota(user, "producer_byte_rate,consumer_byte_rate")
        }));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cluster.delete_scram_user(user)
        }));
    }
    cluster.delete_topic(TOPIC).await;
    report
}

/// Does `step`; says what was done.
fn act(
    cluster: &KafkaCluster,
    step: Step,
    credentials: &Mutex<Credentials>,
    exporter: std::net::SocketAddr,
) -> String {
    let active = USERS[credentials.lock().unwrap().active];
    let principal = format!("User:{active}");
    match step {
        Step::Kill(id) => {
            cluster.kill(id);
            format!("broker {id} killed")
        }
        Step::Restart(id) => {
            cluster.restart(id);
            format!("broker {id} serving again")
        }
        Step::QuotaOn => {
            cluster.user_quota(active, QUOTA);
            format!("quota {QUOTA} on {active}")
        }
        Step::QuotaOff => {
            cluster.remove_user_quota(active, "producer_byte_rate,consumer_byte_rate");
            "quota removed".to_string()
        }
        Step::RightRemoved => {
            cluster.disallow(&principal, &["Read"], &["--group", GROUP]);
            format!("READ on group {GROUP} removed from {active}")
        }
        Step::RightRestored => {
            cluster.allow(&principal, &["Read"], &["--group", GROUP]);
            "READ on the group restored".to_string()
        }
        Step::Rotate => rotate(cluster, credentials, exporter),
        Step::RollingRestart => {
            let started = Instant::now();
            for id in cluster.node_ids() {
                cluster.stop(id);
                cluster.restart(id);
                cluster.wait_for_isr(TOPIC, Duration::from_secs(60));
            }
            format!(
                "rolling restart done in {:.0} s",
                started.elapsed().as_secs_f64()
            )
        }
    }
}

/// The other user gets a new password, which goes to the exporter's files; once the exporter
/// has applied it, the old user's credential is deleted (an old API key revoked).
fn rotate(
    cluster: &KafkaCluster,
    credentials: &Mutex<Credentials>,
    exporter: std::net::SocketAddr,
) -> String {
    // This thread is no runtime's: one of its own, for the scrapes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let applied = || {
        runtime.block_on(async {
            Metrics::parse(&get(exporter, "/metrics").await.1)
                .sum("heartbeat_config_reloads_total", &[("outcome", "applied")])
        })
    };
    let before = applied();
    let (old, new, password) = {
        let mut credentials = credentials.lock().unwrap();
        credentials.rotations += 1;
        let old = credentials.active;
        let new = 1 - old;
        let password = Credentials::password(USERS[new], credentials.rotations);
        (old, new, password)
    };
    cluster.scram_user(USERS[new], &password);
    credentials.lock().unwrap().write(USERS[new], &password);
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied() <= before {
        assert!(
            Instant::now() < deadline,
            "the rotated credentials were not applied"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.delete_scram_user(USERS[old]);
    credentials.lock().unwrap().active = new;
    format!("credentials rotated from {} to {}", USERS[old], USERS[new])
}

/// Where `scripts/chaos` wants the report, if anywhere.
pub fn report_path() -> Option<PathBuf> {
    std::env::var_os("CHAOS_REPORT").map(PathBuf::from)
}

/// The span asked for (`CHAOS_SECONDS`), else `default`.
pub fn duration(default: Duration) -> Duration {
    std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .map_or(default, Duration::from_secs)
}

pub fn write_report(path: &Path, report: &Report) {
    std::fs::write(path, report.table()).unwrap();
}

/// How much a counter family grew during a run, series by series. The exporter removes some
/// series while it runs (those of a leader gone longer than `broker.missing.retention.seconds`),
/// and may create one of the same labels again from 0: what each counted is kept here, where
/// the difference of the family's sums at the start and the end would lose it.
struct Growth {
    family: &'static str,
    /// Each series' growth so far and its value as last seen.
    series: BTreeMap<BTreeMap<String, String>, (f64, f64)>,
}

impl Growth {
    fn from(start: &Metrics, family: &'static str) -> Self {
        let series = start
            .select(family, &[])
            .map(|sample| (sample.labels.clone(), (0.0, sample.value)))
            .collect();
        Growth { family, series }
    }

    /// Takes in a scrape; returns how much the family grew since the one before.
    fn see(&mut self, metrics: &Metrics) -> f64 {
        let mut grown_now = 0.0;
        for sample in metrics.select(self.family, &[]) {
            // A series first seen now counted all of it during the run.
            let (grown, last) = self
                .series
                .entry(sample.labels.clone())
                .or_insert((0.0, 0.0));
            // Lower than last seen: removed and created again, counting from 0.
            let step = if sample.value < *last {
                sample.value
            } else {
                sample.value - *last
            };
            *grown += step;
            *last = sample.value;
            grown_now += step;
        }
        grown_now
    }

    /// The growth over the whole run.
    fn total(&self) -> f64 {
        self.series.values().map(|(grown, _)| grown).sum()
    }
}
