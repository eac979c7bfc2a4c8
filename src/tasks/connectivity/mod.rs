//! The connectivity task: a timed connection to every broker's advertised address, all
//! brokers at once, each bounded by `check.connectivity.timeout.seconds`.
//!
//! Brokers reported missing are still checked at their last known address, since that is where
//! an operator will look; before the cluster has ever answered, the bootstrap servers are
//! checked instead, so a wrong address, a firewall or a bad certificate shows up at once.
//!
//! - [`check`]: one broker's check (DNS, TCP, TLS), timed phase by phase;
//! - [`tls`]: the TLS handshake, verified as librdkafka verifies it.
//!
//! What a check found goes to the recorder (`crate::recorder::connectivity`), which owns the
//! phases and failure reasons, the series, and what the log says of them.

mod check;
mod tls;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::tls::TlsSetupError;

use self::check::{check_broker, parse_bootstrap_servers, Resolver};
use self::tls::TlsCheck;
use crate::config::Config;
use crate::recorder::connectivity::{
    BrokerMissing, ConnectionChecked, ConnectionRound, Target, TargetForgotten,
};
use crate::recorder::Recorder;

fn bootstrap_label(index: usize) -> String {
    format!("bootstrap-{index}")
}

/// The connectivity task of one cluster.
pub(crate) struct ConnectivityChecker {
    recorder: Arc<Recorder>,
    /// `check.connectivity.period.seconds`.
    period: Duration,
    /// `check.connectivity.timeout.seconds`, for each check.
    timeout: Duration,
    resolver: Resolver,
    tls: Option<Arc<TlsCheck>>,
    bootstrap: Vec<(String, u16)>,
}

impl ConnectivityChecker {
    /// The task for the cluster `config` configures; its TLS check is set up from the client
    /// properties (none when `security.protocol` uses no TLS).
    pub(crate) fn new(config: &Config, recorder: &Arc<Recorder>) -> Result<Self, TlsSetupError> {
        let properties = config.admin_properties();
        let tls = TlsCheck::from_properties(&properties)?;
        let bootstrap = properties
            .get("bootstrap.servers")
            .map(|servers| parse_bootstrap_servers(servers))
            .unwrap_or_default();
        Ok(ConnectivityChecker {
            recorder: recorder.clone(),
            period: config.admin.check_connectivity_period,
            timeout: config.admin.check_connectivity_timeout,
            resolver: Resolver::default(),
            tls: tls.map(Arc::new),
            bootstrap,
        })
    }

    /// Checks every broker each `check.connectivity.period.seconds`, and at once when the set
    /// of known brokers changes, until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.check_rounds() => {}
            _ = self.follow_brokers() => {}
        }
    }

    async fn check_rounds(&self) {
        let mut interval = tokio::time::interval(self.period);
        // Checks stay on their grid; a round that overran does not cause a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = self.recorder.subscribe();
        let mut checked: Vec<i32> = Vec::new();
        let mut bootstrap_series = false;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = view.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let known: Vec<i32> = view.borrow_and_update().brokers.keys().copied().collect();
                    if known == checked {
                        continue;
                    }
                }
            }
            let snapshot = self.recorder.snapshot();
            checked = snapshot.brokers.keys().copied().collect();
            let targets: Vec<Target> = if snapshot.refreshed_at.is_some() {
                if bootstrap_series {
                    // The cluster answered: the brokers' own series take over.
                    for index in 0..self.bootstrap.len() {
                        self.recorder.record(TargetForgotten {
                            label: bootstrap_label(index),
                        });
                    }
                    bootstrap_series = false;
                }
                snapshot.brokers.values().map(Target::broker).collect()
            } else {
                bootstrap_series = true;
                self.bootstrap
                    .iter()
                    .enumerate()
                    .map(|(index, (host, port))| Target {
                        label: bootstrap_label(index),
                        broker_id: None,
                        host: host.clone(),
                        port: *port,
                        listed: true,
                    })
                    .collect()
            };
            self.check_all(targets).await;
        }
    }

    /// Follows metadata as it comes, between and during rounds: a broker that goes missing is
    /// down at once, and one forgotten after the retention loses its series.
    async fn follow_brokers(&self) {
        let mut view = self.recorder.subscribe();
        let mut known: BTreeSet<i32> = BTreeSet::new();
        loop {
            let snapshot = view.borrow_and_update().clone();
            for broker in snapshot.brokers.values() {
                if broker.missing_since.is_some() {
                    self.recorder.record(BrokerMissing { broker: broker.id });
                }
            }
            let now_known: BTreeSet<i32> = snapshot.brokers.keys().copied().collect();
            for forgotten in known.difference(&now_known) {
                self.recorder.record(TargetForgotten {
                    label: forgotten.to_string(),
                });
            }
            known = now_known;
            if view.changed().await.is_err() {
                return;
            }
        }
    }

    /// One round: every target concurrently; returns when all have finished. When every
    /// target failed, what they failed on becomes a readiness cause.
    async fn check_all(&self, targets: Vec<Target>) {
        let timeout = self.timeout;
        let mut checks = JoinSet::new();
        for target in targets {
            let recorder = self.recorder.clone();
            let resolver = self.resolver.clone();
            let tls = self.tls.clone();
            // Spawned checks log within this cluster's span.
            let span = tracing::Span::current();
            checks.spawn(
                async move {
                    let result = check_broker(
                        &resolver,
                        tls.as_deref(),
                        &target.host,
                        target.port,
                        timeout,
                    )
                    .await;
                    let failure = result.as_ref().err().map(|failure| {
                        format!(
                            "connection check of {} ({}): {failure}",
                            target.label,
                            target.address()
                        )
                    });
                    recorder.record(ConnectionChecked {
                        target,
                        tls: tls.is_some(),
                        result,
                    });
                    failure
                }
                .instrument(span),
            );
        }
        let mut failures = Vec::new();
        let mut checked = 0;
        while let Some(result) = checks.join_next().await {
            checked += 1;
            if let Ok(Some(failure)) = result {
                failures.push(failure);
            }
        }
        self.recorder.record(ConnectionRound { checked, failures });
    }
}
