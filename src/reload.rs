//! Configuration reloads without a restart: on SIGHUP, and when a file credentials are read
//! from changes (`sasl.password.file`: a rotated Kubernetes secret, a rotated Confluent Cloud
//! API key), the configuration is read again and its SASL credentials go to the running
//! clients; counters and histograms go on. A configuration that does not validate is refused,
//! and the running one stays.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;

/// How often the credentials files are read for a change.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Where the configuration is read from again.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub environment: Vec<(String, String)>,
}

/// Reloads `app`'s configuration from `source` on SIGHUP and whenever one of `files` (the
/// credentials files of the configuration in force) changes, until cancelled.
pub async fn watch(app: &App, source: Source, files: Vec<PathBuf>, cancel: CancellationToken) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(
                "cannot listen for SIGHUP (reloads follow the credentials files only): {error}"
            );
            None
        }
    };
    let mut contents = read_all(&files);
    let mut poll = tokio::time::interval(FILE_POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = signalled => "SIGHUP",
            _ = poll.tick() => {
                let now = read_all(&contents.keys().cloned().collect::<Vec<_>>());
                if now == contents {
                    continue;
                }
                "a credentials file changed"
            }
        };
        if let Some(configs) = reload(app, &source, why) {
            let files = configs
                .iter()
                .flat_map(|config| config.secret_files.iter().cloned())
                .collect::<Vec<_>>();
            contents = read_all(&files);
        } else {
            // A file that is not readable now is read again at the next change.
            contents = read_all(&contents.keys().cloned().collect::<Vec<_>>());
        }
    }
}

/// Reads the configuration again and applies it; the configurations read, when they validate.
fn reload(app: &App, source: &Source, why: &str) -> Option<Vec<Config>> {
    match Config::load_clusters(&source.path, source.environment.clone()) {
        Ok(configs) => {
            crate::logging::mask_secrets(configs.iter().flat_map(Config::secret_values));
            for (cluster, what) in app.reload(configs.clone()) {
                tracing::info!(cluster, "configuration reloaded ({why}): {what}");
            }
            Some(configs)
        }
        Err(error) => {
            app.reload_refused();
            tracing::error!(
                "configuration reload ({why}) refused, the running configuration stays: {error}"
            );
            None
        }
    }
}

/// Each file's content (`None` while unreadable).
fn read_all(files: &[PathBuf]) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    files
        .iter()
        .map(|path| (path.clone(), std::fs::read(path).ok()))
        .collect()
}
