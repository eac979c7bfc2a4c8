//! The sign-in task's series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::latency::buckets_up_to;
use crate::metrics::Families;

/// How a token request ended; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The identity provider refused the client (a wrong id or secret, a scope it may not
    /// ask for): 400, 401 or 403.
    Refused,
    /// No connection (name resolution, refused, unreachable).
    Unreachable,
    /// The TLS handshake failed (an untrusted certificate: `https.ca.location`).
    Tls,
    /// No answer in time.
    Timeout,
    /// Another status: the provider failing (5xx), limiting (429), or lost (404).
    Failed,
    /// A 2xx answer without a usable token.
    BadResponse,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Unreachable,
        Outcome::Tls,
        Outcome::Timeout,
        Outcome::Failed,
        Outcome::BadResponse,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Tls => "tls",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::BadResponse => "bad_response",
        }
    }
}

/// Why the brokers refused a sign-in with the exporter's token; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The token had expired: its refresh failed for longer than it lived.
    Expired,
    /// A current token refused: the audience, issuer, signing key or scope is not what the
    /// brokers expect (their log says which).
    Invalid,
}

impl Rejection {
    pub(crate) const ALL: [Rejection; 2] = [Rejection::Expired, Rejection::Invalid];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::Expired => "expired",
            Rejection::Invalid => "invalid",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug)]
pub(super) struct OAuthMetrics {
    requests: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    rejections: Family<ReasonLabels, Counter>,
    pub(super) expiry: Gauge<f64, AtomicU64>,
    pub(super) last_refresh: Gauge<f64, AtomicU64>,
}

impl OAuthMetrics {
    /// Every outcome and reason at zero; latency buckets up to the request `timeout`.
    pub(super) fn new(timeout: Duration) -> Self {
        let metrics = OAuthMetrics {
            requests: Family::default(),
            latency: Histogram::new(buckets_up_to(timeout)),
            rejections: Family::default(),
            expiry: Gauge::default(),
            last_refresh: Gauge::default(),
        };
        for outcome in Outcome::ALL {
            drop(metrics.requests.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            }));
        }
        for reason in Rejection::ALL {
            drop(metrics.rejections.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
        metrics
    }

    pub(super) fn request(&self, outcome: Outcome, took: Duration) {
        self.requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub(super) fn rejected(&self, reason: Rejection, times: u64) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(times);
    }
}

impl Families for OAuthMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "oauth_token_requests",
            "Token requests to the identity provider's token endpoint, by outcome: ok, refused (the client's id or secret, or its scope), unreachable, tls, timeout, failed (another HTTP status), bad_response (no usable token)",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "oauth_token_request_latency",
            "Time of each token request, whatever its outcome",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "oauth_token_rejections",
            "Sign-ins the brokers refused with the exporter's token, by reason: expired (its refresh failed for longer than it lived) or invalid (audience, issuer, signing key or scope); librdkafka reports one broker's identical refusals at most once per 30 s",
            self.rejections.clone(),
        );
        registry.register(
            "oauth_token_expiry_timestamp_seconds",
            "Unix time the clients' current token expires (0 before the first token)",
            self.expiry.clone(),
        );
        registry.register(
            "oauth_token_last_refresh_timestamp_seconds",
            "Unix time of the last token obtained (0 before the first); the time since is time() minus this",
            self.last_refresh.clone(),
        );
    }
}
