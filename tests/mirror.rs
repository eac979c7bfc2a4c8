//! A replica's mirror reader against librdkafka's mock clusters: the source's heartbeats
//! copied to the replica by a replicator of the tests' own (`support/replicator.rs`, a
//! consumer and a producer, as a pipeline's worker is), paused and made to re-send, as
//! MirrorMaker 2 does after a restart. What this proves is the reader's matching and its
//! series, not any replication tool.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::replicator::Replicator;
use support::*;

const PARTITIONS: i32 = 3;

/// The configuration of a primary and its replica `dr` reading `mirror_topic`.
fn pipeline_ini(primary: &str, dr: &str, mirror_topic: &str) -> String {
    test_ini("unused:9092", "cc-heartbeat", "").replace("bootstrap.servers = unused:9092\n", "")
        + &format!(
            "[cluster:primary]\nbootstrap.servers = {primary}\n\
             [cluster:dr]\nbootstrap.servers = {dr}\n\
             [cluster:dr:admin]\nheartbeat.topic = dr-heartbeat\nmirror.of = primary\n\
             mirror.topic = {mirror_topic}\nmirror.lost.after.seconds = 4\n"
        )
}

/// A primary and its replica `dr`, the primary's heartbeat topic replicated to
/// `primary.cc-heartbeat` there, as MirrorMaker 2's default policy names it.
fn replicated_clusters() -> (Mock, Mock, Replicator) {
    let primary = mock_cluster(3, "cc-heartbeat", PARTITIONS);
    let dr = mock_cluster(3, "dr-heartbeat", PARTITIONS);
    dr.create_topic("primary.cc-heartbeat", PARTITIONS, 3)
        .unwrap();
    let replicator = Replicator::start(
        &primary.bootstrap_servers(),
        "cc-heartbeat",
        PARTITIONS,
        &dr.bootstrap_servers(),
        "primary.cc-heartbeat",
    );
    (primary, dr, replicator)
}

/// The exporter binary monitoring `primary` and its replica `dr`, which reads `mirror_topic`.
fn start(primary: &Mock, dr: &Mock, mirror_topic: &str) -> (tempfile::TempDir, Process) {
    let dir = tempfile::tempdir().unwrap();
    let ini = pipeline_ini(
        &primary.bootstrap_servers(),
        &dr.bootstrap_servers(),
        mirror_topic,
    );
    let path = write_config(dir.path(), &ini);
    let exporter = Process::start(&["--config", path.to_str().unwrap()], &[]);
    (dir, exporter)
}

