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

/// Every query of every panel of the dashboard, with the variables substituted.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grafana/dashboards/cc-heartbeat.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$cluster", ".*")
                .replace("$broker", ".*")
                .replace("$group", ".*")
                .replace("$__rate_interval", "1m");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    queries
}

/// Waits until the panel `title`'s query `expr` answers with at least one series.
pub async fn panel_has_data(prometheus: &Prometheus, title: &str, expr: &str) {
    eventually(
        &format!("data for panel {title:?}: {expr}"),
        Duration::from_secs(60),
        async || {
            let data = api(prometheus, "/api/v1/query", &[("query", expr)])
                .await
                .ok_or("query failed")?;
            if data["result"]
                .as_array()
                .is_some_and(|result| !result.is_empty())
            {
                Ok(())
            } else {
                Err(format!("{data}"))
            }
        },
    )
    .await;
}
