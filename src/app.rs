//! The running application: every cluster's monitor plus the HTTP server, started together and
//! stopped together on one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AdminSettings, Config};
use crate::http::web_config::{Tls, WebConfig};
use crate::http::{self, Extension, HttpState};
use crate::monitor::{links_of, ClusterMonitor, MonitorError, Purpose, Reloaded};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Listen(#[from] std::io::Error),
    #[error("--web.config.file: {0}")]
    Tls(String),
    #[error("cluster {cluster}: {source}")]
    Monitor {
        cluster: String,
        source: MonitorError,
    },
}

/// A started application.
pub struct App {
    monitors: Vec<ClusterMonitor>,
    server: JoinHandle<std::io::Result<()>>,
    address: SocketAddr,
}

impl App {
    /// Binds the HTTP listener (from the process-wide `[admin]` settings, `process`) and starts
    /// every cluster's tasks (none, on a shard that was given none). Everything stops when `cancel` is cancelled.
    /// `extension` routes (the demo control) are served beside the standard endpoints.
    pub async fn start(
        process: &AdminSettings,
        web: &WebConfig,
        configs: Vec<Config>,
        extension: Option<Extension>,
        cancel: CancellationToken,
    ) -> Result<App, StartError> {
        let listener = http::bind(
            &process.metrics_listener_host,
            process.metrics_listener_port,
        )
        .await?;
        let address = listener.local_addr()?;
        let tls = match &web.tls {
            Some(settings) => Some(Arc::new(
                Tls::new(settings.clone()).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        // The demo's control breaks the first embedded cluster.
        let demo_cluster = extension
            .as_ref()
            .and(configs.first())
            .map(|config| config.name.clone());
        let mut links = links_of(&configs);
        let mut monitors = Vec::with_capacity(configs.len());
        for config in configs {
            let cluster = config.name.clone();
            let links = links.remove(&cluster).unwrap_or_default();
            let monitor = ClusterMonitor::start(config, &cancel, Purpose::Export, links)
                .map_err(|source| StartError::Monitor { cluster, source })?;
            monitors.push(monitor);
        }
        let note = extension
            .as_ref()
            .map_or("", |extension| &extension.landing);
        let state = HttpState::new(
            monitors.iter().map(ClusterMonitor::handle).collect(),
            note,
            demo_cluster.as_deref(),
        );
        let mut router = http::router(state);
        if let Some(extension) = extension {
            router = router.merge(extension.routes);
        }
        let router = http::protect(router, web);
        let server = tokio::spawn(http::serve(listener, router, tls, cancel));
        Ok(App {
            monitors,
            server,
            address,
        })
    }

    /// Where the HTTP server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Takes a reloaded configuration's credentials into the running clusters (see
    /// [`ClusterMonitor::reload`]); a cluster added or removed takes a restart. Says what it
    /// did, per cluster.
    pub fn reload(&self, configs: Vec<Config>) -> Vec<(String, String)> {
        let mut by_name: std::collections::BTreeMap<String, Config> = configs
            .into_iter()
            .map(|config| (config.name.clone(), config))
            .collect();
        let mut said = Vec::new();
        for monitor in &self.monitors {
            let name = monitor.handle().current().config.name.clone();
            let what = match by_name.remove(&name) {
                None => "no longer configured: it is monitored until the next restart".to_string(),
                Some(config) => match monitor.reload(config) {
                    Reloaded::Unchanged => "credentials unchanged".to_string(),
                    Reloaded::Applied(clients) => {
                        format!("new credentials given to its {clients} clients")
                    }
                    Reloaded::Failed(why) => {
                        format!("new credentials refused, the running ones stay: {why}")
                    }
                },
            };
            said.push((name, what));
        }
        for name in by_name.into_keys() {
            said.push((
                name,
                "newly configured: monitored from the next restart".to_string(),
            ));
        }
        said
    }

    /// Counts a reload whose configuration did not validate, for every cluster.
    pub fn reload_refused(&self) {
        for monitor in &self.monitors {
            monitor.reload_refused();
        }
    }

    /// Waits, after cancellation, for every task to stop, at most `limit`; returns whether
    /// all stopped in time.
    pub async fn stopped(self, limit: Duration) -> bool {
        let all = async {
            for monitor in self.monitors {
                monitor.join().await;
            }
            if let Ok(Err(error)) = self.server.await {
                tracing::error!("HTTP server failed: {error}");
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }
}
