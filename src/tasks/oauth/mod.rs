//! Signing in through an identity provider (SASL/OAUTHBEARER, OIDC client credentials): one
//! token per cluster, fetched from the token endpoint, refreshed at 80 % of its life (as
//! librdkafka and Kafka's Java client do), given to every client; each request timed and
//! counted by outcome, each failure said once, with the endpoint's host and never the secret.
//! When the provider is slow or down every client of the cluster fails at its next refresh:
//! the exporter sees its own refresh fail first, and how long the current token still lives.
//!
//! - `request`: one token request, and why it failed.
//!
//! What it finds goes to the recorder (`crate::recorder::oauth`); what it says in the log
//! follows its own state (the failure said once, the refusal once per spell), kept here.

mod request;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::request::{Failed, TokenEndpoint};
use crate::clock::unix_seconds;
use crate::config::OAuthSettings;
use crate::kafka::handle::AnyClient;
use crate::kafka::oauth::Tokens;
use crate::recorder::oauth::{
    Outcome, Rejection, SignInStarted, SignInState, TokenObtained, TokenRejected, TokenRequested,
    REQUEST_TIMEOUT,
};
use crate::recorder::Recorder;

pub use self::request::EndpointError;

/// Gives `client` a token once: for a short-lived client of its own (the support bundle's),
/// which no sign-in task serves.
pub(crate) async fn sign_in_once(
    settings: &OAuthSettings,
    client: Weak<dyn AnyClient>,
) -> Result<(), String> {
    let endpoint =
        TokenEndpoint::new(settings, REQUEST_TIMEOUT).map_err(|error| error.to_string())?;
    let token = endpoint.fetch().await.map_err(|failed| failed.detail)?;
    let tokens = Tokens::new(settings.clone());
    tokens.attach(client)?;
    tokens.publish(token).map(drop)
}

/// The longest wait between two attempts after a failure (the first waits 1 s, each next one
/// twice as long): a provider back is used within this.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// The share of a token's life after which it is refreshed.
const REFRESH_AT: f64 = 0.8;

pub(crate) struct SignIn {
    recorder: Arc<Recorder>,
    tokens: Arc<Tokens>,
}

/// What the loop remembers between attempts.
#[derive(Default)]
struct State {
    /// Failed attempts in a row.
    failures: u32,
    /// The last failure, while requests fail (said once per change).
    failing: Option<Failed>,
    /// Whether the token's expiry during these failures was said.
    expiry_said: bool,
    /// Whether a token was ever obtained.
    signed_in: bool,
    /// Authentication failures the clients had reported when last looked at.
    refusals_seen: u64,
    /// What the brokers said refusing the token, until they accept one again.
    rejected: Option<String>,
    /// Whether that refusal was said (once per spell: librdkafka's text differs by broker).
    refusal_said: bool,
}

