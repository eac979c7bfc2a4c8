//! The tools for the person on call: `cc-heartbeat check` (every check once, with what to fix),
//! against librdkafka's mock cluster for the healthy and broken paths it can show, and against
//! the real Kafka cluster (SASL_SSL, SCRAM, ACLs) for TLS, authentication and permissions.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::kafka::{exporter_ini, grant, revoke, KafkaCluster};
use support::*;

/// `cc-heartbeat --config <ini> check <arguments>`, with the report parsed when it is JSON.
fn check(ini: &str, arguments: &[&str]) -> (Output, Option<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), ini);
    let output = binary()
        .arg("--config")
        .arg(&path)
        .arg("check")
        .args(arguments)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).ok();
    (output, json)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The one cluster of a report.
fn only_cluster(report: &Value) -> &Value {
    let clusters = report["clusters"].as_array().expect("clusters");
    assert_eq!(clusters.len(), 1, "{report:#}");
    &clusters[0]
}

fn failures_of(cluster: &Value) -> Vec<(String, String, String)> {
    cluster["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|failure| {
            (
                failure["step"].as_str().unwrap().to_string(),
                failure["problem"].as_str().unwrap().to_string(),
                failure["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_healthy_cluster_passes_every_step_and_the_check_exits_0() {
    let mock = mock_cluster(3, "check-beats", 3);
    let ini = test_ini(&mock.bootstrap_servers(), "check-beats", "");
    let (output, report) = check(&ini, &["--json"]);
    let report = report.unwrap_or_else(|| panic!("no JSON report:\n{}", text(&output)));
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["version"], 1);
    assert_eq!(report["healthy"], true);
    let cluster = only_cluster(&report);
    assert_eq!(cluster["cluster"], "default");
    // Finished because every step answered, not because time ran out.
    assert!(cluster["timed_out_after_seconds"].is_null(), "{cluster:#}");
    assert!(failures_of(cluster).is_empty(), "{cluster:#}");
    let brokers: Vec<&Value> = cluster["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|connection| connection["broker_id"].is_i64())
        .collect();
    assert_eq!(brokers.len(), 3, "{cluster:#}");
    for connection in brokers {
        assert_eq!(connection["ok"], true, "{connection:#}");
        assert!(connection["phases"]["tcp"].as_f64().unwrap() >= 0.0);
        assert!(connection["seconds"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(cluster["metadata"]["ok"], true);
    assert_eq!(cluster["metadata"]["brokers"].as_array().unwrap().len(), 3);
    assert_eq!(cluster["topic"]["exists"], true);
    assert_eq!(cluster["topic"]["partitions"], 3);
    assert_eq!(cluster["topic"]["replication_factor"], 3);
    let trips = cluster["round_trips"].as_array().unwrap();
    assert_eq!(trips.len(), 3);
    for trip in trips {
        assert_eq!(trip["ok"], true, "{trip:#}");
        assert!(
            trip["round_trip_seconds"].as_f64().unwrap() > 0.0,
            "{trip:#}"
        );
        assert_eq!(trip["leader"], trip["partition"].as_i64().unwrap() % 3 + 1);
    }
    let permissions = cluster["permissions"].as_array().unwrap();
    assert!(permissions.iter().all(|right| right["ok"] == true));
    assert!(permissions
        .iter()
        .any(|right| right["operation"] == "WRITE" && right["resource"] == "topic:check-beats"));

    // The same as text, for a person.
    let (output, _) = check(&ini, &[]);
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(0), "{printed}");
    for expected in [
        "connections",
        "broker 2",
        "heartbeat topic `check-beats`",
        "3 of 3 partitions",
        "result: HEALTHY",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing:\n{printed}"
        );
    }
}

#[test]
fn a_cluster_that_does_not_listen_fails_at_the_connection_saying_what_to_fix() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let ini = test_ini(&format!("127.0.0.1:{port}"), "check-beats", "");
    let (output, report) = check(&ini, &["--json", "--timeout", "15"]);
    let report = report.unwrap_or_else(|| panic!("no JSON report:\n{}", text(&output)));
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let cluster = only_cluster(&report);
    // Decided by the refusal, before the timeout.
    assert!(cluster["timed_out_after_seconds"].is_null(), "{cluster:#}");
    assert_eq!(cluster["metadata"]["ok"], false);
    // No right was tried: none is reported.
    assert_eq!(cluster["permissions"].as_array().unwrap().len(), 0);
    let failures = failures_of(cluster);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (step, problem, fix) = &failures[0];
    assert_eq!(step, "connection");
    assert!(problem.contains("tcp refused"), "{problem}");
    assert!(
        fix.contains(&format!("nothing listens on 127.0.0.1:{port}"))
            && fix.contains("bootstrap.servers"),
        "{fix}"
    );
}

#[test]
fn a_name_that_does_not_resolve_is_named_with_the_key_to_check() {
    let ini = test_ini("no-such-broker.invalid:9092", "check-beats", "");
    let (output, report) = check(&ini, &["--json", "--timeout", "15"]);
    let report = report.unwrap_or_else(|| panic!("no JSON report:\n{}", text(&output)));
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let failures = failures_of(only_cluster(&report));
    let (step, _, fix) = &failures[0];
    assert_eq!(step, "connection");
    assert!(
        fix.contains("`no-such-broker.invalid` does not resolve")
            || fix.contains("does not answer"),
        "{fix}"
    );
}

#[test]
fn a_missing_topic_is_reported_and_not_created() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mock = mock_cluster(3, "check-beats", 0);
    let ini = test_ini(&mock.bootstrap_servers(), "check-beats", "");
    let (output, report) = check(&ini, &["--json"]);
    let report = report.unwrap_or_else(|| panic!("no JSON report:\n{}", text(&output)));
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let cluster = only_cluster(&report);
    assert!(cluster["timed_out_after_seconds"].is_null(), "{cluster:#}");
    assert_eq!(cluster["topic"]["exists"], false);
    let failures = failures_of(cluster);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "topic");
    assert!(
        failures[0].2.contains("creates it at start"),
        "{failures:?}"
    );
    // The check looked; it did not create.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some("check-beats"), Duration::from_secs(5))
        .unwrap();
    assert!(
        metadata.topics()[0].partitions().is_empty(),
        "the check created the topic"
    );
}

#[test]
fn a_bad_configuration_or_an_unknown_cluster_exits_2() {
    let (output, _) = check(
        "[admin]\nproduce.period.seconds = often\n",
        &["--timeout", "5"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("produce.period.seconds"),
        "{}",
        text(&output)
    );
    let ini = test_ini("127.0.0.1:9", "check-beats", "");
    let (output, _) = check(&ini, &["--cluster", "billing"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("--cluster billing: no such cluster (the file configures: default)"),
        "{}",
        text(&output)
    );
}

/// A check as SCRAM user `user` with `password`, its heartbeat topic `topic`.
fn check_as(cluster: &KafkaCluster, user: &str, password: &str, topic: &str) -> (Output, Value) {
    let ini = exporter_ini(
        &cluster.client_properties("SCRAM-SHA-512", user, password),
        topic,
        "",
    );
    let (output, report) = check(&ini, &["--json", "--timeout", "30"]);
    let report = report.unwrap_or_else(|| panic!("no JSON report:\n{}", text(&output)));
    (output, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_real_kafka_the_check_shows_certificates_and_racks_and_names_a_refused_password_and_right(
) {
    let cluster = KafkaCluster::shared();
    let (user, topic) = ("checker", "check-real-beats");
    let password = "checker-secret-4d1f";
    cluster.create_topic(topic, 3, 3).await;
    cluster.scram_user(user, password);
    let acls = grant(cluster, user, topic);

    let (output, report) = check_as(cluster, user, password, topic);
    let summary = only_cluster(&report);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    let authentication = &summary["authentication"];
    assert_eq!(authentication["security_protocol"], "SASL_SSL");
    assert_eq!(authentication["mechanism"], "SCRAM-SHA-512");
    assert_eq!(authentication["user"], user);
    assert_eq!(authentication["ok"], true);
    for connection in summary["connections"].as_array().unwrap() {
        let certificate = &connection["certificate"];
        assert!(
            certificate["subject"].as_str().unwrap().contains("CN="),
            "{connection:#}"
        );
        assert!(!certificate["issuer"].as_str().unwrap().is_empty());
        assert!(certificate["expires_at"].as_f64().unwrap() > cc_heartbeat::clock::unix_seconds());
        assert!(
            connection["phases"]["tls"].as_f64().is_some(),
            "{connection:#}"
        );
    }
    for broker in summary["metadata"]["brokers"].as_array().unwrap() {
        let id = broker["id"].as_i64().unwrap() as i32;
        assert_eq!(broker["rack"], cluster.rack(id), "{broker:#}");
    }
    assert_eq!(summary["topic"]["partitions"], 3);
    assert!(summary["round_trips"]
        .as_array()
        .unwrap()
        .iter()
        .all(|trip| trip["ok"] == true));

    // The wrong password: refused, the user named, no password anywhere.
    let wrong = "not-the-password-9c2e";
    let (output, report) = check_as(cluster, user, wrong, topic);
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    let failures = failures_of(only_cluster(&report));
    assert_eq!(failures[0].0, "authentication", "{failures:?}");
    assert!(
        failures[0]
            .2
            .contains(&format!("SCRAM-SHA-512 user `{user}`")),
        "{failures:?}"
    );
    assert!(
        !printed.contains(wrong) && !printed.contains(password),
        "{printed}"
    );

    // WRITE taken away: the right named, with the ACL that gives it back.
    cluster.disallow(&format!("User:{user}"), &["Write"], &["--topic", topic]);
    let (output, report) = check_as(cluster, user, password, topic);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let failures = failures_of(only_cluster(&report));
    let refused: Vec<_> = failures
        .iter()
        .filter(|(step, ..)| step == "permission")
        .collect();
    assert_eq!(refused.len(), 1, "{failures:?}");
    assert!(
        refused[0].2.contains(&format!(
            "kafka-acls --add --allow-principal User:{user} --operation Write --topic {topic}"
        )),
        "{failures:?}"
    );
    revoke(cluster, user, &acls);
}

/// The demo, its HTTP server on a free loopback port.
fn start_demo() -> Process {
    Process::start(
        &["--demo", "--config", "/no/such/config.ini"],
        &[
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST", "127.0.0.1"),
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT", "0"),
        ],
    )
}

/// Defines `brokerState(id)` in the page: the state it shows for broker `id` (`up`, `down`,
/// `degraded`, `unknown`), null while the broker is not shown.
/// Defines `cluster()` in the page: the demo cluster's section.
const CLUSTER: &str =
    "window.cluster = () => document.querySelector('section[data-cluster=\"default\"]'); true";

const BROKER_STATE: &str = "window.brokerState = (id) => document.querySelector(\
    `section[data-cluster=\"default\"] tr[data-broker=\"${id}\"]`)?.dataset.state ?? null; true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_demo_and_a_click_on_down_turns_that_broker_red() {
    let mut demo = start_demo();
    let address = demo.address();
    let (status, body, _) = get(address, "/api/status").await;
    assert_eq!(status, 200, "{body}");
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["version"], 1);
    assert_eq!(document["demo_cluster"], "default");

    let mut browser = support::browser::Browser::start(1400, 1100);
    browser.open(&format!("http://{address}/"));
    let limit = Duration::from_secs(30);
    browser.evaluate(BROKER_STATE);
    browser.wait_until(
        "every broker up and the cluster ready",
        "[1, 2, 3].every((id) => brokerState(id) === 'up') && \
         document.querySelector('section[data-cluster=\"default\"]')?.dataset.ready === 'true'",
        limit,
    );
    // Every partition shows its round trip, with a sparkline.
    let partitions = browser.evaluate(
        "Array.from(document.querySelectorAll('section[data-cluster=\"default\"] tr[data-partition]')).length",
    );
    assert_eq!(partitions, 3);
    browser.wait_until(
        "a sparkline drawn",
        "document.querySelectorAll('svg.spark polyline').length > 0",
        limit,
    );
    browser.evaluate(CLUSTER);
    browser.wait_until(
        "the cluster healthy",
        "cluster().dataset.state === 'healthy' && \
         cluster().querySelector('.badge').textContent === 'healthy'",
        limit,
    );
    // Every sparkline says its scale, in milliseconds.
    let scales = browser.evaluate(
        "Array.from(cluster().querySelectorAll('tr[data-partition] .scale')).map((scale) => \
         scale.textContent).join('|')",
    );
    let scales = scales.as_str().unwrap_or_default().to_string();
    let scale = regex::Regex::new(r"^0–[0-9]+\.[0-9] ms$").unwrap();
    assert_eq!(scales.split('|').count(), 3, "{scales}");
    assert!(
        scales.split('|').all(|text| scale.is_match(text)),
        "{scales}"
    );
    // A broker leads partitions, named as partitions; the demo's controller id (0, none of
    // its brokers) is not shown as if it were one.
    let leads = browser
        .evaluate("cluster().querySelector('tr[data-broker=\"2\"] td:nth-child(6)').textContent");
    assert_eq!(leads, "partition 1");
    let heading = browser.evaluate("cluster().querySelector('h2').textContent");
    assert!(
        !heading.as_str().unwrap_or_default().contains("controller"),
        "{heading}"
    );
    let failing =
        browser.evaluate("cluster().querySelector('[data-figure=\"failing\"]').textContent");
    assert!(
        failing
            .as_str()
            .unwrap_or_default()
            .starts_with("0 heartbeats/s failing"),
        "{failing}"
    );

    // A click on "down" for broker 2: red within a few refreshes, the others stay up.
    browser.evaluate(
        "document.querySelector('button[data-action=\"down\"][data-broker=\"2\"]').click(); true",
    );
    browser.wait_until("broker 2 shown down", "brokerState(2) === 'down'", limit);
    for id in [1, 3] {
        let state = browser.evaluate(&format!("brokerState({id})"));
        assert_eq!(state, "up", "broker {id}");
    }
    // One broker of three down: the cluster is degraded, not ready-and-green, and says why;
    // its partition's heartbeats fail, and the figure shows it.
    browser.wait_until(
        "the cluster degraded, naming broker 2",
        "cluster().dataset.state === 'degraded' && \
         cluster().querySelector('.badge').textContent === 'degraded' && \
         Array.from(cluster().querySelectorAll('ul.why li')).some((li) => li.textContent.startsWith('broker 2 down'))",
        limit,
    );
    browser.wait_until(
        "failing heartbeats per second shown",
        "parseFloat(cluster().querySelector('[data-figure=\"failing\"]').textContent) > 0",
        Duration::from_secs(60),
    );
    let badge =
        browser.evaluate("getComputedStyle(cluster().querySelector('.badge')).backgroundColor");
    assert_eq!(badge, "rgb(183, 121, 31)", "the degraded badge is amber");
    let colour = browser.evaluate(
        "getComputedStyle(document.querySelector(\
         'section[data-cluster=\"default\"] tr[data-broker=\"2\"] .state')).backgroundColor",
    );
    assert_eq!(colour, "rgb(207, 34, 46)", "the down broker is red");
    let screenshots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    browser.screenshot(&screenshots.join("status-page-broker-down.png"));

    // And "up" brings it back.
    browser.evaluate(
        "document.querySelector('button[data-action=\"up\"][data-broker=\"2\"]').click(); true",
    );
    browser.wait_until("broker 2 back up", "brokerState(2) !== 'down'", limit);
    let (_, code) = demo.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_in_its_file_is_taken_without_a_restart_and_never_logged() {
    use support::kafka::Exporter;
    let cluster = KafkaCluster::shared();
    let (user, topic) = ("rotator", "rotate-beats");
    let (wrong, first, second) = (
        "rotator-wrong-5e1a",
        "rotator-first-77c3",
        "rotator-second-0b9d",
    );
    cluster.create_topic(topic, 3, 3).await;
    cluster.scram_user(user, first);
    let acls = grant(cluster, user, topic);
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, format!("{wrong}\n")).unwrap();
    let client = cluster
        .client_properties("SCRAM-SHA-512", user, "unused")
        .replace(
            "sasl.password = unused",
            &format!("sasl.password.file = {}", password_file.display()),
        );
    let mut exporter = Exporter::start(&exporter_ini(&client, topic, ""));
    let limit = Duration::from_secs(60);
    exporter
        .wait_for_ready("the wrong password refused", limit, |status, body| {
            status == 503 && body.contains("authentication failed") && body.contains(user)
        })
        .await;

    // The right password written to the file: taken without a restart.
    std::fs::write(&password_file, format!("{first}\n")).unwrap();
    exporter
        .wait_for_ready(
            "ready with the password from the file",
            limit,
            |status, _| status == 200,
        )
        .await;
    let before = exporter
        .wait_for("heartbeats with the first password", limit, |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
                && m.sum("heartbeat_config_reloads_total", &[("outcome", "applied")]) >= 1.0
        })
        .await
        .sum("heartbeat_messages_consumed_total", &[]);

    // Rotated on the cluster, then in the file: applied, and nothing counted is lost.
    cluster.scram_user(user, second);
    std::fs::write(&password_file, second).unwrap();
    let metrics = exporter
        .wait_for("the second password applied", limit, |m| {
            m.sum("heartbeat_config_reloads_total", &[("outcome", "applied")]) >= 2.0
                && m.sum("heartbeat_messages_consumed_total", &[]) >= before + 3.0
        })
        .await;
    assert_eq!(
        metrics.sum("heartbeat_config_reloads_total", &[("outcome", "failed")]),
        0.0
    );

    // A file that cannot be used is refused, saying why; the running credentials stay.
    std::fs::write(&password_file, "").unwrap();
    exporter
        .wait_for("the empty file refused", limit, |m| {
            m.sum("heartbeat_config_reloads_total", &[("outcome", "failed")]) >= 1.0
        })
        .await;
    exporter
        .process
        .wait_for_line("refused, the running configuration stays", limit);
    assert!(exporter.process.logged("is empty"));
    assert_eq!(exporter.ready().await.0, 200);

    // SIGHUP reads the file again: with the second password back, nothing to apply.
    std::fs::write(&password_file, second).unwrap();
    exporter
        .wait_for("the file usable again", limit, |m| {
            m.sum(
                "heartbeat_config_reloads_total",
                &[("outcome", "unchanged")],
            ) >= 1.0
        })
        .await;
    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &exporter.process.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    exporter
        .wait_for("a reload on SIGHUP", limit, |m| {
            m.sum(
                "heartbeat_config_reloads_total",
                &[("outcome", "unchanged")],
            ) >= 2.0
        })
        .await;
    assert_eq!(exporter.ready().await.0, 200);
    for secret in [wrong, first, second] {
        assert!(!exporter.process.logged(secret), "a password was logged");
    }
    let (_, code) = exporter.process.terminate();
    assert_eq!(code, Some(0));
    revoke(cluster, user, &acls);
}

/// `cc-heartbeat bundle` with `ini` and `arguments`; the bundle's files.
fn bundle(ini: &str, arguments: &[&str]) -> std::collections::BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), ini);
    let output = binary()
        .arg("--config")
        .arg(&path)
        .arg("bundle")
        .args(["--output", dir.path().to_str().unwrap()])
        .args(arguments)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let written = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let name = std::path::Path::new(&written)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with("cc-heartbeat-bundle-default-") && name.ends_with("Z.tar.gz"),
        "{name}"
    );
    unpack_bundle(std::path::Path::new(&written))
}

