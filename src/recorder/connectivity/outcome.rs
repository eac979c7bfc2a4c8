//! What a connection check can find: the phase it reached and, when it failed, why. These are
//! the `phase` and `reason` labels of the connectivity series; a new failure reason is a new
//! [`FailureReason`] listed in the [`Phase::reasons`] it can happen in (the check, in
//! `tasks/connectivity`, tells it apart).

use std::time::Duration;

use crate::recorder::observed::Certificate;

/// The phase of a connection check; the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    /// Name resolution.
    Dns,
    /// The TCP handshake.
    Tcp,
    /// The TLS handshake and certificate verification.
    Tls,
}

impl Phase {
    pub(crate) const ALL: [Phase; 3] = [Phase::Dns, Phase::Tcp, Phase::Tls];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Tcp => "tcp",
            Phase::Tls => "tls",
        }
    }

    /// The reasons a check can fail for in this phase.
    pub(crate) fn reasons(self) -> &'static [FailureReason] {
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
pub(crate) enum FailureReason {
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
    pub(crate) fn as_str(self) -> &'static str {
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
}

/// A failed check: in which phase, why, and the underlying message for the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} failed in {} ({detail})", reason.as_str(), phase.as_str())]
pub(crate) struct CheckFailure {
    pub(crate) phase: Phase,
    pub(crate) reason: FailureReason,
    pub(crate) detail: String,
    /// The certificate presented, when a TLS check got that far.
    pub(crate) certificate: Option<Certificate>,
}

/// A successful check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckSuccess {
    /// Time to an established (and, with TLS, verified) connection.
    pub(crate) total: Duration,
    /// Time of each phase.
    pub(crate) phases: Vec<(Phase, Duration)>,
    /// The certificate presented, with TLS.
    pub(crate) certificate: Option<Certificate>,
    /// The host's addresses tried first that did not connect, with why.
    pub(crate) unreachable_addresses: Vec<String>,
}
