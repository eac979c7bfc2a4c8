//! One broker's connection check: name resolution, the TCP handshake and, when the cluster is
//! reached over TLS, the TLS handshake (see [`super::tls`]), each phase timed, the whole
//! bounded by a timeout. The connection time reported is what a client pays to open a
//! connection, nothing after it exists.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::tls::TlsCheck;
use crate::recorder::connectivity::outcome::{CheckFailure, CheckSuccess, FailureReason, Phase};
use crate::sync::lock;

/// Name lookups go through the system resolver on blocking threads, which a timeout cannot
/// stop. A host whose previous lookup is still running is not looked up again, so a hanging
/// resolver costs one thread per host, not one per host per round; and at most
/// [`MAX_LOOKUPS`] run at once, so checking a hundred brokers does not start a hundred
/// threads. An address needs no lookup.
#[derive(Debug, Clone)]
pub(super) struct Resolver {
    pending: Arc<Mutex<HashSet<(String, u16)>>>,
    lookups: Arc<Semaphore>,
}

/// Name lookups running at once, per cluster.
const MAX_LOOKUPS: usize = 8;

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            pending: Arc::default(),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        }
    }
}

impl Resolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CheckFailure> {
        let failure = |reason, detail: String| CheckFailure {
            phase: Phase::Dns,
            reason,
            detail,
            certificate: None,
        };
        if let Ok(address) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(address, port)]);
        }
        let key = (host.to_string(), port);
        if !self.lock().insert(key.clone()) {
            return Err(failure(
                FailureReason::Timeout,
                format!("the previous lookup of {host} has not finished"),
            ));
        }
        let pending = self.pending.clone();
        // Never closed, so the permit always comes.
        let permit = self.lookups.clone().acquire_owned().await;
        let lookup = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = (key.0.as_str(), key.1)
                .to_socket_addrs()
                .map(Iterator::collect);
            lock(&pending).remove(&key);
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
        lock(&self.pending)
    }
}

/// Connects to the first of `addresses` (of `host`) that accepts: each is tried in turn, as a
/// client would, with an equal share of the time left before `deadline`, so that one
/// black-holed address of a load-balanced name does not use up the whole check. Returns the
/// connection and why each address tried before it failed.
async fn connect_any(
    host: &str,
    addresses: Vec<SocketAddr>,
    deadline: Instant,
) -> Result<(TcpStream, Vec<String>), CheckFailure> {
    let count = addresses.len();
    let mut failures: Vec<CheckFailure> = Vec::with_capacity(count);
    for (index, address) in addresses.into_iter().enumerate() {
        let share = deadline.saturating_duration_since(Instant::now()) / (count - index) as u32;
        let failure = |reason, detail: String| CheckFailure {
            phase: Phase::Tcp,
            reason,
            detail: format!("{address}: {detail}"),
            certificate: None,
        };
        match tokio::time::timeout(share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let failed = failures.into_iter().map(|failure| failure.detail).collect();
                return Ok((stream, failed));
            }
            Ok(Err(error)) => failures.push(failure(reason_of(&error), error.to_string())),
            Err(_) => failures.push(failure(
                FailureReason::Timeout,
                format!("no answer within {:.1}s", share.as_secs_f64()),
            )),
        }
    }
    // Every address failed: the last one's reason, and what each said.
    let details: Vec<String> = failures
        .iter()
        .map(|failure| failure.detail.clone())
        .collect();
    match failures.pop() {
        Some(mut last) => {
            last.detail = details.join("; ");
            Err(last)
        }
        None => Err(CheckFailure {
            phase: Phase::Dns,
            reason: FailureReason::NameResolution,
            detail: format!("{host} resolved to no address"),
            certificate: None,
        }),
    }
}