impl SignIn {
    /// The task for `tokens`; fails on a CA it cannot read.
    pub(crate) fn new(
        recorder: &Arc<Recorder>,
        tokens: Arc<Tokens>,
    ) -> Result<Self, EndpointError> {
        let settings = tokens.settings().borrow().clone();
        TokenEndpoint::new(&settings, REQUEST_TIMEOUT)?;
        recorder.record(SignInStarted {
            endpoint: settings.endpoint_host(),
            client_id: settings.client_id.clone(),
        });
        Ok(SignIn {
            recorder: recorder.clone(),
            tokens,
        })
    }

    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut settings = self.tokens.settings();
        let mut endpoint = match TokenEndpoint::new(&settings.borrow_and_update(), REQUEST_TIMEOUT)
        {
            Ok(endpoint) => endpoint,
            // Checked by `new`; a CA file gone since is said and the task ends.
            Err(error) => {
                tracing::error!("cannot sign in with OAuth: {error}");
                return;
            }
        };
        let mut state = State {
            refusals_seen: self.recorder.authentication_refusals().0,
            ..State::default()
        };
        let mut next = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let new = settings.borrow_and_update().clone();
                    match TokenEndpoint::new(&new, REQUEST_TIMEOUT) {
                        Ok(replacement) => {
                            tracing::info!(
                                "OAuth settings reloaded (a rotated client secret): asking {} for a token now",
                                new.endpoint_host()
                            );
                            endpoint = replacement;
                            next = Instant::now();
                        }
                        Err(error) => tracing::error!(
                            "the reloaded OAuth settings are not used: {error}"
                        ),
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => return,
                        outcome = self.refresh(&endpoint, &mut state) => outcome,
                    };
                    next = Instant::now() + outcome;
                }
                _ = tick.tick() => self.watch_refusals(&mut state),
            }
            self.publish_facts(&state);
        }
    }

    /// Asks for a token and hands it to the clients; returns how long to wait for the next
    /// request.
    async fn refresh(&self, endpoint: &TokenEndpoint, state: &mut State) -> Duration {
        let started = Instant::now();
        let result = endpoint.fetch().await;
        let took = started.elapsed();
        let host = self.tokens.settings().borrow().endpoint_host();
        self.recorder.record(TokenRequested {
            outcome: match &result {
                Ok(_) => Outcome::Ok,
                Err(failed) => failed.outcome,
            },
            took,
        });
        let token = match result {
            Ok(token) => token,
            Err(failed) => {
                let valid = self.valid_for().is_some();
                if state.failing.as_ref() != Some(&failed) {
                    self.say_failure(&failed);
                    state.expiry_said = !valid;
                } else if !valid && !state.expiry_said {
                    // The same failure, but now the clients have no valid token left.
                    tracing::error!(
                        reason = failed.outcome.as_str(),
                        "the OAuth token expired unrefreshed: the clients cannot sign in until \
                         the identity provider answers ({})",
                        failed.detail
                    );
                    state.expiry_said = true;
                }
                state.failing = Some(failed);
                state.failures += 1;
                let backoff = Duration::from_secs(1 << state.failures.min(5).saturating_sub(1));
                return backoff.min(RETRY_MAX);
            }
        };
        let now = unix_seconds();
        let expires_at = token.expires_at_ms as f64 / 1000.0;
        let lifetime = (expires_at - now).max(0.0);
        let principal = token.principal.clone();
        if let Err(error) = self.tokens.publish(token) {
            tracing::error!("the clients cannot use the token from {host}: {error}");
        }
        self.recorder.record(TokenObtained {
            expires_at,
            at: now,
        });
        if state.failing.take().is_some() {
            tracing::info!(
                "the token endpoint at {host} answers again: token for {principal} obtained, \
                 valid for {lifetime:.0} s"
            );
        } else if !state.signed_in {
            tracing::info!(
                "signed in through {host}: token for {principal}, valid for {lifetime:.0} s"
            );
        } else {
            tracing::debug!("OAuth token refreshed, valid for {lifetime:.0} s");
        }
        state.signed_in = true;
        state.failures = 0;
        Duration::from_secs_f64((lifetime * REFRESH_AT).max(1.0))
    }

    /// One line per failure (not per retry): how bad it is depends on the token left.
    fn say_failure(&self, failed: &Failed) {
        match self.valid_for() {
            Some(left) => tracing::warn!(
                reason = failed.outcome.as_str(),
                "cannot refresh the OAuth token: {}; the clients' token expires in {left:.0} s \
                 (retrying)",
                failed.detail
            ),
            None => tracing::error!(
                reason = failed.outcome.as_str(),
                "cannot get an OAuth token: {}; the clients cannot sign in until one is \
                 obtained (retrying)",
                failed.detail
            ),
        }
    }

    /// Counts the sign-ins the brokers refused since last looked at, and says the refusal
    /// once per spell.
    fn watch_refusals(&self, state: &mut State) {
        let (count, refusal) = self.recorder.authentication_refusals();
        let new = count.saturating_sub(state.refusals_seen);
        state.refusals_seen = count;
        if new > 0 {
            let reason = if self.valid_for().is_some() {
                Rejection::Invalid
            } else {
                Rejection::Expired
            };
            self.recorder.record(TokenRejected { reason, times: new });
            if !state.refusal_said {
                let host = self.tokens.settings().borrow().endpoint_host();
                tracing::error!(
                    reason = reason.as_str(),
                    "the brokers refuse the OAuth token from {host} ({}): {}",
                    match reason {
                        Rejection::Expired => "it has expired: its refresh fails",
                        Rejection::Invalid =>
                            "check the audience, issuer and scope the brokers expect; their log says which",
                    },
                    refusal.as_deref().unwrap_or("refused")
                );
                state.refusal_said = true;
            }
            if refusal.is_some() {
                state.rejected = refusal;
            }
        } else if refusal.is_none() && state.refusal_said {
            // The metadata task forgets the refusal once the cluster answers again.
            tracing::info!("the brokers accept the OAuth token again");
            state.rejected = None;
            state.refusal_said = false;
        }
    }

    /// How long the clients' token is still valid, if it is.
    fn valid_for(&self) -> Option<f64> {
        let left = self.tokens.expires_at_ms()? as f64 / 1000.0 - unix_seconds();
        (left > 0.0).then_some(left)
    }

    /// What `/ready`, the status page and `check` say of signing in.
    fn publish_facts(&self, state: &State) {
        let host = self.tokens.settings().borrow().endpoint_host();
        let problem = match (&state.failing, self.valid_for(), &state.rejected) {
            (Some(failed), None, _) => Some(format!(
                "signing in: no valid OAuth token ({})",
                failed.detail
            )),
            (_, _, Some(refusal)) => Some(format!(
                "signing in: the brokers refuse the OAuth token from {host}: {refusal}"
            )),
            _ => None,
        };
        self.recorder.record(SignInState {
            failing: state.failing.as_ref().map(|failed| failed.detail.clone()),
            problem,
        });
    }
}
