//! Several clusters monitored by one process, each isolated from the others.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cc_heartbeat::config::Config;
use support::*;

const TOPIC: &str = "cc-heartbeat";

/// The test settings at the top level, one `[cluster:NAME]` per mock cluster.
fn two_clusters(east: &str, west: &str) -> Vec<Config> {
    let text = test_ini("unused:9092", TOPIC, "")
        .replace("bootstrap.servers = unused:9092\n", "")
        + &format!("[cluster:east]\nbootstrap.servers = {east}\n[cluster:west]\nbootstrap.servers = {west}\n");
    Config::clusters_from_ini(&text, Path::new("clusters.ini"), std::iter::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cluster_down_leaves_the_other_untouched() {
    let _serial = serial().await;
    let east = mock_cluster(3, TOPIC, 3);
    let west = mock_cluster(3, TOPIC, 3);
    let running = Running::start_clusters(two_clusters(
        &east.bootstrap_servers(),
        &west.bootstrap_servers(),
    ))
    .await;
    let consumed = |m: &Metrics, cluster: &str| {
        m.sum("heartbeat_messages_consumed_total", &[("cluster", cluster)])
    };
    let both = running
        .wait_for("both clusters measured", Duration::from_secs(20), |m| {
            consumed(m, "east") >= 9.0 && consumed(m, "west") >= 9.0
        })
        .await;
    // Every series says which cluster it belongs to by name; each cluster's id is on its own
    // info series.
    let id = |cluster: &str| {
        both.select("heartbeat_cluster_info", &[("cluster", cluster)])
            .next()
            .unwrap()
            .labels["cluster_id"]
            .clone()
    };
    assert_ne!(id("east"), id("west"));
    for sample in &both.samples {
        let cluster = sample.labels.get("cluster").map(String::as_str);
        assert!(matches!(cluster, Some("east" | "west")), "{sample:?}");
    }
    assert_eq!(
        both.text.matches("# TYPE heartbeat_up gauge").count(),
        1,
        "each family once"
    );
    let (status, _, _) = get(running.address, "/ready").await;
    assert_eq!(status, 200);

    // The baseline, on this machine in this run: west's beats while both clusters are up.
    let west = [("cluster", "west")];
    let beats = |m: &Metrics| m.sum("heartbeat_beat_delay_seconds_count", &west);
    let late = |m: &Metrics| {
        beats(m)
            - m.sum(
                "heartbeat_beat_delay_seconds_bucket",
                &[("cluster", "west"), ("le", "0.05")],
            )
    };
    let missed = |m: &Metrics| m.sum("heartbeat_beats_missed_total", &west);
    let west_before = running
        .wait_for("a baseline of west beats", Duration::from_secs(30), |m| {
            beats(m) >= beats(&both) + 35.0
        })
        .await;

    // Every broker of east goes down.
    for broker in 1..=3 {
        east.broker_down(broker).unwrap();
    }
    let start = Instant::now();
    let reason = loop {
        let (status, body, _) = get(running.address, "/ready").await;
        if status == 503 {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "east never reported not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ready: serde_json::Value = serde_json::from_str(&reason).unwrap();
    let clusters = ready["clusters"].as_array().unwrap();
    let by_name = |name: &str| {
        clusters
            .iter()
            .find(|cluster| cluster["cluster"] == name)
            .unwrap()
    };
    assert_eq!(ready["ready"], false);
    assert_eq!(by_name("east")["ready"], false, "{reason}");
    assert!(
        by_name("east")["reason"].as_str().unwrap().len() > 10,
        "{reason}"
    );
    assert_eq!(by_name("west")["ready"], true, "{reason}");

    // West beats on, as on time as before and with the latency it had, while east is down.
    let after = running
        .wait_for(
            "west beating while east fails",
            Duration::from_secs(30),
            |m| {
                beats(m) >= beats(&west_before) + 35.0
                    && m.sum("heartbeat_produce_failures_total", &[("cluster", "east")]) > 0.0
            },
        )
        .await;
    assert_eq!(after.sum("heartbeat_up", &[("cluster", "east")]), 0.0);
    assert_eq!(after.sum("heartbeat_up", &[("cluster", "west")]), 1.0);
    let during = |f: &dyn Fn(&Metrics) -> f64| f(&after) - f(&west_before);
    let baseline = |f: &dyn Fn(&Metrics) -> f64| f(&west_before) - f(&both);
    assert!(
        during(&missed) <= baseline(&missed),
        "west missed {} beats while east was down, {} before",
        during(&missed),
        baseline(&missed)
    );
    assert!(
        during(&late) <= baseline(&late) + 2.0,
        "west beats over 50 ms late: {} of {} while east was down, {} of {} before",
        during(&late),
        during(&beats),
        baseline(&late),
        baseline(&beats)
    );
    let delta = |name: &str| after.sum(name, &west) - west_before.sum(name, &west);
    assert!(delta("heartbeat_messages_consumed_total") >= 3.0 * (during(&beats) - 3.0));
    assert_eq!(delta("heartbeat_produce_failures_total"), 0.0);
    assert_eq!(delta("heartbeat_messages_lost_total"), 0.0);
    let p99 = |m: &Metrics| {
        m.select(
            "heartbeat_end_to_end_latency_recent_seconds",
            &[("cluster", "west"), ("quantile", "0.99")],
        )
        .map(|sample| sample.value)
        .fold(0.0, f64::max)
    };
    assert!(
        p99(&after) <= (3.0 * p99(&west_before)).max(0.05),
        "west p99 {} while east was down, {} before",
        p99(&after),
        p99(&west_before)
    );
    assert!(after.sum("heartbeat_produce_failures_total", &[("cluster", "east")]) > 0.0);
    assert!(running.stop().await);
}

/// A TCP forwarder on loopback whose target can be switched: the same bootstrap address
/// leading to one cluster, then to another.
struct Switch {
    address: std::net::SocketAddr,
    target: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Switch {
    async fn start(target: &str) -> Switch {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let target = std::sync::Arc::new(std::sync::Mutex::new(target.to_string()));
        let current = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = current.lock().unwrap().clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Switch { address, target }
    }

    fn point_at(&self, target: &str) {
        *self.target.lock().unwrap() = target.to_string();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_behind_the_same_address_is_monitored_afresh() {
    let first = mock_cluster(1, TOPIC, 1);
    let second = mock_cluster(1, TOPIC, 1);
    let switch = Switch::start(&first.bootstrap_servers()).await;
    let running = Running::start(test_config(&switch.address.to_string(), TOPIC, "")).await;
    let cluster_id = |m: &Metrics| {
        m.select("heartbeat_cluster_info", &[])
            .next()
            .map(|sample| sample.labels["cluster_id"].clone())
            .unwrap_or_default()
    };
    let before = running
        .wait_for(
            "heartbeats on the first cluster",
            Duration::from_secs(20),
            |m| m.sum("heartbeat_messages_consumed_total", &[]) >= 10.0,
        )
        .await;
    let first_id = cluster_id(&before);
    assert!(first_id.starts_with("mockCluster"), "{first_id}");
    // The address now leads to another cluster, and the first one is gone.
    switch.point_at(&second.bootstrap_servers());
    drop(first);
    let after = running
        .wait_for(
            "the second cluster monitored afresh",
            Duration::from_secs(60),
            |m| {
                let id = cluster_id(m);
                !id.is_empty()
                    && id != first_id
                    && id != "unknown"
                    && m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
            },
        )
        .await;
    assert_eq!(
        after.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "cluster_id_changed")]
        ),
        1.0,
        "{}",
        after.text
    );
    // Nothing measured of the first cluster is counted for the second.
    assert!(
        after.sum("heartbeat_messages_consumed_total", &[])
            < before.sum("heartbeat_messages_consumed_total", &[]) + 3.0,
        "{}",
        after.text
    );
    assert_eq!(after.sum("heartbeat_messages_lost_total", &[]), 0.0);
    assert!(running.stop().await);
}

/// The seven clusters of the sharding test, each with a heartbeat topic of its own on one mock
/// cluster, and the shard (of three) each goes to by the documented hash
/// (docs/kubernetes.md, "Scaling out"), computed independently.
const SEVEN: [(&str, u32); 7] = [
    ("prod_eu", 2),
    ("prod_us", 1),
    ("staging", 1),
    ("analytics", 1),
    ("payments", 1),
    ("logs", 1),
    ("dr", 0),
];

/// The names each endpoint of an exporter lists: `/metrics` (`heartbeat_up`), `/ready` and
/// `/api/status`.
async fn listed(address: std::net::SocketAddr) -> [std::collections::BTreeSet<String>; 3] {
    let metrics = Metrics::parse(&get(address, "/metrics").await.1);
    let up = metrics
        .select("heartbeat_up", &[])
        .map(|sample| sample.labels["cluster"].clone())
        .collect();
    let names = |body: &str| -> std::collections::BTreeSet<String> {
        let document: serde_json::Value = serde_json::from_str(body).unwrap();
        document["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|cluster| cluster["cluster"].as_str().unwrap().to_string())
            .collect()
    };
    let ready = names(&get(address, "/ready").await.1);
    let status = names(&get(address, "/api/status").await.1);
    [up, ready, status]
}

/// Three replicas of one configuration of seven clusters, `--shard 0/3` to `2/3` (one by
/// `CC_HEARTBEAT_SHARD`), monitor each cluster exactly once, each listing only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_monitor_each_of_seven_clusters_exactly_once() {
    let _serial = serial().await;
    let mock = mock_cluster(3, TOPIC, 0);
    let mut text = test_ini(&mock.bootstrap_servers(), TOPIC, "");
    for (name, _) in SEVEN {
        let topic = format!("heartbeat_{name}");
        mock.create_topic(&topic, 3, 3).unwrap();
        text += &format!("[cluster:{name}]\n[cluster:{name}:admin]\nheartbeat.topic = {topic}\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let path = path.to_str().unwrap();
    let mut shards: Vec<Process> = (0..3)
        .map(|index| {
            let shard = format!("{index}/3");
            if index == 2 {
                Process::start(&["--config", path], &[("CC_HEARTBEAT_SHARD", &shard)])
            } else {
                Process::start(&["--config", path, "--shard", &shard], &[])
            }
        })
        .collect();
    let addresses: Vec<_> = shards.iter_mut().map(Process::address).collect();
    let mut seen = std::collections::BTreeMap::new();
    for (index, address) in addresses.iter().enumerate() {
        let mine: std::collections::BTreeSet<String> = SEVEN
            .iter()
            .filter(|(_, shard)| *shard == index as u32)
            .map(|(name, _)| name.to_string())
            .collect();
        // Each of its clusters measured end to end...
        wait_for_scrape(
            *address,
            "every cluster of the shard measured",
            Duration::from_secs(30),
            |m| {
                mine.iter().all(|cluster| {
                    m.sum("heartbeat_messages_consumed_total", &[("cluster", cluster)]) >= 3.0
                })
            },
        )
        .await;
        // ...and none but its own listed anywhere.
        for names in listed(*address).await {
            assert_eq!(names, mine, "shard {index}/3");
        }
        for name in mine {
            assert!(seen.insert(name.clone(), index).is_none(), "{name} twice");
        }
    }
    assert_eq!(seen.len(), SEVEN.len(), "{seen:?}");
    for shard in &mut shards {
        let (_, code) = shard.terminate();
        assert_eq!(code, Some(0));
    }
}

/// `--check-config` says what a shard takes, and a value that is no shard is refused (exit 2).
#[test]
fn check_config_shows_the_split_and_a_bad_shard_is_refused() {
    let mut text = test_ini("127.0.0.1:9", TOPIC, "");
    for (name, _) in SEVEN {
        text += &format!("[cluster:{name}]\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &text);
    let output = binary()
        .args([
            "--config",
            path.to_str().unwrap(),
            "--check-config",
            "--shard",
            "0/3",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(
        said.starts_with("shard 0/3: monitoring 1 of the 7 clusters configured: dr\n"),
        "{said}"
    );
    for (name, shard) in SEVEN {
        assert!(
            said.contains(&format!("  {name}: shard {shard}\n")),
            "{said}"
        );
    }
    assert!(said.contains("configuration OK: 1 cluster\n"), "{said}");
    for bad in ["3/3", "1", "a/b", "0/0"] {
        let output = binary()
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .env("CC_HEARTBEAT_SHARD", bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(said.contains("INDEX"), "{bad}: {said}");
    }
}
