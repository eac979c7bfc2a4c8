//! The connectivity task: a timed connection to every broker's advertised address, all
//! brokers at once, each bounded by `check.connectivity.timeout.seconds`.
//!
//! Each check times its phases separately: name resolution, the TCP handshake and, when the
//! cluster is reached over TLS, the TLS handshake (see [`crate::tls_check`]). The connection
//! time reported is what a client pays to open a connection, nothing after it exists. Brokers
//! reported missing are still checked at their last known address, since that is where an
//! operator will look; before the cluster has ever answered, the bootstrap servers are checked
//! instead, so a wrong address, a firewall or a bad certificate shows up at once.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::{unix_seconds, Broker, ClusterShared};
use crate::logging::LogThrottle;
use crate::metrics::{BrokerLabels, BrokerPhaseLabels, BrokerReasonLabels};
use crate::tls_check::TlsCheck;

/// The phase of a connection check; the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Name resolution.
    Dns,
    /// The TCP handshake.
    Tcp,
    /// The TLS handshake and certificate verification.
    Tls,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Dns, Phase::Tcp, Phase::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Tcp => "tcp",
            Phase::Tls => "tls",
        }
    }

    /// The reasons a check can fail for in this phase.
    pub fn reasons(self) -> &'static [FailureReason] {
        match self {
            Phase::Dns => &[
                FailureReason::Timeout,
                FailureReason::NameResolution,
                FailureReason::Other,
            ],
            Phase::Tcp => &[
                FailureReason::Timeout,
                FailureReason::Refused,
                FailureReason::Unreachable,
                FailureReason::Other,
            ],
            Phase::Tls => &[
                FailureReason::Timeout,
                FailureReason::Handshake,
                FailureReason::CertificateUntrusted,
                FailureReason::CertificateExpired,
                FailureReason::NameMismatch,
                FailureReason::Other,
            ],
        }
    }
}

/// Why a connection check failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No answer within the timeout.
    Timeout,
    /// The host answered with a reset: nothing listens on the port.
    Refused,
    /// The host name did not resolve.
    NameResolution,
    /// No route to the host or network.
    Unreachable,
    /// The TLS handshake failed (protocol, alert, not TLS at all).
    Handshake,
    /// The certificate does not chain to a trusted CA.
    CertificateUntrusted,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate is not for this host name.
    NameMismatch,
    /// Anything else.
    Other,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Refused => "refused",
            FailureReason::NameResolution => "name_resolution",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Handshake => "handshake",
            FailureReason::CertificateUntrusted => "certificate_untrusted",
            FailureReason::CertificateExpired => "certificate_expired",
            FailureReason::NameMismatch => "name_mismatch",
            FailureReason::Other => "other",
        }
    }

    fn from_io(error: &std::io::Error) -> Self {
        match error.kind() {
            ErrorKind::ConnectionRefused => FailureReason::Refused,
            ErrorKind::TimedOut => FailureReason::Timeout,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                FailureReason::Unreachable
            }
            _ => FailureReason::Other,
        }
    }
}

/// A failed check: in which phase, why, and the underlying message for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} failed in {} ({detail})", reason.as_str(), phase.as_str())]
pub struct CheckFailure {
    pub phase: Phase,
    pub reason: FailureReason,
    pub detail: String,
    /// The certificate's expiry, when a TLS check got that far.
    pub certificate_expiry: Option<f64>,
}

/// A successful check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSuccess {
    /// Time to an established (and, with TLS, verified) connection.
    pub total: Duration,
    /// Time of each phase.
    pub phases: Vec<(Phase, Duration)>,
    /// The certificate's expiry (Unix seconds), with TLS.
    pub certificate_expiry: Option<f64>,
}

/// Name lookups go through the system resolver on blocking threads, which a timeout cannot
/// stop. A host whose previous lookup is still running is not looked up again, so a hanging
/// resolver costs one thread per host, not one per host per round.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pending: Arc<Mutex<HashSet<(String, u16)>>>,
}