#[test]
fn a_redacted_bundle_hashes_the_user_name_and_keeps_the_products_own_words() {
    // The default names (topic and group `cc-heartbeat`), and a Confluent Cloud API key as
    // the user name; the mock has no SASL, so the check fails fast and the bundle says so.
    let mock = mock_cluster(1, "cc-heartbeat", 1);
    let (key, secret) = ("ABCDEFGH2JKLMN3P", "Secret-of-the-bundle-test-7c1d");
    let ini = format!(
        "[default]\nbootstrap.servers = {}\nsecurity.protocol = SASL_PLAINTEXT\n\
         sasl.mechanisms = PLAIN\nsasl.username = {key}\nsasl.password = {secret}\n",
        mock.bootstrap_servers()
    );
    let files = bundle(&ini, &["--redact", "--timeout", "2"]);
    for (name, text) in &files {
        assert!(!text.contains(key), "the API key id is in {name}");
        assert!(!text.contains(secret), "the secret is in {name}");
    }
    let config = &files["config.ini"];
    assert!(config.contains("sasl.username = user-"), "{config}");
    // The product's own sentences and default names read as written.
    assert!(
        config.contains("your properties over cc-heartbeat's defaults"),
        "{config}"
    );
    assert!(
        config.contains("heartbeat.topic = cc-heartbeat\n"),
        "{config}"
    );
    let garbled = regex::Regex::new(r"(topic|group)-[0-9a-f]{8}'s").unwrap();
    for (name, text) in &files {
        assert!(
            !garbled.is_match(text),
            "garbled product words in {name}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_support_bundle_holds_every_part_masks_every_secret_and_redacts_every_name() {
    use support::kafka::{commit, produce, Exporter};
    let cluster = KafkaCluster::shared();
    let (user, password) = ("bundler", "bundler-secret-31f8");
    let (topic, orders, group, own_group) = (
        "bundle-beats",
        "bundle-orders",
        "bundle-billing",
        "bundle-probe-group",
    );
    cluster.create_topic(topic, 3, 3).await;
    cluster.create_topic(orders, 1, 3).await;
    produce(cluster, orders, 4);
    commit(cluster, group, orders, 1);
    cluster.scram_user(user, password);
    let principal = format!("User:{user}");
    let acls: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["Describe", "Write", "Read"], vec!["--topic", topic]),
        (vec!["Read"], vec!["--group", own_group]),
        (vec!["Describe"], vec!["--group", group]),
        (
            vec!["Describe", "Read", "DescribeConfigs"],
            vec!["--topic", orders],
        ),
    ];
    for (operations, resource) in &acls {
        cluster.allow(&principal, operations, resource);
    }
    let ini = exporter_ini(
        &cluster.client_properties("SCRAM-SHA-512", user, password),
        topic,
        &format!(
            "heartbeat.topic.manage = false\nconsumer.group.names = {group}\n\
             check.consumer.group.period.seconds = 1"
        ),
    )
    .replace(
        "[admin]",
        &format!("[consumer]\ngroup.id = {own_group}\n[admin]"),
    );
    let exporter = Exporter::start(&ini);
    exporter
        .wait_for(
            "the group's lag and heartbeats",
            Duration::from_secs(60),
            |m| {
                m.has("heartbeat_consumer_group_max_lag", &[("group", group)])
                    && m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
            },
        )
        .await;
    let from = format!("http://{}", exporter.address);

    let files = bundle(&ini, &["--from", &from]);
    let manifest: Value = serde_json::from_str(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["redacted"], false);
    assert_eq!(
        manifest["missing"].as_array().unwrap().len(),
        0,
        "{manifest:#}"
    );
    for listed in manifest["files"].as_array().unwrap() {
        let name = listed["name"].as_str().unwrap();
        assert!(files.contains_key(name), "{name} listed, not in the bundle");
        assert!(!listed["what"].as_str().unwrap().is_empty());
    }
    for name in [
        "version.json",
        "config.ini",
        "check.txt",
        "check.json",
        "metadata.json",
        "events.json",
        "exporter-metrics.txt",
        "exporter-ready.json",
        "exporter-events.json",
    ] {
        assert!(files.contains_key(name), "no {name}: {:?}", files.keys());
    }
    let version: Value = serde_json::from_str(&files["version.json"]).unwrap();
    assert!(version["librdkafka"].as_str().unwrap().starts_with('2'));
    assert!(version["librdkafka_features"]
        .as_str()
        .unwrap()
        .contains("sasl_scram"));
    let check: Value = serde_json::from_str(&files["check.json"]).unwrap();
    assert_eq!(check["healthy"], true, "{check:#}");
    let cluster_id = check["clusters"][0]["metadata"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string();
    let metadata: Value = serde_json::from_str(&files["metadata.json"]).unwrap();
    assert!(metadata[0]["topics"].as_u64().unwrap() >= 2, "{metadata:#}");
    assert_eq!(metadata[0]["heartbeat_topic"]["partitions"], 3);
    assert!(files["exporter-metrics.txt"].contains("heartbeat_messages_consumed_total"));
    let events: Value = serde_json::from_str(&files["exporter-events.json"]).unwrap();
    assert!(events["events"].is_array(), "{events:#}");
    assert!(files["config.ini"].contains("sasl.password = ********"));
    for (name, text) in &files {
        assert!(!text.contains(password), "the password is in {name}");
    }

    let redacted = bundle(&ini, &["--from", &from, "--redact"]);
    let manifest: Value = serde_json::from_str(&redacted["manifest.json"]).unwrap();
    assert_eq!(manifest["redacted"], true);
    assert!(
        redacted["check.txt"].contains("topic-"),
        "{}",
        redacted["check.txt"]
    );
    let hidden = [
        topic,
        orders,
        group,
        own_group,
        user,
        cluster_id.as_str(),
        "localhost",
        "127.0.0.1",
    ];
    let ip = regex::Regex::new(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap();
    for (name, text) in &redacted {
        assert!(!text.contains(password), "the password is in {name}");
        for name_hidden in hidden {
            assert!(
                !text.contains(name_hidden),
                "`{name_hidden}` is in {name}:\n{}",
                text.lines()
                    .filter(|line| line.contains(name_hidden))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        assert!(!ip.is_match(text), "an IP address is in {name}");
    }
    for (operations, resource) in &acls {
        cluster.disallow(&principal, operations, resource);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_warnings_and_errors_are_served_with_their_cluster_and_no_secret() {
    let mock = mock_cluster(3, "events-beats", 0);
    let secret = "events-secret-6a0c";
    let ini = test_ini(
        &mock.bootstrap_servers(),
        "events-beats",
        "heartbeat.topic.manage = false",
    )
    .replace(
        "[producer]",
        &format!("sasl.password = {secret}\n[producer]"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &ini);
    let mut process = Process::start(&["--config", path.to_str().unwrap()], &[]);
    let address = process.address();
    let started = std::time::Instant::now();
    let events = loop {
        let (status, body, _) = get(address, "/debug/events").await;
        assert_eq!(status, 200, "{body}");
        let events: Value = serde_json::from_str(&body).unwrap();
        let found = events["events"].as_array().unwrap().iter().any(|event| {
            event["level"] == "ERROR"
                && event["context"] == "cluster{name=default}"
                && event["message"]
                    .as_str()
                    .unwrap()
                    .contains("does not exist")
        });
        if found {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{events:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!events.contains(secret), "{events}");
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
}
