//! The Schema Registry probe against a real registry (Apicurio Registry's Confluent-compatible
//! API), through a proxy that answers as a failing registry does on demand, and over TLS
//! (stunnel in front, a certificate the test issues): the exporter binary, its `/metrics`,
//! `/ready` and log.

mod support;

use std::time::Duration;

use support::kafka::Exporter;
use support::registry::{Mode, Proxy, Registry};
use support::tls::{free_port, not_after_unix, Authority, Kind, Stunnel};
use support::*;

const SECRET: &str = "probe-s3cret-value";

/// An exporter on a mock cluster, probing the registry at `url` every second with `section`'s
/// other lines.
fn start_exporter(mock_bootstrap: &str, url: &str, section: &str, admin: &str) -> Exporter {
    let ini = test_ini(
        mock_bootstrap,
        "registry-beats",
        &format!("check.schema.registry.period.seconds = 1\ncheck.schema.registry.timeout.seconds = 3\n{admin}"),
    );
    Exporter::start(&format!("{ini}[schema_registry]\nurl = {url}\n{section}"))
}

fn failures(metrics: &Metrics, reason: &str) -> f64 {
    metrics.sum(
        "heartbeat_schema_registry_failures_total",
        &[("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_written_and_read_and_each_failure_is_named_without_the_secret() {
    let mock = mock_cluster(1, "registry-beats", 1);
    let registry = Registry::start().await;
    let proxy = Proxy::start(&registry.url(), &format!("probe:{SECRET}")).await;
    let mut exporter = start_exporter(
        &mock.bootstrap_servers(),
        &proxy.url(),
        &format!("basic.auth.user.info = probe:{SECRET}\n"),
        "",
    );
    let count = |m: &Metrics, operation: &str| {
        m.sum(
            "heartbeat_schema_registry_request_latency_seconds_count",
            &[("operation", operation)],
        )
    };
    exporter
        .wait_for(
            "probes registered and read back",
            Duration::from_secs(60),
            |m| {
                m.sum("heartbeat_schema_registry_up", &[]) == 1.0
                    && ["register", "read_by_id", "latest"]
                        .iter()
                        .all(|operation| count(m, operation) >= 3.0)
            },
        )
        .await;
    // Registering the same schema again gave the same id and no new version.
    let versions = reqwest::get(format!(
        "{}/subjects/cc-heartbeat-probe-value/versions",
        registry.url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
    assert_eq!(versions, serde_json::json!([1]));

    for (mode, reason) in [
        (Mode::Fail(429), "rate_limited"),
        (Mode::Fail(503), "server"),
        (Mode::OtherSchema, "mismatch"),
    ] {
        proxy.set_mode(mode);
        exporter
            .wait_for(reason, Duration::from_secs(20), |m| {
                failures(m, reason) >= 1.0 && m.sum("heartbeat_schema_registry_up", &[]) == 0.0
            })
            .await;
        proxy.set_mode(Mode::Forward);
        exporter
            .wait_for("up again", Duration::from_secs(20), |m| {
                m.sum("heartbeat_schema_registry_up", &[]) == 1.0
            })
            .await;
    }
    assert!(exporter.process.logged("HTTP 429"));

    // Credentials the registry no longer takes: `auth`, and /ready says so, never the secret.
    proxy.require("probe:rotated");
    let metrics = exporter
        .wait_for("auth refused", Duration::from_secs(20), |m| {
            failures(m, "auth") >= 1.0
        })
        .await;
    let body = exporter
        .wait_for_ready("not ready", Duration::from_secs(20), |status, _| {
            status == 503
        })
        .await;
    assert!(body.contains("basic.auth.user.info"), "{body}");
    assert!(!body.contains(SECRET) && !metrics.text.contains(SECRET));
    proxy.require(&format!("probe:{SECRET}"));
    exporter
        .wait_for_ready("ready again", Duration::from_secs(30), |status, _| {
            status == 200
        })
        .await;
    let log = exporter.process.log();
    let header = openssl::base64::encode_block(format!("probe:{SECRET}").as_bytes());
    assert!(
        !log.contains(SECRET) && !log.contains(&header),
        "the secret (or its Authorization header) is in the log"
    );

    // Read only: the latest version and its schema by id, nothing registered.
    let reader = start_exporter(
        &mock.bootstrap_servers(),
        &registry.url(),
        "",
        "schema.registry.probe.write = false",
    );
    let metrics = reader
        .wait_for("read-only probes", Duration::from_secs(60), |m| {
            m.sum("heartbeat_schema_registry_up", &[]) == 1.0 && count(m, "latest") >= 2.0
        })
        .await;
    assert!(!metrics.has(
        "heartbeat_schema_registry_failures_total",
        &[("operation", "register")]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_certificate_is_checked_and_its_expiry_reported() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let certificate = authority.issue(Kind::Valid);
    let mock = mock_cluster(1, "registry-beats", 1);
    let registry = Registry::start().await;
    let tls_port = free_port();
    let _stunnel = Stunnel::start(dir.path(), &certificate.pem, tls_port, registry.port);
    let url = format!("https://localhost:{tls_port}/apis/ccompat/v7");
    let trusted = start_exporter(
        &mock.bootstrap_servers(),
        &url,
        &format!("ssl.ca.location = {}\n", authority.ca_file.display()),
        "",
    );
    let metrics = trusted
        .wait_for("up over TLS", Duration::from_secs(60), |m| {
            m.sum("heartbeat_schema_registry_up", &[]) == 1.0
        })
        .await;
    let expiry = metrics.sum(
        "heartbeat_schema_registry_certificate_expiry_timestamp_seconds",
        &[],
    );
    assert_eq!(expiry, not_after_unix(&certificate.certificate));

    // Without the CA: the handshake fails, as `tls`.
    let untrusting = start_exporter(&mock.bootstrap_servers(), &url, "", "");
    untrusting
        .wait_for("tls failure", Duration::from_secs(30), |m| {
            failures(m, "tls") >= 1.0 && m.sum("heartbeat_schema_registry_up", &[]) == 0.0
        })
        .await;
    // Nothing listening: `connect`.
    let nowhere = start_exporter(
        &mock.bootstrap_servers(),
        &format!("http://127.0.0.1:{}", free_port()),
        "",
        "",
    );
    nowhere
        .wait_for("connect failure", Duration::from_secs(30), |m| {
            failures(m, "connect") >= 1.0
        })
        .await;
}
