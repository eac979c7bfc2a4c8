//! The shipped Prometheus configuration, rules and Grafana dashboard against a real Prometheus
//! (Debian's `prometheus`) scraping the exporter in demo mode.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::prometheus::{api, dashboard_queries, eventually, panel_has_data, Prometheus};
use support::*;

/// Panels the demo cannot feed: its cluster (librdkafka's mock) answers no DescribeConfigs, so
/// no retention margin (`tests/probes.rs` shows it on a real Kafka cluster), and it has no
/// Schema Registry (`tests/schema_registry.rs` probes a real one), and signs in with no OAuth
/// (`tests/kafka.rs` does, on a real cluster, each family of the panel pinned there), nor
/// replicates to a second cluster (`tests/kafka_mirror.rs` feeds those panels from a real
/// MirrorMaker 2 pipeline).
const NOT_IN_DEMO: [&str; 5] = [
    "Replication: recovery point (age of the newest replicated heartbeat)",
    "Replication: latency p99 and outcomes",
    "Retention margin (until unread records may be deleted)",
    "Schema Registry: up, request latency p99, failures",
    "OAuth sign-in: token life left, refreshes, failures",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_evaluates_every_rule_and_feeds_every_panel() {
    let mut exporter = Process::start(
        &["--demo", "--config", "/no/such/config.ini"],
        &[
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST", "127.0.0.1"),
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT", "0"),
            ("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS", "0.5"),
            ("CC_HEARTBEAT__ADMIN__PROBE_TRANSACTIONS", "true"),
            (
                "CC_HEARTBEAT__ADMIN__PROBE_TRANSACTIONS_PERIOD_SECONDS",
                "2",
            ),
            ("CC_HEARTBEAT__ADMIN__PROBE_COMMIT_PERIOD_SECONDS", "2"),
            (
                "CC_HEARTBEAT__ADMIN__CHECK_CONNECTIVITY_PERIOD_SECONDS",
                "1",
            ),
        ],
    );
    let target = exporter.address().to_string();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::with_shipped_rules(dir.path(), &target);

    eventually(
        "the target up, its OpenMetrics parsed",
        Duration::from_secs(30),
        async || {
            let data = api(&prometheus, "/api/v1/targets", &[])
                .await
                .ok_or("no answer")?;
            let target = &data["activeTargets"][0];
            if target["health"] == "up" && target["lastError"] == "" {
                Ok(())
            } else {
                Err(format!("{target}"))
            }
        },
    )
    .await;

    // Every panel has data once a few scrapes and rule evaluations have happened, but those
    // the demo's cluster cannot feed; the real-cluster tests show their series.
    for (title, expr) in dashboard_queries()
        .into_iter()
        .filter(|(title, _)| !NOT_IN_DEMO.contains(&title.as_str()))
    {
        panel_has_data(&prometheus, &title, &expr).await;
    }
    for (label, selector) in [
        ("cluster", "heartbeat_up"),
        ("cluster_id", "heartbeat_cluster_info"),
        ("broker", "heartbeat_broker_info"),
        ("group", "heartbeat_consumer_group_state"),
    ] {
        let values = api(
            &prometheus,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector)],
        )
        .await
        .unwrap();
        assert!(
            !values.as_array().unwrap().is_empty(),
            "dashboard variable {label} has no values"
        );
    }

    // Every recording and alerting rule evaluates without error.
    eventually(
        "every rule evaluated, none failing",
        Duration::from_secs(30),
        async || {
            let data = api(&prometheus, "/api/v1/rules", &[])
                .await
                .ok_or("no answer")?;
            let rules: Vec<&Value> = data["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|group| group["rules"].as_array().unwrap())
                .collect();
            if rules.len() < 20 {
                return Err(format!("only {} rules loaded", rules.len()));
            }
            match rules.iter().find(|rule| rule["health"] != "ok") {
                None => Ok(()),
                Some(rule) => Err(format!(
                    "{} is {}: {}",
                    rule["name"], rule["health"], rule["lastError"]
                )),
            }
        },
    )
    .await;

    // Healthy demo: no alert is even pending (every expression is false), the exporter-absent
    // one included, and the stalled-group one for the demo's group that stopped long ago (it
    // waits for 15 minutes of history).
    let alerts = api(&prometheus, "/api/v1/alerts", &[]).await.unwrap();
    let active = alerts["alerts"].as_array().unwrap();
    assert!(
        active.is_empty(),
        "alerts active on a healthy cluster: {active:?}"
    );
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}

