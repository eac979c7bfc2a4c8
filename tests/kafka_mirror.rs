//! Replication pipelines measured end to end on real Kafka: two one-node clusters of
//! `tests/support/kafka.rs` (SASL_SSL, ACLs) and a real MirrorMaker 2 in dedicated mode
//! between them, with both of its naming policies. The exporter monitors both clusters and
//! reads the primary's heartbeats where MirrorMaker writes them on the replica.

mod support;

use std::time::Duration;

use support::kafka::{grant, Exporter, KafkaCluster, PLAIN_USERS};
use support::mirrormaker::{MirrorMaker, Naming};
use support::prometheus::{api, dashboard_queries, eventually, panel_has_data, Prometheus};
use support::Metrics;

/// The shipped `KafkaReplicationStalled` expression, its threshold replaced by `seconds`.
fn stall_expression(seconds: u32) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules/alerts.yml");
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let expression = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .find(|rule| rule["alert"].as_str() == Some("KafkaReplicationStalled"))
        .and_then(|rule| rule["expr"].as_str())
        .unwrap()
        .to_string();
    assert!(expression.contains("> 180"), "{expression}");
    expression.replace("> 180", &format!("> {seconds}"))
}

/// The exporter's configuration for `primary` and its replica `dr`, which reads
/// `mirror_topic`; every check fast.
fn pipeline_ini(primary: &KafkaCluster, dr: &KafkaCluster, mirror_topic: &str) -> String {
    let (user, password) = PLAIN_USERS[0];
    let cluster = |name: &str, kafka: &KafkaCluster| {
        format!(
            "[cluster:{name}]\nbootstrap.servers = {}\nssl.ca.location = {}\n",
            kafka.bootstrap(),
            kafka.ca_file.display()
        )
    };
    format!(
        "[default]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n\
         sasl.username = {user}\nsasl.password = {password}\n\
         socket.connection.setup.timeout.ms = 3000\nreconnect.backoff.max.ms = 500\n\
         [admin]\nheartbeat.topic = cc-heartbeat\nproduce.period.seconds = 0.5\n\
         check.metadata.period.seconds = 1\ncheck.metadata.timeout.seconds = 3\n\
         check.connectivity.period.seconds = 1\ncheck.connectivity.timeout.seconds = 2\n\
         metrics.listener.host = 127.0.0.1\nmetrics.listener.port = 0\n\
         {}{}\
         [cluster:dr:admin]\nheartbeat.topic = dr-heartbeat\nmirror.of = primary\n\
         mirror.topic = {mirror_topic}\nmirror.lost.after.seconds = 20\n",
        cluster("primary", primary),
        cluster("dr", dr),
    )
}

fn mirrored(m: &Metrics, outcome: &str) -> f64 {
    m.sum(
        "heartbeat_mirror_messages_total",
        &[("cluster", "dr"), ("outcome", outcome)],
    )
}

