//! The connectivity task: a timed connection to every broker's advertised address, all
//! brokers at once, each bounded by `check.connectivity.timeout.seconds`.
//!
//! Brokers reported missing are still checked at their last known address, since that is where
//! an operator will look; before the cluster has ever answered, the bootstrap servers are
//! checked instead, so a wrong address, a firewall or a bad certificate shows up at once.
//!
//! - [`check`]: one broker's check (DNS, TCP, TLS), timed phase by phase;
//! - [`tls`]: the TLS handshake, verified as librdkafka verifies it;
//! - [`outcome`]: the phases and failure reasons (the `phase` and `reason` labels);
//! - [`metrics`]: this task's series, per broker.

mod check;
mod metrics;
mod outcome;
mod tls;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::tls::TlsSetupError;

use self::check::{check_broker, parse_bootstrap_servers, Resolver};
use self::metrics::ConnectivityMetrics;
use self::outcome::{CheckFailure, CheckSuccess};
use self::tls::TlsCheck;
use crate::clock::unix_seconds;
use crate::cluster::Broker;
use crate::logging::LogThrottle;
use crate::recorder::observed::{Connection, ConnectionFailure};
use crate::shared::ClusterShared;

/// What a check round checks: a known broker, or a bootstrap server before any metadata.
#[derive(Debug, Clone)]
struct Target {
    /// The `broker` label: the broker id, or `bootstrap-N` for the N-th bootstrap server.
    label: String,
    broker_id: Option<i32>,
    host: String,
    port: u16,
    listed: bool,
}

impl Target {
    fn broker(broker: &Broker) -> Self {
        Target {
            label: broker.id.to_string(),
            broker_id: Some(broker.id),
            host: broker.host.clone(),
            port: broker.port,
            listed: broker.missing_since.is_none(),
        }
    }

    fn address(&self) -> String {
        Broker {
            id: -1,
            host: self.host.clone(),
            port: self.port,
            rack: None,
            missing_since: None,
        }
        .address()
    }
}

fn bootstrap_label(index: usize) -> String {
    format!("bootstrap-{index}")
}

/// The connectivity task of one cluster.
pub(crate) struct ConnectivityChecker {
    shared: Arc<ClusterShared>,
    metrics: Arc<ConnectivityMetrics>,
    throttle: Arc<LogThrottle>,
    resolver: Resolver,
    tls: Option<Arc<TlsCheck>>,
    bootstrap: Vec<(String, u16)>,
}

