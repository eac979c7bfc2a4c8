//! What a person reads besides the metrics, held to its contract: `/api/status` (the status
//! page's document), `check --json` and every file of a support bundle taken from a running
//! exporter, reduced by `support::outputs` to what does not change between runs, against
//! `tests/contract/outputs/`. A healthy cluster (librdkafka's mock, 3 brokers) with a group
//! behind on a topic, the commit and transaction probes on: each document with its fields
//! filled. Written before the recorder replaced how tasks report (issue 29), to show these
//! documents unchanged by it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::outputs::{assert_reduced, exposition_lines, json_lines, text_lines};
use support::*;

/// The cluster's status in `document`, once it is healthy with every broker up, every
/// partition read back and the group behind reported.
fn settled(document: &Value) -> bool {
    let Some(cluster) = document["clusters"].get(0) else {
        return false;
    };
    let all = |key: &str, check: &dyn Fn(&Value) -> bool| {
        cluster[key]
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(check))
    };
    cluster["state"] == "healthy"
        && all("brokers", &|broker| broker["state"] == "up")
        && all("partitions", &|partition| {
            partition["consumed"].as_u64().unwrap_or(0) >= 3
        })
        && all("groups_behind", &|group| group["group"] == "orders-app")
}

/// The check's connection checks of bootstrap servers taken out: the check reports them only
/// when its first round of connection checks came before the first metadata answer, which
/// depends on timing (under load it does).
fn without_bootstrap_checks(report: &mut Value) {
    let clusters = report
        .get_mut("clusters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for cluster in clusters {
        if let Some(connections) = cluster["connections"].as_array_mut() {
            connections.retain(|connection| {
                !connection["target"]
                    .as_str()
                    .is_some_and(|target| target.starts_with("bootstrap-"))
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_document_the_check_and_the_bundle_keep_their_shape() {
    let mock = mock_cluster(3, "cc-heartbeat", 3);
    mock.create_topic("orders", 2, 3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let long_ago = 1_700_000_000_000;
    for partition in 0..2 {
        produce_at_partition(&bootstrap, "orders", partition, &[long_ago; 4]);
    }
    commit_offsets(&bootstrap, "orders-app", "orders", &[(0, 1), (1, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let ini = test_ini(
        &bootstrap,
        "cc-heartbeat",
        "consumer.group.names = orders-app\n\
         check.consumer.group.period.seconds = 1\n\
         probe.commit.period.seconds = 1\n\
         probe.transactions = true\n\
         probe.transactions.period.seconds = 1",
    );
    let path = write_config(dir.path(), &ini);
    let mut exporter = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = exporter.address();
    let directory = dir.path().to_string_lossy().to_string();
    let exporter_url = format!("http://{address}");

    // /api/status, once the cluster settled.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (_, body, _) = get(address, "/api/status").await;
        let document: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if settled(&document) {
            break document;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not settled: {document:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cluster_id = status["clusters"][0]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string();
    let literals = [
        (directory.as_str(), "<dir>"),
        (bootstrap.as_str(), "<bootstrap>"),
        (exporter_url.as_str(), "<exporter>"),
        (cluster_id.as_str(), "<cluster id>"),
    ];
    assert_reduced("api-status.txt", &json_lines(&status, &literals));

    // `check --json`: every step passed.
    let output = binary()
        .arg("--config")
        .arg(&path)
        .args(["check", "--json", "--timeout", "20"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(0), "{said}");
    let mut report: Value = serde_json::from_str(&said).unwrap();
    without_bootstrap_checks(&mut report);
    assert_reduced("check.txt", &json_lines(&report, &literals));

    // The bundle, from the running exporter: each file reduced by its kind.
    let output = binary()
        .arg("--config")
        .arg(&path)
        .args(["bundle", "--from", &exporter_url, "--output", &directory])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let written = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let mut reduced = String::new();
    for (name, text) in unpack_bundle(std::path::Path::new(&written)) {
        reduced.push_str(&format!("== {name}\n"));
        reduced.push_str(&if name.ends_with(".json") {
            let mut document: Value = serde_json::from_str(&text).unwrap();
            without_bootstrap_checks(&mut document);
            json_lines(&document, &literals)
        } else if name == "exporter-metrics.txt" {
            exposition_lines(&text, &literals)
        } else {
            // The same in the check's text: a line per bootstrap server checked.
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| name != "check.txt" || !line.contains("bootstrap server"))
                .collect();
            text_lines(&kept.join("\n"), &literals)
        });
    }
    assert_reduced("bundle.txt", &reduced);
    let (_, code) = exporter.terminate();
    assert_eq!(code, Some(0));
}