/// `cc-heartbeat check` with the configuration at `path`: its exit code and what it printed.
fn check(path: &std::path::Path, timeout: &str) -> (Option<i32>, String) {
    let output = binary()
        .arg("--config")
        .arg(path)
        .args(["check", "--timeout", timeout])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

fn mirrored(m: &Metrics, outcome: &str, partition: Option<i32>) -> f64 {
    let partition = partition.map(|partition| partition.to_string());
    let mut filter = vec![
        ("cluster", "dr"),
        ("source", "primary"),
        ("outcome", outcome),
    ];
    if let Some(partition) = &partition {
        filter.push(("partition", partition.as_str()));
    }
    m.sum("heartbeat_mirror_messages_total", &filter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart() {
    let (primary, dr, replicator) = replicated_clusters();
    let (_dir, mut exporter) = start(&primary, &dr, "primary.cc-heartbeat");
    let address = exporter.address();

    // Steady state: every partition replicated, nothing lost, the latency measured.
    let steady = wait_for_scrape(
        address,
        "replicated on every partition",
        Duration::from_secs(30),
        |m| (0..PARTITIONS).all(|p| mirrored(m, "replicated", Some(p)) >= 5.0),
    )
    .await;
    assert_eq!(mirrored(&steady, "lost", None), 0.0, "{}", steady.text);
    let p99 = steady.sum(
        "heartbeat_mirror_latency_recent_seconds",
        &[
            ("source", "primary"),
            ("partition", "0"),
            ("quantile", "0.99"),
        ],
    );
    assert!(p99 > 0.0 && p99 < 4.0, "recent p99 {p99}");
    assert!(
        steady.sum(
            "heartbeat_mirror_latency_seconds_count",
            &[("source", "primary")]
        ) >= 15.0
    );
    assert!(
        steady.sum(
            "heartbeat_mirror_last_replicated_age_seconds",
            &[("cluster", "dr")]
        ) < 3.0
    );
    assert_eq!(
        steady.sum(
            "heartbeat_mirror_partition_difference",
            &[("cluster", "dr")]
        ),
        0.0
    );
    assert!(exporter
        .logged("reading the heartbeats of primary replicated to topic `primary.cc-heartbeat`"));

    // The pipeline stalls: the age grows, heartbeats are lost after 4 s; the primary and the
    // replica themselves stay ready.
    replicator.paused.store(true, Ordering::SeqCst);
    let stalled = wait_for_scrape(address, "the stall seen", Duration::from_secs(30), |m| {
        m.sum(
            "heartbeat_mirror_last_replicated_age_seconds",
            &[("cluster", "dr")],
        ) > 6.0
            && mirrored(m, "lost", None) >= 3.0
    })
    .await;
    for cluster in ["primary", "dr"] {
        assert_eq!(stalled.sum("heartbeat_up", &[("cluster", cluster)]), 1.0);
    }
    let (status, body, _) = get(address, "/ready").await;
    assert_eq!(
        status, 200,
        "a stalled pipeline leaves both clusters ready: {body}"
    );
    // The status page's data shows the pipeline as stalled on the replica.
    let (_, status_json, _) = get(address, "/api/status").await;
    let document: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    let replica = document["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|cluster| cluster["cluster"] == "dr")
        .unwrap();
    assert_eq!(replica["pipeline"]["state"], "stalled", "{replica}");
    assert_eq!(replica["pipeline"]["source"], "primary");
    assert!(exporter.logged("heartbeats of primary not replicated to dr within 4 s"));

    // It resumes, and re-sends what it had sent (as MirrorMaker 2 does after a restart):
    // duplicated, not lost; what arrives after its deadline is late.
    let lost = mirrored(&stalled, "lost", None);
    replicator.paused.store(false, Ordering::SeqCst);
    let resumed = wait_for_scrape(address, "replication again", Duration::from_secs(30), |m| {
        m.sum(
            "heartbeat_mirror_last_replicated_age_seconds",
            &[("cluster", "dr")],
        ) < 3.0
            && mirrored(m, "late", None) >= 1.0
    })
    .await;
    replicator.resend.store(true, Ordering::SeqCst);
    let resent = wait_for_scrape(
        address,
        "re-sent heartbeats",
        Duration::from_secs(30),
        |m| mirrored(m, "duplicated", None) >= 1.0,
    )
    .await;
    assert!(mirrored(&resent, "lost", None) <= lost + mirrored(&resumed, "late", None));
    assert!(replicator.copied.load(Ordering::SeqCst) > 0);
    support::contract::assert_pinned(
        &get(address, "/metrics").await.1,
        &[
            "heartbeat_mirror_latency_seconds",
            "heartbeat_mirror_latency_recent_seconds",
            "heartbeat_mirror_messages",
            "heartbeat_mirror_last_replicated_age_seconds",
            "heartbeat_mirror_messages_skipped",
            "heartbeat_mirror_dropped",
            "heartbeat_mirror_partition_difference",
        ],
    );
    drop(replicator);
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_mirror_topic_is_named_within_a_metadata_period() {
    let primary = mock_cluster(1, "cc-heartbeat", 1);
    let dr = mock_cluster(1, "dr-heartbeat", 1);
    let (_dir, mut exporter) = start(&primary, &dr, "no-such-topic");
    let address = exporter.address();
    // Said at the first metadata period, which may come before the start-up line the address
    // is read from: looked for in everything logged.
    let needle = "the mirror topic `no-such-topic` does not exist on dr";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !exporter.logged(needle) {
        assert!(std::time::Instant::now() < deadline, "{}", exporter.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = exporter.log();
    let line = log.lines().find(|line| line.contains(needle)).unwrap();
    assert!(line.contains("mirror.topic ([cluster:dr:admin])"), "{line}");
    // The status page's data shows it broken from the next second on.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, status_json, _) = get(address, "/api/status").await;
        if status_json.contains("\"state\":\"broken\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status_json}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_measures_one_round_through_the_pipeline() {
    let (primary, dr, replicator) = replicated_clusters();
    let dir = tempfile::tempdir().unwrap();
    let ini = pipeline_ini(
        &primary.bootstrap_servers(),
        &dr.bootstrap_servers(),
        "primary.cc-heartbeat",
    );
    let path = write_config(dir.path(), &ini);
    let (code, said) = check(&path, "30");
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("pipeline from primary"), "{said}");
    assert!(
        said.contains("heartbeats of primary read from topic `primary.cc-heartbeat`, the newest"),
        "{said}"
    );
    // Without the pipeline the replica's check fails at that step, naming what to look at.
    drop(replicator);
    let (code, said) = check(&path, "8");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(
            "no heartbeat of primary arrived through topic `primary.cc-heartbeat` during the check"
        ),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_is_measured_from_the_first_send() {
    // primary -> dr, as MirrorMaker 2 names it; dr -> dr2, keeping the name, as Cluster
    // Linking does: dr2 reads the primary's heartbeats under the name they have on dr.
    let (primary, dr, first_hop) = replicated_clusters();
    let dr2 = mock_cluster(3, "dr2-heartbeat", PARTITIONS);
    dr2.create_topic("primary.cc-heartbeat", PARTITIONS, 3)
        .unwrap();
    let second_hop = Replicator::start(
        &dr.bootstrap_servers(),
        "primary.cc-heartbeat",
        PARTITIONS,
        &dr2.bootstrap_servers(),
        "primary.cc-heartbeat",
    );
    let dir = tempfile::tempdir().unwrap();
    let ini = pipeline_ini(
        &primary.bootstrap_servers(),
        &dr.bootstrap_servers(),
        "primary.cc-heartbeat",
    ) + &format!(
        "[cluster:dr2]\nbootstrap.servers = {}\n\
         [cluster:dr2:admin]\nheartbeat.topic = dr2-heartbeat\nmirror.of = dr\n\
         mirror.lost.after.seconds = 4\n",
        dr2.bootstrap_servers()
    );
    let path = write_config(dir.path(), &ini);
    let mut exporter = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = exporter.address();
    let at = |m: &Metrics, cluster: &str, source: &str, outcome: &str| {
        m.sum(
            "heartbeat_mirror_messages_total",
            &[
                ("cluster", cluster),
                ("source", source),
                ("outcome", outcome),
            ],
        )
    };
    let age = |m: &Metrics, cluster: &str| {
        m.sum(
            "heartbeat_mirror_last_replicated_age_seconds",
            &[("cluster", cluster)],
        )
    };

    // Both replicas read the primary's heartbeats, matched against its sends: dr2's through
    // dr, labelled with the source it mirrors.
    let steady = wait_for_scrape(
        address,
        "replicated through the chain",
        Duration::from_secs(30),
        |m| {
            at(m, "dr", "primary", "replicated") >= 10.0 && at(m, "dr2", "dr", "replicated") >= 10.0
        },
    )
    .await;
    for (cluster, source) in [("dr", "primary"), ("dr2", "dr")] {
        assert_eq!(at(&steady, cluster, source, "lost"), 0.0, "{}", steady.text);
        assert!(age(&steady, cluster) < 3.0, "{cluster}: {}", steady.text);
    }
    // dr2's latency is the whole chain's: from the primary's send to dr2.
    assert!(
        steady.sum(
            "heartbeat_mirror_latency_seconds_count",
            &[("cluster", "dr2"), ("source", "dr")]
        ) >= 10.0,
        "{}",
        steady.text
    );
    assert!(
        exporter.logged("reading the heartbeats of dr replicated to topic `primary.cc-heartbeat`")
    );

    // The second hop stops: dr2's recovery point grows and its heartbeats are lost; dr's
    // pipeline is untouched.
    second_hop.paused.store(true, Ordering::SeqCst);
    let stalled = wait_for_scrape(
        address,
        "the second hop stalled",
        Duration::from_secs(30),
        |m| age(m, "dr2") > 6.0 && at(m, "dr2", "dr", "lost") >= 3.0,
    )
    .await;
    assert!(age(&stalled, "dr") < 3.0, "{}", stalled.text);
    assert_eq!(
        at(&stalled, "dr", "primary", "lost"),
        0.0,
        "{}",
        stalled.text
    );

    // The first hop stops too once the second resumes: what the primary sends reaches
    // neither, so both recovery points grow, dr2's measured from the primary's send.
    second_hop.paused.store(false, Ordering::SeqCst);
    wait_for_scrape(
        address,
        "the second hop resumed",
        Duration::from_secs(30),
        |m| age(m, "dr2") < 3.0,
    )
    .await;
    first_hop.paused.store(true, Ordering::SeqCst);
    let both = wait_for_scrape(
        address,
        "the first hop stalled",
        Duration::from_secs(30),
        |m| age(m, "dr") > 6.0 && age(m, "dr2") > 6.0,
    )
    .await;
    assert!(at(&both, "dr2", "dr", "lost") > at(&stalled, "dr2", "dr", "lost"));
    drop((first_hop, second_hop));
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}