/// Resolves `host`, opens a TCP connection to `port` (trying each address in turn as a client
/// would, each with its share of the time) and, with `tls`, completes a verified TLS handshake. Each phase is timed; the whole
/// check is bounded by `timeout`, and a timeout names the phase it cut short.
pub(crate) async fn check_broker(
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
        let (stream, unreachable_addresses) = connect_any(host, addresses, start + timeout).await?;
        phases.push((Phase::Tcp, connecting.elapsed()));
        let mut certificate = None;
        let mut listened = Duration::ZERO;
        if let Some(tls) = tls {
            current.store(2, Ordering::Relaxed);
            let handshake = tls
                .handshake(host, stream)
                .await
                .map_err(|failure| CheckFailure {
                    phase: Phase::Tls,
                    reason: failure.reason,
                    detail: failure.detail,
                    certificate: failure.certificate,
                })?;
            certificate = handshake.certificate;
            phases.push((Phase::Tls, handshake.took));
            listened = handshake.listened;
        }
        Ok(CheckSuccess {
            // What a client pays to connect: the listening after the handshake is not part.
            total: start.elapsed().saturating_sub(listened),
            phases,
            certificate,
            unreachable_addresses,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(CheckFailure {
            phase: Phase::ALL[usize::from(current.load(Ordering::Relaxed))],
            reason: FailureReason::Timeout,
            detail: format!("no connection within {}s", timeout.as_secs_f64()),
            certificate: None,
        }),
    }
}

/// `host:port` pairs from `bootstrap.servers` (protocol prefixes and IPv6 brackets allowed).
pub(super) fn parse_bootstrap_servers(servers: &str) -> Vec<(String, u16)> {
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

/// Why a socket operation failed, as a `reason` label.
fn reason_of(error: &std::io::Error) -> FailureReason {
    match error.kind() {
        ErrorKind::ConnectionRefused => FailureReason::Refused,
        ErrorKind::TimedOut => FailureReason::Timeout,
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => FailureReason::Unreachable,
        _ => FailureReason::Other,
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
        assert_eq!(success.certificate, None);
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

    /// A loopback listener that never accepts, with a backlog of zero: once its queue is
    /// full, new handshakes go unanswered.
    fn unaccepting_listener() -> (socket2::Socket, SocketAddr) {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        socket.listen(0).unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        (socket, address)
    }

    #[tokio::test]
    async fn an_address_needs_no_lookup_and_a_lookup_gives_its_turn_back() {
        let resolver = Resolver::default();
        for (host, expected) in [("127.0.0.1", "127.0.0.1:9092"), ("[::1]", "[::1]:9092")] {
            let addresses = resolver.resolve(host, 9092).await.unwrap();
            assert_eq!(addresses, vec![expected.parse::<SocketAddr>().unwrap()]);
        }
        // An address takes no permit: every one is still free.
        assert_eq!(resolver.lookups.available_permits(), MAX_LOOKUPS);
        // A name does, and gives it back.
        resolver.resolve("localhost", 9092).await.unwrap();
        assert_eq!(resolver.lookups.available_permits(), MAX_LOOKUPS);
    }

    #[tokio::test]
    async fn unanswered_handshake_is_a_timeout() {
        // A listener whose accept queue is full drops new handshakes: the client hears nothing.
        let (socket, address) = unaccepting_listener();
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

    #[tokio::test]
    async fn a_black_holed_address_leaves_time_for_the_next() {
        // A listener whose accept queue is full drops new handshakes: a black hole.
        let (_socket, black_hole) = unaccepting_listener();
        let mut filled = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(black_hole))
                .await
            {
                Ok(Ok(stream)) => filled.push(stream),
                _ => break,
            }
            assert!(filled.len() < 64, "the accept queue never filled");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let (_, unreachable) = connect_any("balanced.example", vec![black_hole, open], deadline)
            .await
            .expect("the second address connects within the check's time");
        assert_eq!(unreachable.len(), 1, "{unreachable:?}");
        assert!(
            unreachable[0].starts_with(&black_hole.to_string())
                && unreachable[0].contains("no answer"),
            "{unreachable:?}"
        );
        let failure = connect_any(
            "balanced.example",
            vec![black_hole],
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, FailureReason::Timeout);
        assert!(
            failure.detail.contains(&black_hole.to_string()),
            "{failure}"
        );
    }
}