/// Runs `program` with `args`, `input` on its standard input: exit status, what it said.
fn run_with_input(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{program}: {error} (scripts/install-deps.sh installs it)"));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

/// The demo exporter, scraped until the windowed summaries are there.
async fn demo_with_summaries() -> (Process, SocketAddr, Metrics) {
    let mut exporter = Process::start(
        &["--demo", "--config", "/no/such/config.ini"],
        &[
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST", "127.0.0.1"),
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT", "0"),
            ("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS", "0.2"),
        ],
    );
    let address = exporter.address();
    let metrics = wait_for_scrape(
        address,
        "windowed latency and round-trip time",
        Duration::from_secs(30),
        |m| {
            m.has("heartbeat_end_to_end_latency_recent_seconds_count", &[])
                && m.has("heartbeat_client_broker_rtt_seconds_count", &[])
        },
    )
    .await;
    (exporter, address, metrics)
}

/// Windowed quantiles are summaries (`quantile`, `_sum`, `_count`), as the exposition formats
/// define them, and the text format served to clients that do not ask for OpenMetrics passes
/// `promtool check metrics` (its parser and its lints) without a single finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_in_the_text_format() {
    let (mut exporter, address, metrics) = demo_with_summaries().await;
    for family in [
        "heartbeat_end_to_end_latency_recent_seconds",
        "heartbeat_produce_latency_recent_seconds",
        "heartbeat_client_broker_rtt_seconds",
    ] {
        assert!(
            metrics.text.contains(&format!("# TYPE {family} summary")),
            "{family} is not a summary"
        );
        assert!(metrics.has(&format!("{family}_sum"), &[]), "{family}_sum");
        assert!(metrics.has(family, &[("quantile", "0.99")]), "{family} p99");
    }
    // curl, Telegraf and older agents send no Accept header, or one without OpenMetrics.
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (status, text, content_type) = get_accepting(address, "/metrics", accept).await;
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.contains("# TYPE heartbeat_messages_produced_total counter\n"));
        assert!(text.contains("# TYPE heartbeat_end_to_end_latency_recent_seconds summary\n"));
        let (clean, said) = run_with_input("promtool", &["check", "metrics"], &text);
        assert!(
            clean && said.trim().is_empty(),
            "promtool check metrics:\n{said}"
        );
    }
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}

/// The families and series of one exposition as an independent parser reads it (the Python
/// client's, Debian's `python3-prometheus-client`): the OpenMetrics parser with `om`, the text
/// format's without. One JSON document: `{"families": {name: type}, "series": [[name, labels]]}`,
/// OpenMetrics' info families named and typed as the text format has them.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics import parser as om
from prometheus_client import parser as text
openmetrics = sys.argv[1] == "om"
families, series = {}, []
parse = om.text_string_to_metric_families if openmetrics else text.text_string_to_metric_families
for family in parse(sys.stdin.read()):
    name, kind = family.name, family.type
    if kind == "info":
        name, kind = name + "_info", "gauge"
    families[name] = "unknown" if kind == "untyped" else kind
    for sample in family.samples:
        series.append([sample.name, sorted(sample.labels.items())])
print(json.dumps({"families": families, "series": series}))
"#;

fn parsed(format: &str, exposition: &str) -> Value {
    let (parsed, said) = run_with_input("/usr/bin/python3", &["-c", PARSE, format], exposition);
    assert!(
        parsed,
        "the {format} parser refused the exposition:\n{said}"
    );
    serde_json::from_str(&said).unwrap()
}

/// Both formats, each read by its own strict parser, describe the same families and series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_format_parses_and_both_carry_the_same_series() {
    let (mut exporter, address, _) = demo_with_summaries().await;
    // Series may come and go between scrapes: the text scrape's lie between two OpenMetrics
    // scrapes, taken around it.
    let before = parsed("om", &get(address, "/metrics").await.1);
    let (_, text, _) = get_accepting(address, "/metrics", None).await;
    let text = parsed("text", &text);
    let after = parsed("om", &get(address, "/metrics").await.1);
    assert_eq!(text["families"], before["families"]);
    assert_eq!(text["families"], after["families"]);
    let set = |parsed: &Value| -> std::collections::BTreeSet<String> {
        parsed["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect()
    };
    let (before, text, after) = (set(&before), set(&text), set(&after));
    assert!(text.len() > 50, "{text:?}");
    for series in before.intersection(&after) {
        assert!(
            text.contains(series),
            "{series} missing from the text format"
        );
    }
    for series in &text {
        assert!(
            before.contains(series) || after.contains(series),
            "{series} only in the text format"
        );
    }
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}