impl Resolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CheckFailure> {
        let failure = |reason, detail: String| CheckFailure {
            phase: Phase::Dns,
            reason,
            detail,
            certificate_expiry: None,
        };
        let key = (host.to_string(), port);
        if !self.lock().insert(key.clone()) {
            return Err(failure(
                FailureReason::Timeout,
                format!("the previous lookup of {host} has not finished"),
            ));
        }
        let pending = self.pending.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            let result = (key.0.as_str(), key.1)
                .to_socket_addrs()
                .map(Iterator::collect);
            pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&key);
            result
        });
        match lookup.await {
            Ok(Ok(addresses)) => Ok(addresses),
            Ok(Err(error)) => Err(failure(
                FailureReason::NameResolution,
                format!("{host}: {error}"),
            )),
            Err(error) => Err(failure(
                FailureReason::Other,
                format!("lookup of {host} failed: {error}"),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, u16)>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves `host`, opens a TCP connection to `port` (trying each address in turn as a client
/// would) and, with `tls`, completes a verified TLS handshake. Each phase is timed; the whole
/// check is bounded by `timeout`, and a timeout names the phase it cut short.
pub async fn check_broker(
    resolver: &Resolver,
    tls: Option<&TlsCheck>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<CheckSuccess, CheckFailure> {
    let start = Instant::now();
    // The phase in progress, readable after a timeout has dropped the attempt.
    let current = AtomicU8::new(0);
    let attempt = async {
        let mut phases = Vec::with_capacity(3);
        let addresses = resolver.resolve(host, port).await?;
        phases.push((Phase::Dns, start.elapsed()));
        current.store(1, Ordering::Relaxed);
        let connecting = Instant::now();
        let mut last = CheckFailure {
            phase: Phase::Dns,
            reason: FailureReason::NameResolution,
            detail: format!("{host} resolved to no address"),
            certificate_expiry: None,
        };
        let mut connected = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(error) => {
                    last = CheckFailure {
                        phase: Phase::Tcp,
                        reason: FailureReason::from_io(&error),
                        detail: format!("{address}: {error}"),
                        certificate_expiry: None,
                    }
                }
            }
        }
        let stream = connected.ok_or(last)?;
        phases.push((Phase::Tcp, connecting.elapsed()));
        let mut certificate_expiry = None;
        if let Some(tls) = tls {
            current.store(2, Ordering::Relaxed);
            let handshaking = Instant::now();
            certificate_expiry =
                tls.handshake(host, stream)
                    .await
                    .map_err(|failure| CheckFailure {
                        phase: Phase::Tls,
                        reason: failure.reason,
                        detail: failure.detail,
                        certificate_expiry: failure.certificate_expiry,
                    })?;
            phases.push((Phase::Tls, handshaking.elapsed()));
        }
        Ok(CheckSuccess {
            total: start.elapsed(),
            phases,
            certificate_expiry,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure {
            phase: Phase::ALL[usize::from(current.load(Ordering::Relaxed))],
            reason: FailureReason::Timeout,
            detail: format!("no connection within {}s", timeout.as_secs_f64()),
            certificate_expiry: None,
        }),
    }
}

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

/// `host:port` pairs from `bootstrap.servers` (protocol prefixes and IPv6 brackets allowed).
pub fn parse_bootstrap_servers(servers: &str) -> Vec<(String, u16)> {
    servers
        .split(',')
        .filter_map(|server| {
            let server = server.trim();
            let server = server.split_once("://").map_or(server, |(_, rest)| rest);
            let (host, port) = server.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

/// The connectivity task of one cluster.
pub struct ConnectivityChecker {
    shared: Arc<ClusterShared>,
    throttle: Arc<LogThrottle>,
    resolver: Resolver,
    tls: Option<Arc<TlsCheck>>,
    bootstrap: Vec<(String, u16)>,
}

impl ConnectivityChecker {
    pub fn new(shared: Arc<ClusterShared>, tls: Option<TlsCheck>) -> Self {
        let bootstrap = shared
            .config
            .admin_properties()
            .get("bootstrap.servers")
            .map(|servers| parse_bootstrap_servers(servers))
            .unwrap_or_default();
        ConnectivityChecker {
            shared,
            throttle: Arc::new(LogThrottle::default()),
            resolver: Resolver::default(),
            tls: tls.map(Arc::new),
            bootstrap,
        }
    }

    /// Checks every broker each `check.connectivity.period.seconds`, and at once when the set
    /// of known brokers changes, until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_connectivity_period);
        // Checks stay on their grid; a round that overran does not cause a burst.
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = self.shared.view.subscribe();
        let mut checked: Vec<i32> = Vec::new();
        let mut bootstrap_series = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
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
                        self.shared
                            .metrics
                            .forget_broker_label(&bootstrap_label(index));
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
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.check_all(targets) => {}
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
                    record(&shared, &throttle, &target, tls.is_some(), result);
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
        self.shared.status.lock().connection_problem = problem;
    }
}

fn bootstrap_label(index: usize) -> String {
    format!("bootstrap-{index}")
}

fn record(
    shared: &ClusterShared,
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
    let metrics = &shared.metrics;
    metrics.init_broker_label(&target.label, tls);
    let labels = BrokerLabels {
        broker: target.label.clone(),
    };
    metrics.connection_checks.get_or_create(&labels).inc();
    let failing_key = format!("broker {} failing", target.label);
    let certificate_expiry = match &result {
        Ok(success) => success.certificate_expiry,
        Err(failure) => failure.certificate_expiry,
    };
    if let Some(expiry) = certificate_expiry {
        metrics
            .certificate_expiry
            .get_or_create(&labels)
            .set(expiry);
    }
    match result {
        Ok(success) => {
            metrics
                .connection_seconds
                .get_or_create(&labels)
                .observe(success.total.as_secs_f64());
            for (phase, elapsed) in &success.phases {
                metrics
                    .connection_phase_seconds
                    .get_or_create(&BrokerPhaseLabels {
                        broker: target.label.clone(),
                        phase: phase.as_str().to_string(),
                    })
                    .observe(elapsed.as_secs_f64());
            }
            metrics
                .broker_up
                .get_or_create(&labels)
                .set(i64::from(target.listed));
            throttle.reset(&failing_key);
            if let Some(expiry) = certificate_expiry {
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
            metrics
                .connection_failures
                .get_or_create(&BrokerReasonLabels {
                    broker: target.label.clone(),
                    phase: failure.phase.as_str().to_string(),
                    reason: failure.reason.as_str().to_string(),
                })
                .inc();
            metrics.broker_up.get_or_create(&labels).set(0);
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn check_local(port: u16) -> Result<CheckSuccess, CheckFailure> {
        let timeout = Duration::from_secs(5);
        check_broker(&Resolver::default(), None, "127.0.0.1", port, timeout).await
    }

    #[tokio::test]
    async fn connects_to_a_listening_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let success = check_local(port).await.unwrap();
        let phases: Vec<Phase> = success.phases.iter().map(|(phase, _)| *phase).collect();
        assert_eq!(
            phases,
            vec![Phase::Dns, Phase::Tcp],
            "no TLS phase without TLS"
        );
        let sum: Duration = success.phases.iter().map(|(_, elapsed)| *elapsed).sum();
        assert!(sum <= success.total, "{success:?}");
        assert_eq!(success.certificate_expiry, None);
    }

    #[test]
    fn bootstrap_servers_are_parsed_like_librdkafka_does() {
        assert_eq!(
            parse_bootstrap_servers("a:9092, SASL_SSL://b.example.com:9093,[::1]:9094,bad"),
            vec![
                ("a".to_string(), 9092),
                ("b.example.com".to_string(), 9093),
                ("::1".to_string(), 9094)
            ]
        );
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let failure = check_local(port).await.unwrap_err();
        assert_eq!(failure.reason, FailureReason::Refused);
        assert_eq!(failure.phase, Phase::Tcp);
    }

    #[tokio::test]
    async fn unknown_name_is_a_resolution_failure() {
        let failure = check_broker(
            &Resolver::default(),
            None,
            "no-such-host.invalid",
            9092,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                failure.reason,
                FailureReason::NameResolution | FailureReason::Timeout
            ),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn unanswered_handshake_is_a_timeout() {
        // A listener whose accept queue is full drops new handshakes: the client hears nothing.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        // Each successful check leaves its (closed, never accepted) connection in the queue.
        let mut timed_out = None;
        for _ in 0..8 {
            let result = check_broker(
                &Resolver::default(),
                None,
                "127.0.0.1",
                address.port(),
                Duration::from_millis(300),
            )
            .await;
            if let Err(failure) = result {
                assert_eq!(failure.reason, FailureReason::Timeout, "{failure}");
                timed_out = Some(failure);
                break;
            }
        }
        assert!(timed_out.is_some(), "the handshake never timed out");
        drop(socket);
    }
}
