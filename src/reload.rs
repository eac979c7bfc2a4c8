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
use crate::config::{CommandLineSetting, Config, Shard};

/// How often the credentials files are read for a change.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Where the configuration is read from again.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub environment: Vec<(String, String)>,
    /// Settings given as command-line options, over the file and the environment.
    pub command_line: Vec<CommandLineSetting>,
    /// The share of the clusters this instance monitors.
    pub shard: Shard,
    /// The one cluster `--cluster` chose, if it chose one.
    pub cluster: Option<String>,
}

impl Source {
    /// The configuration read again: the clusters this instance monitors.
    fn load(&self) -> Result<Vec<Config>, crate::config::ConfigError> {
        let configs =
            Config::load_clusters(&self.path, self.environment.clone(), &self.command_line)?;
        Ok(match &self.cluster {
            Some(name) => configs
                .into_iter()
                .filter(|config| &config.name == name)
                .collect(),
            None => Config::in_shard(configs, self.shard),
        })
    }
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
    let mut contents = read_all(files).await;
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
        let watched: Vec<PathBuf> = contents.keys().cloned().collect();
        let (why, before) = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = signalled => ("SIGHUP", read_all(watched).await),
            _ = poll.tick() => {
                let now = read_all(watched).await;
                if now == contents {
                    continue;
                }
                ("a credentials file changed", now)
            }
        };
        // What was read before the reload is the baseline: a file written again while the
        // configuration is read is a change still to come.
        contents = before;
        let loaded = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || source.load()).await
        };
        let Ok(loaded) = loaded else {
            continue;
        };
        if let Some(configs) = apply(app, loaded, why) {
            let files: Vec<PathBuf> = configs
                .iter()
                .flat_map(|config| config.secret_files.iter().cloned())
                .collect();
            // Files newly named are read now; those already watched keep their baseline.
            let new: Vec<PathBuf> = files
                .iter()
                .filter(|path| !contents.contains_key(*path))
                .cloned()
                .collect();
            contents.retain(|path, _| files.contains(path));
            contents.extend(read_all(new).await);
        }
    }
}

/// Applies the configuration read again; the configurations, when they validate.
fn apply(
    app: &App,
    loaded: Result<Vec<Config>, crate::config::ConfigError>,
    why: &str,
) -> Option<Vec<Config>> {
    match loaded {
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

/// Each file's content (`None` while unreadable, or not a small regular file), read on a
/// blocking thread: a hung secrets mount must not hold a runtime worker.
async fn read_all(files: Vec<PathBuf>) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let read = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|path| {
                let content = std::fs::metadata(&path)
                    .ok()
                    .filter(|metadata| metadata.is_file() && metadata.len() <= 64 * 1024)
                    .and_then(|_| std::fs::read(&path).ok());
                (path, content)
            })
            .collect()
    });
    read.await.unwrap_or_default()
}
