//! A real Prometheus (Debian's `prometheus`) for the tests, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tls::free_port;

/// A Prometheus server, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Where its API listens (`127.0.0.1:PORT`).
    pub address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus reading `dir/prometheus.yml`, its data in `dir/data`, on a free loopback port.
    pub fn start(dir: &Path) -> Prometheus {
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus not found: install Debian's prometheus (.ci/run does)");
        Prometheus { child, address }
    }

    /// Prometheus with the project's own configuration and rules (`prometheus/`), scraping
    /// `target` (`host:port`); only the target and the intervals (1 s) adapted.
    pub fn with_shipped_rules(dir: &Path, target: &str) -> Prometheus {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus");
        let config = std::fs::read_to_string(root.join("prometheus.yml"))
            .unwrap()
            .replace("cc-heartbeat:8080", target)
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        for entry in std::fs::read_dir(root.join("rules")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join("rules").join(path.file_name().unwrap())).unwrap();
        }
        Prometheus::start(dir)
    }
}

/// The `data` of a successful answer of Prometheus' HTTP API at `path`.
pub async fn api(prometheus: &Prometheus, path: &str, query: &[(&str, &str)]) -> Option<Value> {
    let response = reqwest::Client::new()
        .get(format!("http://{}{path}", prometheus.address))
        .query(query)
        .send()
        .await
        .ok()?;
    let body: Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
    (body["status"] == "success").then(|| body["data"].clone())
}

/// Waits until `check` holds for an API answer, or fails with the last answer.
pub async fn eventually(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Result<(), String>,
) {
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if start.elapsed() > limit => panic!("timed out waiting for {what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
