//! `--web.config.file`: the endpoints over TLS with basic authentication and client
//! certificates, as Prometheus scrapes them (a real Prometheus, certificates this test issues),
//! `/healthz` open, the healthcheck subcommand over TLS, and a broken file refused.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::prometheus::Prometheus;
use support::tls::{free_port, Authority, Issued, Kind};
use support::*;

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-s3cret";

/// The demo exporter with this web configuration.
fn exporter(web_config: &Path) -> (Process, String) {
    let port = free_port();
    let process = Process::start(
        &[
            "--demo",
            "--config",
            "/no/such/config.ini",
            "--web.config.file",
            web_config.to_str().unwrap(),
        ],
        &[
            ("CC_HEARTBEAT__ADMIN__METRICS_LISTENER_HOST", "127.0.0.1"),
            (
                "CC_HEARTBEAT__ADMIN__METRICS_LISTENER_PORT",
                &port.to_string(),
            ),
        ],
    );
    (process, format!("127.0.0.1:{port}"))
}

/// An HTTPS client trusting the test CA, with a client certificate if given.
fn client(authority: &Authority, identity: Option<&Issued>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&authority.ca_file).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5));
    if let Some(issued) = identity {
        let certificate = issued.certificate.to_pem().unwrap();
        let key = issued.key.private_key_to_pem_pkcs8().unwrap();
        builder = builder.identity(reqwest::Identity::from_pkcs8_pem(&certificate, &key).unwrap());
    }
    builder.build().unwrap()
}

