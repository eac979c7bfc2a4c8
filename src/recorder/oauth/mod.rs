//! What the sign-in task found, recorded: each token request's outcome and time, the current
//! token's expiry, the brokers' refusals of it, and what `/ready`, the status page and `check`
//! say of signing in.
//!
//! - `metrics`: the sign-in's series.

mod metrics;

pub(crate) use self::metrics::{Outcome, Rejection};

use std::sync::Arc;
use std::time::Duration;

use self::metrics::OAuthMetrics;
use crate::config::Config;
use crate::metrics::Families;
use crate::recorder::status::SignInFacts;
use crate::recorder::stores::Stores;

/// How long a token request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Signing in through `endpoint` (its host) as `client_id` begins.
#[derive(Debug)]
pub(crate) struct SignInStarted {
    pub(crate) endpoint: String,
    pub(crate) client_id: String,
}

/// A token request ended, after `took`.
#[derive(Debug)]
pub(crate) struct TokenRequested {
    pub(crate) outcome: Outcome,
    pub(crate) took: Duration,
}

/// A token was obtained at Unix time `at`, expiring at `expires_at`.
#[derive(Debug)]
pub(crate) struct TokenObtained {
    pub(crate) expires_at: f64,
    pub(crate) at: f64,
}

/// The brokers refused `times` sign-ins with the exporter's token.
#[derive(Debug)]
pub(crate) struct TokenRejected {
    pub(crate) reason: Rejection,
    pub(crate) times: u64,
}

/// How signing in stands: why token requests fail, and why the clients cannot sign in.
#[derive(Debug)]
pub(crate) struct SignInState {
    pub(crate) failing: Option<String>,
    pub(crate) problem: Option<String>,
}

/// The sign-in's part of the record.
pub(super) struct OAuth {
    metrics: Arc<OAuthMetrics>,
}

impl OAuth {
    /// For clients that sign in with OAuth.
    pub(super) fn new(config: &Config) -> Option<Self> {
        config.oauth.as_ref()?;
        Some(OAuth {
            metrics: Arc::new(OAuthMetrics::new(REQUEST_TIMEOUT)),
        })
    }

    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn started(&self, stores: &Stores<'_>, started: SignInStarted) {
        stores.status.lock().signin = Some(SignInFacts {
            endpoint: started.endpoint,
            client_id: started.client_id,
            ..SignInFacts::default()
        });
    }

    pub(super) fn requested(&self, stores: &Stores<'_>, requested: TokenRequested) {
        self.metrics.request(requested.outcome, requested.took);
        if let Some(signin) = stores.status.lock().signin.as_mut() {
            signin.last_request_seconds = Some(requested.took.as_secs_f64());
        }
    }

    pub(super) fn obtained(&self, stores: &Stores<'_>, obtained: TokenObtained) {
        self.metrics.expiry.set(obtained.expires_at);
        self.metrics.last_refresh.set(obtained.at);
        if let Some(signin) = stores.status.lock().signin.as_mut() {
            signin.expires_at = Some(obtained.expires_at);
            signin.refreshed_at = Some(obtained.at);
        }
    }

    pub(super) fn rejected(&self, _stores: &Stores<'_>, rejected: TokenRejected) {
        self.metrics.rejected(rejected.reason, rejected.times);
    }

    pub(super) fn state(&self, stores: &Stores<'_>, state: SignInState) {
        if let Some(signin) = stores.status.lock().signin.as_mut() {
            signin.failing = state.failing;
            signin.problem = state.problem;
        }
    }
}
