//! TLS-aware broker checks and TLS failures, with stunnel in front of the mock cluster.

mod support;

use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use support::tls::{free_port, not_after_unix, Authority, Kind, Stunnel};
use support::*;

const TOPIC: &str = "cc-heartbeat";

/// A one-broker mock cluster whose broker is advertised behind stunnel on `tls_port`.
struct TlsCluster {
    // Owns the mock cluster.
    _client: BaseProducer,
    plain_port: u16,
    tls_port: u16,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        Self::start_advertising("127.0.0.1")
    }

    /// The broker advertised as `host` (which must resolve to loopback).
    fn start_advertising(host: &str) -> TlsCluster {
        let client: BaseProducer = rdkafka::ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap();
        let mock = client.client().mock_cluster().expect("mock cluster");
        mock.create_topic(TOPIC, 1, 1).unwrap();
        let plain_port = mock
            .bootstrap_servers()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        drop(mock);
        let tls_port = free_port();
        let host = std::ffi::CString::new(host).unwrap();
        // SAFETY: the client owns the mock cluster and outlives this call.
        unsafe {
            let cluster =
                rdkafka::bindings::rd_kafka_handle_mock_cluster(client.client().native_ptr());
            rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                cluster,
                1,
                host.as_ptr(),
                i32::from(tls_port),
            );
        }
        TlsCluster {
            _client: client,
            plain_port,
            tls_port,
        }
    }

    fn config(&self, ca_file: &Path) -> cc_heartbeat::config::Config {
        self.config_for(&format!("127.0.0.1:{}", self.tls_port), ca_file)
    }

    fn config_for(&self, bootstrap: &str, ca_file: &Path) -> cc_heartbeat::config::Config {
        let text = test_ini(bootstrap, TOPIC, "").replace(
            "[producer]",
            &format!(
                "security.protocol = SSL\nssl.ca.location = {}\n[producer]",
                ca_file.display()
            ),
        );
        cc_heartbeat::config::Config::from_ini(&text, Path::new("tls.ini"), std::iter::empty())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_phases_and_certificate_expiry_are_measured() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let valid = authority.issue(Kind::Valid);
    let cluster = TlsCluster::start();
    let _stunnel = Stunnel::start(dir.path(), &valid.pem, cluster.tls_port, cluster.plain_port);
    let running = Running::start(cluster.config(&authority.ca_file)).await;
    let metrics = running
        .wait_for(
            "heartbeats over TLS and a TLS check",
            Duration::from_secs(30),
            |m| {
                m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
                    && m.sum(
                        "heartbeat_connection_phase_seconds_count",
                        &[("broker", "1"), ("phase", "tls")],
                    ) >= 1.0
            },
        )
        .await;
    for phase in ["dns", "tcp", "tls"] {
        assert!(metrics.has(
            "heartbeat_connection_phase_seconds_count",
            &[("phase", phase)]
        ));
    }
    let expiry = metrics.sum(
        "heartbeat_broker_certificate_expiry_timestamp_seconds",
        &[("broker", "1")],
    );
    assert!(
        (expiry - not_after_unix(&valid.certificate)).abs() <= 1.0,
        "{expiry}"
    );
    assert_eq!(
        metrics.sum("heartbeat_connection_failures_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert!(running.stop().await);
}

async fn assert_tls_failure(kind: Kind, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let presented = authority.issue(kind);
    let cluster = TlsCluster::start();
    let _stunnel = Stunnel::start(
        dir.path(),
        &presented.pem,
        cluster.tls_port,
        cluster.plain_port,
    );
    let running = Running::start(cluster.config(&authority.ca_file)).await;
    // The cluster never answers, so the bootstrap server is what gets checked.
    let metrics = running
        .wait_for(
            &format!("{kind:?} certificate reported as {reason}"),
            Duration::from_secs(20),
            |m| {
                m.sum(
                    "heartbeat_connection_failures_total",
                    &[
                        ("broker", "bootstrap-0"),
                        ("phase", "tls"),
                        ("reason", reason),
                    ],
                ) >= 2.0
            },
        )
        .await;
    assert_eq!(metrics.sum("heartbeat_up", &[]), 0.0);
    assert_eq!(
        metrics.sum("heartbeat_connection_failures_total", &[("phase", "tcp")]),
        0.0,
        "TCP works; only TLS fails"
    );
    let expiry = metrics.sum(
        "heartbeat_broker_certificate_expiry_timestamp_seconds",
        &[("broker", "bootstrap-0")],
    );
    assert!(
        (expiry - not_after_unix(&presented.certificate)).abs() <= 1.0,
        "expiry read even when not trusted"
    );
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains(reason), "the reason names the cause: {body}");
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_named() {
    assert_tls_failure(Kind::Untrusted, "certificate_untrusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_named() {
    assert_tls_failure(Kind::Expired, "certificate_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_name_is_named() {
    assert_tls_failure(Kind::WrongName, "name_mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failure_recovers_without_restart_once_the_certificate_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let untrusted = authority.issue(Kind::Untrusted);
    let valid = authority.issue(Kind::Valid);
    let cluster = TlsCluster::start();
    let stunnel = Stunnel::start(
        dir.path(),
        &untrusted.pem,
        cluster.tls_port,
        cluster.plain_port,
    );
    let running = Running::start(cluster.config(&authority.ca_file)).await;
    running
        .wait_for(
            "failing on the untrusted certificate",
            Duration::from_secs(20),
            |m| {
                m.sum(
                    "heartbeat_connection_failures_total",
                    &[("reason", "certificate_untrusted")],
                ) >= 1.0
            },
        )
        .await;
    // The clients, too, are refused: metadata fails, again and again, and nothing gets through.
    let failing = running
        .wait_for("metadata refused", Duration::from_secs(20), |m| {
            m.sum("heartbeat_metadata_refresh_failures_total", &[]) >= 2.0
        })
        .await;
    assert_eq!(failing.sum("heartbeat_up", &[]), 0.0);
    assert_eq!(failing.sum("heartbeat_messages_consumed_total", &[]), 0.0);
    drop(stunnel);
    let _stunnel = Stunnel::start(dir.path(), &valid.pem, cluster.tls_port, cluster.plain_port);
    running.wait_for_heartbeats(3.0).await;
    assert_eq!(running.metrics().await.sum("heartbeat_up", &[]), 1.0);
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_names_the_broker_by_sni() {
    // stunnel presents the trusted certificate only to a client that asks for "localhost" by
    // SNI; anyone else gets an untrusted one.
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let untrusted = authority.issue(Kind::Untrusted);
    let valid = authority.issue(Kind::Valid);
    let cluster = TlsCluster::start_advertising("localhost");
    let _stunnel = Stunnel::start_with_sni(
        dir.path(),
        &untrusted.pem,
        Some(("localhost", &valid.pem)),
        cluster.tls_port,
        cluster.plain_port,
    );
    let config = cluster.config_for(
        &format!("localhost:{}", cluster.tls_port),
        &authority.ca_file,
    );
    let running = Running::start(config).await;
    let metrics = running
        .wait_for(
            "a verified TLS check of broker 1",
            Duration::from_secs(30),
            |m| {
                m.sum(
                    "heartbeat_connection_phase_seconds_count",
                    &[("broker", "1"), ("phase", "tls")],
                ) >= 1.0
            },
        )
        .await;
    assert_eq!(
        metrics.sum("heartbeat_connection_failures_total", &[("phase", "tls")]),
        0.0,
        "{}",
        metrics.text
    );
    let expiry = metrics.sum(
        "heartbeat_broker_certificate_expiry_timestamp_seconds",
        &[("broker", "1")],
    );
    assert!((expiry - not_after_unix(&valid.certificate)).abs() <= 1.0);
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_port_is_a_handshake_failure() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let cluster = TlsCluster::start();
    // TLS configured, but the address answers in plaintext Kafka.
    let config = cluster.config_for(
        &format!("127.0.0.1:{}", cluster.plain_port),
        &authority.ca_file,
    );
    let running = Running::start(config).await;
    let metrics = running
        .wait_for("a handshake failure", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_connection_failures_total",
                &[
                    ("broker", "bootstrap-0"),
                    ("phase", "tls"),
                    ("reason", "handshake"),
                ],
            ) >= 1.0
        })
        .await;
    assert_eq!(metrics.sum("heartbeat_up", &[]), 0.0);
    assert!(running.stop().await);
}

/// A PEM text as an INI value: continuation lines indented.
fn ini_value(pem: &[u8]) -> String {
    String::from_utf8_lossy(pem)
        .trim_end()
        .replace('\n', "\n    ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_requiring_client_certificates_is_checked_with_every_key_form() {
    use openssl::pkcs12::Pkcs12;
    use openssl::symm::Cipher;
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let server = authority.issue(Kind::Valid);
    let client = authority.issue(Kind::Valid);
    let cluster = TlsCluster::start();
    let _stunnel = Stunnel::start_verifying_clients(
        dir.path(),
        &server.pem,
        &authority.ca_file,
        cluster.tls_port,
        cluster.plain_port,
    );
    let certificate = dir.path().join("client-certificate.pem");
    std::fs::write(&certificate, client.certificate.to_pem().unwrap()).unwrap();
    let encrypted_key = dir.path().join("client-key.pem");
    let key_pem = client
        .key
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"key-secret")
        .unwrap();
    std::fs::write(&encrypted_key, key_pem).unwrap();
    let keystore = dir.path().join("client.p12");
    let archive = Pkcs12::builder()
        .name("client")
        .pkey(&client.key)
        .cert(&client.certificate)
        .build2("store-secret")
        .unwrap();
    std::fs::write(&keystore, archive.to_der().unwrap()).unwrap();
    let forms = [
        format!(
            "ssl.certificate.location = {}\nssl.key.location = {}\nssl.key.password = key-secret\n",
            certificate.display(),
            encrypted_key.display()
        ),
        format!(
            "ssl.certificate.pem = {}\nssl.key.pem = {}\n",
            ini_value(&client.certificate.to_pem().unwrap()),
            ini_value(&client.key.private_key_to_pem_pkcs8().unwrap())
        ),
        format!(
            "ssl.keystore.location = {}\nssl.keystore.password = store-secret\n",
            keystore.display()
        ),
    ];
    let configured = |identity: &str| {
        let text = test_ini(&format!("127.0.0.1:{}", cluster.tls_port), TOPIC, "").replace(
            "[producer]",
            &format!(
                "security.protocol = SSL\nssl.ca.location = {}\n{identity}[producer]",
                authority.ca_file.display()
            ),
        );
        cc_heartbeat::config::Config::from_ini(&text, Path::new("mtls.ini"), std::iter::empty())
            .unwrap()
    };
    for identity in &forms {
        let running = Running::start(configured(identity)).await;
        let metrics = running
            .wait_for(
                "a TLS check and heartbeats with the client's certificate",
                Duration::from_secs(30),
                |m| {
                    m.sum(
                        "heartbeat_connection_phase_seconds_count",
                        &[("broker", "1"), ("phase", "tls")],
                    ) >= 1.0
                        && m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
                },
            )
            .await;
        assert_eq!(
            metrics.sum("heartbeat_connection_failures_total", &[]),
            0.0,
            "{identity}\n{}",
            metrics.text
        );
        assert!(running.stop().await);
    }
    // Without one, the check is refused in its TLS phase: the verification is real.
    let running = Running::start(configured("")).await;
    running
        .wait_for("the TLS check refused", Duration::from_secs(30), |m| {
            m.sum("heartbeat_connection_failures_total", &[("phase", "tls")]) >= 1.0
        })
        .await;
    assert!(running.stop().await);
}