/// Waits until the exporter answers `/healthz` over HTTPS.
async fn until_serving(client: &reqwest::Client, address: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .get(format!("https://{address}/healthz"))
            .send()
            .await;
        if answer.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "no answer on https://{address}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Prometheus scraping `target` with each job given (name, the job's YAML past its name).
fn prometheus(dir: &Path, target: &str, jobs: &[(&str, String)]) -> Prometheus {
    let mut config =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n".to_string();
    for (name, settings) in jobs {
        config += &format!(
            "  - job_name: {name}\n    scheme: https\n    static_configs:\n      - targets: [\"{target}\"]\n{settings}"
        );
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    Prometheus::start(dir)
}

/// Waits until every job's target has been scraped once, then gives (health, last error) by job.
async fn targets(prometheus: &Prometheus, jobs: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = async {
            let body = reqwest::get(format!("http://{}/api/v1/targets", prometheus.address))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let body: Value = serde_json::from_str(&body).ok()?;
            let targets: Vec<(String, String, String)> = body["data"]["activeTargets"]
                .as_array()?
                .iter()
                .map(|target| {
                    (
                        target["labels"]["job"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        target["health"].as_str().unwrap_or_default().to_string(),
                        target["lastError"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (targets.len() == jobs && targets.iter().all(|(_, health, _)| health != "unknown"))
                .then_some(targets)
        };
        if let Some(mut targets) = answer.await {
            targets.sort();
            return targets;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped every job"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn healthcheck(web_config: &Path, address: &str) -> Option<i32> {
    binary()
        .args(["--config", "/no/such/config.ini", "--web.config.file"])
        .arg(web_config)
        .args(["healthcheck", "--address", address])
        .status()
        .unwrap()
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_over_tls_lets_prometheus_in_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let server = authority.issue(Kind::Valid);
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {pem}\n  key_file: {pem}\nbasic_auth_users:\n  {USER}: {hash}\n",
            pem = server.pem.display(),
            hash = bcrypt::hash(PASSWORD, 6).unwrap()
        ),
    )
    .unwrap();
    let (mut process, address) = exporter(&web_config);
    let https = client(&authority, None);
    until_serving(&https, &address).await;
    assert!(process
        .wait_for_line("serving metrics on https://", Duration::from_secs(5))
        .contains(&address));

    // The right user gets every endpoint; a wrong password, an unknown user and no user get
    // one and the same 401.
    for path in ["/metrics", "/ready", "/api/status", "/", "/debug/events"] {
        let url = format!("https://{address}{path}");
        let allowed = https
            .get(&url)
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_ne!(allowed.status(), 401, "{path}");
        let mut refusals = Vec::new();
        for request in [
            https.get(&url).basic_auth(USER, Some("wrong")),
            https.get(&url).basic_auth("someone", Some(PASSWORD)),
            https.get(&url),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path}");
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_string();
            refusals.push((challenge, response.text().await.unwrap()));
        }
        assert!(
            refusals.windows(2).all(|pair| pair[0] == pair[1]),
            "{refusals:?}"
        );
        assert!(refusals[0].0.starts_with("Basic"), "{refusals:?}");
    }
    // /healthz stays open, for probes; plain HTTP gets nothing.
    let healthz = https
        .get(format!("https://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    assert!(reqwest::get(format!("http://{address}/metrics"))
        .await
        .is_err());
    assert_eq!(healthcheck(&web_config, &address), Some(0));

    // A real Prometheus: up with the credentials, refused without or with wrong ones.
    let ca = authority.ca_file.display();
    let jobs = [
        (
            "with_credentials",
            format!("    tls_config: {{ca_file: {ca}}}\n    basic_auth: {{username: {USER}, password: {PASSWORD}}}\n"),
        ),
        (
            "wrong_password",
            format!("    tls_config: {{ca_file: {ca}}}\n    basic_auth: {{username: {USER}, password: nope}}\n"),
        ),
        ("no_credentials", format!("    tls_config: {{ca_file: {ca}}}\n")),
    ];
    let prometheus = prometheus(dir.path(), &address, &jobs);
    let targets = targets(&prometheus, jobs.len()).await;
    assert_eq!(targets[0].0, "no_credentials");
    assert_eq!(targets[0].1, "down");
    assert!(targets[0].2.contains("401"), "{targets:?}");
    assert_eq!(
        (targets[1].0.as_str(), targets[1].1.as_str()),
        ("with_credentials", "up"),
        "{targets:?}"
    );
    assert_eq!(
        (targets[2].0.as_str(), targets[2].1.as_str()),
        ("wrong_password", "down"),
        "{targets:?}"
    );
    assert!(targets[2].2.contains("401"), "{targets:?}");
    // A certificate rotated in place (cert-manager, a rotated Secret) is served to the next
    // connection, without a restart.
    let before = presented(&address);
    assert_eq!(before, server.certificate.to_der().unwrap());
    let rotated = authority.issue(Kind::Valid);
    assert_eq!(rotated.pem, server.pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(&address) != rotated.certificate.to_der().unwrap() {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = https
        .get(format!("https://{address}/metrics"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_signed_by_the_ca_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let server = authority.issue(Kind::Valid);
    let scraper = authority.issue(Kind::Expired);
    let stranger = authority.issue(Kind::Untrusted);
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {pem}\n  key_file: {pem}\n  client_ca_file: {ca}\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS12\n",
            pem = server.pem.display(),
            ca = authority.ca_file.display(),
        ),
    )
    .unwrap();
    let (mut process, address) = exporter(&web_config);
    // The server's own certificate, signed by the CA, is a client certificate too.
    let trusted = client(&authority, Some(&server));
    until_serving(&trusted, &address).await;
    let metrics = trusted
        .get(format!("https://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // No certificate, one no trusted CA signed, an expired one: no handshake.
    for identity in [None, Some(&stranger), Some(&scraper)] {
        let refused = client(&authority, identity)
            .get(format!("https://{address}/healthz"))
            .send()
            .await;
        assert!(refused.is_err(), "{refused:?}");
    }
    // The healthcheck presents the server's certificate.
    assert_eq!(healthcheck(&web_config, &address), Some(0));
    // A client resuming its TLS session (curl, browsers and Java do) is let in again.
    let resumed = resume_session(&authority, &server, &address);
    assert!(resumed, "the second connection did not resume the session");

    let ca = authority.ca_file.display();
    let client_pem = server.pem.display();
    let jobs = [
        (
            "with_certificate",
            format!("    tls_config: {{ca_file: {ca}, cert_file: {client_pem}, key_file: {client_pem}}}\n"),
        ),
        ("without_certificate", format!("    tls_config: {{ca_file: {ca}}}\n")),
    ];
    let prometheus = prometheus(dir.path(), &address, &jobs);
    let targets = targets(&prometheus, jobs.len()).await;
    assert_eq!(
        (targets[0].0.as_str(), targets[0].1.as_str()),
        ("with_certificate", "up"),
        "{targets:?}"
    );
    assert_eq!(
        (targets[1].0.as_str(), targets[1].1.as_str()),
        ("without_certificate", "down"),
        "{targets:?}"
    );
    let (_, code) = process.terminate();
    assert_eq!(code, Some(0));
}

/// The certificate the server at `address` presents, as DER (not verified: only looked at).
fn presented(address: &str) -> Vec<u8> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let tcp = std::net::TcpStream::connect(address).unwrap();
    let stream = builder
        .build()
        .connect("localhost", tcp)
        .expect("handshake");
    let certificate = stream.ssl().peer_certificate().expect("a certificate");
    certificate.to_der().unwrap()
}

/// Two connections with a client certificate (`openssl s_client`, over TLS 1.2 where the
/// session comes with the handshake), the second offering the first's session: whether it was
/// resumed. Before the server had a session id context, that second handshake failed.
fn resume_session(authority: &Authority, identity: &Issued, address: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session.pem");
    let mut said = Vec::new();
    for flag in ["-sess_out", "-sess_in"] {
        let mut child = Command::new("openssl")
            .args([
                "s_client", "-tls1_2", "-ign_eof", "-connect", address, "-CAfile",
            ])
            .arg(&authority.ca_file)
            .arg("-cert")
            .arg(&identity.pem)
            .arg("-key")
            .arg(&identity.pem)
            .arg(flag)
            .arg(&session)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl (scripts/install-deps.sh installs it)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        said.push(String::from_utf8_lossy(&output.stdout).to_string());
    }
    for out in &said {
        let handshake: Vec<&str> = out
            .lines()
            .filter(|line| line.contains("TLSv1.2, Cipher") || line.contains("handshake has"))
            .collect();
        assert!(out.contains("HTTP/1.1 200"), "{handshake:?}");
    }
    said[1].contains("Reused, TLSv1.2")
}

/// A broken web configuration stops the start with exit 2, naming the key.
#[test]
fn a_broken_web_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, said) in [
        (
            "basic_auth_users:\n  alice: not-a-hash\n",
            "basic_auth_users.alice",
        ),
        (
            "tls_server_config:\n  cert_file: /no/such.pem\n  key_file: /no/such.pem\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  certfile: a\n",
            "unknown field `certfile`",
        ),
    ] {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        let output = binary()
            .args([
                "--demo",
                "--config",
                "/no/such/config.ini",
                "--web.config.file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(said) && stderr.contains("web.yml"),
            "{text}: {stderr}"
        );
    }
    let output = binary()
        .args(["--demo", "--web.config.file", "/no/such/web.yml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/web.yml"));
}
