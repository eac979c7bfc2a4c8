//! A real Prometheus (Debian's `prometheus`) for the tests, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};

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
}