impl ConnectivityChecker {
    /// The task for the cluster of `shared`; its TLS check is set up from the client
    /// properties (none when `security.protocol` uses no TLS).
    pub(crate) fn new(shared: &Arc<ClusterShared>) -> Result<Self, TlsSetupError> {
        let properties = shared.config.admin_properties();
        let tls = TlsCheck::from_properties(&properties)?;
        let bootstrap = properties
            .get("bootstrap.servers")
            .map(|servers| parse_bootstrap_servers(servers))
            .unwrap_or_default();
        let metrics = Arc::new(ConnectivityMetrics::new(
            shared.config.admin.check_connectivity_timeout,
        ));
        shared.recorder.metrics().add(metrics.clone());
        Ok(ConnectivityChecker {
            shared: shared.clone(),
            metrics,
            throttle: Arc::new(LogThrottle::default()),
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
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_connectivity_period);
        // Checks stay on their grid; a round that overran does not cause a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = self.shared.recorder.subscribe();
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
            let snapshot = self.shared.snapshot();
            checked = snapshot.brokers.keys().copied().collect();
            let targets: Vec<Target> = if snapshot.refreshed_at.is_some() {
                if bootstrap_series {
                    // The cluster answered: the brokers' own series take over.
                    for index in 0..self.bootstrap.len() {
                        self.metrics.forget_broker(&bootstrap_label(index));
                    }
                    self.shared
                        .recorder
                        .observed()
                        .retain_connections(|target| !target.starts_with("bootstrap-"));
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
        let mut view = self.shared.recorder.subscribe();
        let mut known: BTreeSet<i32> = BTreeSet::new();
        loop {
            let snapshot = view.borrow_and_update().clone();
            for broker in snapshot.brokers.values() {
                if broker.missing_since.is_some() {
                    self.metrics.mark_missing(&broker.id.to_string());
                }
            }
            let now_known: BTreeSet<i32> = snapshot.brokers.keys().copied().collect();
            for forgotten in known.difference(&now_known) {
                self.metrics.forget_broker(&forgotten.to_string());
                let label = forgotten.to_string();
                self.shared
                    .recorder
                    .observed()
                    .retain_connections(|target| target != label);
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
        let timeout = self.shared.config.admin.check_connectivity_timeout;
        let mut checks = JoinSet::new();
        for target in targets {
            let shared = self.shared.clone();
            let metrics = self.metrics.clone();
            let throttle = self.throttle.clone();
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
                    record(&shared, &metrics, &throttle, &target, tls.is_some(), result);
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
        let problem = (checked > 0 && failures.len() == checked).then(|| {
            failures.sort();
            failures.join("; ")
        });
        self.shared.recorder.status().lock().connection_problem = problem;
    }
}

/// One check's result, for the status page and the one-shot check.
fn observation(target: &Target, result: &Result<CheckSuccess, CheckFailure>) -> Connection {
    let (phases, certificate, failure, seconds) = match result {
        Ok(success) => (
            success.phases.as_slice(),
            success.certificate.clone(),
            None,
            Some(success.total.as_secs_f64()),
        ),
        Err(failure) => (
            &[][..],
            failure.certificate.clone(),
            Some(ConnectionFailure {
                phase: failure.phase.as_str(),
                reason: failure.reason.as_str(),
                detail: failure.detail.clone(),
            }),
            None,
        ),
    };
    Connection {
        target: target.label.clone(),
        broker_id: target.broker_id,
        address: target.address(),
        checked_at: unix_seconds(),
        ok: result.is_ok(),
        seconds,
        phases: phases
            .iter()
            .map(|(phase, took)| (phase.as_str(), took.as_secs_f64()))
            .collect(),
        certificate,
        failure,
        last_failure: None,
    }
}

/// Records one check's result in the series and, throttled, in the log.
fn record(
    shared: &ClusterShared,
    metrics: &ConnectivityMetrics,
    throttle: &LogThrottle,
    target: &Target,
    tls: bool,
    result: Result<CheckSuccess, CheckFailure>,
) {
    if let Some(id) = target.broker_id {
        if !shared.snapshot().brokers.contains_key(&id) {
            // Forgotten while its check ran: recording now would bring back its removed series.
            return;
        }
    }
    metrics.init_broker(&target.label, tls);
    metrics.record(&target.label, target.listed, &result);
    shared
        .recorder
        .observed()
        .connection(observation(target, &result));
    let failing_key = format!("broker {} failing", target.label);
    match result {
        Ok(success) => {
            if let Some(spell) = throttle.reset(&failing_key) {
                tracing::info!(
                    broker = %target.label,
                    address = %target.address(),
                    failed = spell.counted,
                    "connection checks succeed again, {} after the first failure ({} failed)",
                    spell.seconds(),
                    spell.counted
                );
            }
            let addresses_key = format!("broker {} addresses", target.label);
            if success.unreachable_addresses.is_empty() {
                throttle.reset(&addresses_key);
            } else if let Some(held_back) = throttle.admit(&addresses_key) {
                // Clients trying these first wait on them before they connect.
                tracing::warn!(
                    broker = %target.label,
                    address = %target.address(),
                    held_back,
                    "connected, but not through every address of {}: {}",
                    target.host,
                    success.unreachable_addresses.join("; ")
                );
            }
            if let Some(expiry) = success
                .certificate
                .as_ref()
                .and_then(|certificate| certificate.expires_at)
            {
                let days = (expiry - unix_seconds()) / 86_400.0;
                if days < 14.0
                    && throttle
                        .admit(&format!("broker {} expiry", target.label))
                        .is_some()
                {
                    tracing::warn!(broker = %target.label, address = %target.address(), "the broker's TLS certificate expires in {days:.1} days");
                }
            }
        }
        Err(failure) => {
            if let Some(held_back) = throttle.admit(&failing_key) {
                tracing::warn!(
                    broker = %target.label,
                    address = %target.address(),
                    phase = failure.phase.as_str(),
                    reason = failure.reason.as_str(),
                    held_back,
                    "connection check failed: {}",
                    failure.detail
                );
            }
        }
    }
}