fn age(m: &Metrics) -> f64 {
    m.sum(
        "heartbeat_mirror_last_replicated_age_seconds",
        &[("cluster", "dr")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrormaker_pipelines_are_measured_end_to_end_with_either_naming() {
    let primary = KafkaCluster::start(1);
    let dr = KafkaCluster::start(1);
    let (user, _) = PLAIN_USERS[0];
    grant(&primary, user, "cc-heartbeat");
    grant(&dr, user, "dr-heartbeat");
    for topic in ["primary.cc-heartbeat", "cc-heartbeat"] {
        dr.allow(
            &format!("User:{user}"),
            &["Read", "Describe"],
            &["--topic", topic],
        );
    }
    let dir = tempfile::tempdir().unwrap();

    for (naming, mirror_topic) in [
        (Naming::Prefixed, "primary.cc-heartbeat"),
        (Naming::Identity, "cc-heartbeat"),
    ] {
        let exporter = Exporter::start(&pipeline_ini(&primary, &dr, mirror_topic));
        // The primary's topic exists once the exporter made it; MirrorMaker then finds it.
        exporter
            .wait_for("the primary beating", Duration::from_secs(60), |m| {
                m.sum(
                    "heartbeat_messages_consumed_total",
                    &[("cluster", "primary")],
                ) >= 3.0
            })
            .await;
        // A real Prometheus scrapes the exporter through the prefixed run: the dashboard's
        // replication panels and the stall alert's expression are read from it.
        let prometheus = (naming == Naming::Prefixed).then(|| {
            let prometheus_dir = dir.path().join("prometheus");
            std::fs::create_dir_all(&prometheus_dir).unwrap();
            Prometheus::with_shipped_rules(&prometheus_dir, &exporter.address.to_string())
        });
        let mirror_dir = dir.path().join(format!("{naming:?}"));
        std::fs::create_dir_all(&mirror_dir).unwrap();
        let mut mirror = MirrorMaker::start(&mirror_dir, &primary, &dr, "cc-heartbeat", naming);

        // Steady state: replicated, none lost, the latency measured.
        let steady = exporter
            .wait_for("replicated", Duration::from_secs(120), |m| {
                mirrored(m, "replicated") >= 20.0
            })
            .await;
        assert_eq!(
            mirrored(&steady, "lost"),
            0.0,
            "{naming:?}\n{}",
            steady.text
        );
        assert!(age(&steady) < 5.0, "{naming:?}: age {}", age(&steady));
        let p99 = steady.sum(
            "heartbeat_mirror_latency_recent_seconds",
            &[("cluster", "dr"), ("quantile", "0.99")],
        );
        eprintln!("{naming:?}: replication latency p99 {:.3} s", p99);

        if let Some(prometheus) = prometheus {
            // Every replication panel of the dashboard has data.
            let queries: Vec<_> = dashboard_queries()
                .into_iter()
                .filter(|(title, _)| title.starts_with("Replication:"))
                .collect();
            assert_eq!(queries.len(), 3, "{queries:?}");
            for (title, expr) in queries {
                panel_has_data(&prometheus, &title, &expr).await;
            }

            // MirrorMaker killed: the age grows past the stall threshold (the shipped alert's
            // expression, its threshold shortened, evaluated by Prometheus); the primary's own
            // heartbeat is untouched and both clusters stay ready.
            mirror.kill();
            let consumed = |m: &Metrics| {
                m.sum(
                    "heartbeat_messages_consumed_total",
                    &[("cluster", "primary")],
                )
            };
            let before = consumed(&steady);
            let stalled = exporter
                .wait_for("the stall seen", Duration::from_secs(60), |m| age(m) > 15.0)
                .await;
            assert!(consumed(&stalled) > before + 20.0, "the primary beats on");
            let (status, body) = exporter.ready().await;
            assert_eq!(status, 200, "{body}");
            let expression = stall_expression(10);
            eventually(
                "the stall alert's expression true",
                Duration::from_secs(30),
                async || {
                    let data = api(&prometheus, "/api/v1/query", &[("query", &expression)])
                        .await
                        .ok_or("query failed")?;
                    let result = data["result"].as_array().cloned().unwrap_or_default();
                    match result.first() {
                        Some(series) if series["metric"]["source"] == "primary" => Ok(()),
                        _ => Err(format!("{data}")),
                    }
                },
            )
            .await;
            drop(prometheus);

            // Restarted: replication resumes; re-sent heartbeats are duplicated, not lost.
            mirror.restart();
            let resumed = exporter
                .wait_for("replication resumed", Duration::from_secs(120), |m| {
                    age(m) < 5.0
                })
                .await;
            eprintln!(
                "after a restart: duplicated {}, late {}, lost {}",
                mirrored(&resumed, "duplicated"),
                mirrored(&resumed, "late"),
                mirrored(&resumed, "lost")
            );

            // The replica cluster stopped: its own failure; the primary untouched.
            dr.stop(1);
            let primary_up = |m: &Metrics| m.sum("heartbeat_up", &[("cluster", "primary")]);
            let before = consumed(&resumed);
            let down = exporter
                .wait_for("the replica down", Duration::from_secs(60), |m| {
                    m.sum("heartbeat_up", &[("cluster", "dr")]) == 0.0
                        && consumed(m) > before + 10.0
                })
                .await;
            assert_eq!(primary_up(&down), 1.0);
            // `/ready` says so once the replica's metadata is stale; the primary stays ready.
            let readiness = |body: &str| -> Option<(bool, bool)> {
                let ready: serde_json::Value = serde_json::from_str(body).ok()?;
                let of = |name: &str| {
                    ready["clusters"]
                        .as_array()?
                        .iter()
                        .find(|cluster| cluster["cluster"] == name)?["ready"]
                        .as_bool()
                };
                Some((of("primary")?, of("dr")?))
            };
            exporter
                .wait_for_ready(
                    "the replica unready, the primary ready",
                    Duration::from_secs(30),
                    |_, body| readiness(body) == Some((true, false)),
                )
                .await;
            dr.restart(1);
            exporter
                .wait_for(
                    "replicating after the replica's return",
                    Duration::from_secs(120),
                    |m| age(m) < 5.0,
                )
                .await;
        }
        drop(mirror);
        drop(exporter);
    }

    // A wrong mirror.topic: a clear reason within one metadata period (1 s here).
    let mut exporter = Exporter::start(&pipeline_ini(&primary, &dr, "no-such-topic"));
    let needle = "the mirror topic `no-such-topic` does not exist on dr";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !exporter.process.logged(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            exporter.process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
