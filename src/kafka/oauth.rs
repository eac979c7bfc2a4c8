//! OAuth tokens handed to a cluster's running clients (`rd_kafka_oauthbearer_set_token`), with
//! the SASL extensions Confluent Cloud's identity pools need.
//!
//! rust-rdkafka's token callback cannot pass extensions, and a token fetched in each client's
//! callback would be fetched once per client. So one task per cluster fetches the token and
//! gives it to every client from here, before librdkafka asks (it asks at 80 % of a token's
//! life; each token given pushes that moment back). A client waits to connect until it has
//! a token, so clients made before the first one simply wait for it.

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex, Weak};

use rdkafka::bindings as native;
use tokio::sync::watch;

use super::handle::AnyClient;
use crate::config::{OAuthSettings, MASK};
use crate::sync::lock;

/// A token the identity provider issued: never logged, never shown.
#[derive(Clone)]
pub(crate) struct Token {
    value: String,
    /// The principal the token names (its `sub`), for librdkafka's log lines.
    pub(crate) principal: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub(crate) expires_at_ms: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("principal", &self.principal)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub(crate) fn new(value: String, principal: String, expires_at_ms: i64) -> Self {
        Token {
            value,
            principal,
            expires_at_ms,
        }
    }

    /// The token itself, for the one place it goes (librdkafka) and the tests.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }
}

/// The current token of one cluster's clients, and the clients it goes to.
pub(crate) struct Tokens {
    settings: watch::Sender<OAuthSettings>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    current: Option<Token>,
    clients: Vec<Weak<dyn AnyClient>>,
}

impl Tokens {
    pub(crate) fn new(settings: OAuthSettings) -> Self {
        Tokens {
            settings: watch::Sender::new(settings),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The settings in force; the receiver sees each change (a rotated client secret).
    pub(crate) fn settings(&self) -> watch::Receiver<OAuthSettings> {
        self.settings.subscribe()
    }

    /// Takes new settings (a reload); returns whether they differ from those in force.
    pub(crate) fn reconfigure(&self, settings: OAuthSettings) -> bool {
        self.settings.send_if_modified(|current| {
            let changed = *current != settings;
            *current = settings;
            changed
        })
    }

    /// Gives `client` the current token now, and each new one from now on.
    pub(crate) fn attach(&self, client: Weak<dyn AnyClient>) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        let live = client.upgrade();
        let given = match (&inner.current, &live) {
            (Some(token), Some(live)) => self.give(live.as_ref(), token),
            _ => Ok(()),
        };
        inner.clients.push(client);
        drop(inner);
        release(live.into_iter().collect());
        given
    }

    /// Makes `token` the current one and gives it to every live client; returns how many
    /// took it, or the first refusal (a token librdkafka finds malformed or expired).
    pub(crate) fn publish(&self, token: Token) -> Result<usize, String> {
        let mut inner = lock(&self.inner);
        inner.clients.retain(|client| client.strong_count() > 0);
        // Given under the lock, so a client attached meanwhile never gets an older token
        // after this one.
        let live: Vec<Arc<dyn AnyClient>> =
            inner.clients.iter().filter_map(Weak::upgrade).collect();
        let mut given = 0;
        let mut refused = None;
        for client in &live {
            match self.give(client.as_ref(), &token) {
                Ok(()) => given += 1,
                Err(error) => {
                    refused.get_or_insert(error);
                }
            }
        }
        inner.current = Some(token);
        drop(inner);
        release(live);
        match refused {
            Some(error) => Err(error),
            None => Ok(given),
        }
    }

    /// The current token's expiry (milliseconds since the Unix epoch), if there is one.
    pub(crate) fn expires_at_ms(&self) -> Option<i64> {
        lock(&self.inner)
            .current
            .as_ref()
            .map(|token| token.expires_at_ms)
    }

    fn give(&self, client: &dyn AnyClient, token: &Token) -> Result<(), String> {
        let extensions = self.settings.borrow().extensions.clone();
        set_token(client, token, &extensions)
    }
}

/// Lets go of `clients` where destroying the last of one may block (librdkafka's destroy
/// waits for its threads): on a blocking thread, never a runtime's worker.
fn release(clients: Vec<Arc<dyn AnyClient>>) {
    if clients.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(clients))),
        Err(_) => drop(clients),
    }
}

/// Gives `client` `token` with `extensions`. The error never quotes the token.
fn set_token(
    client: &dyn AnyClient,
    token: &Token,
    extensions: &[(String, String)],
) -> Result<(), String> {
    let value = CString::new(token.value()).map_err(|_| "the token has a NUL byte".to_string())?;
    let principal = CString::new(token.principal.as_str())
        .map_err(|_| "the token's principal has a NUL byte".to_string())?;
    let strings: Vec<CString> = extensions
        .iter()
        .flat_map(|(key, value)| [key, value])
        .map(|text| CString::new(text.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| "a SASL extension has a NUL byte".to_string())?;
    let mut pointers: Vec<*const std::ffi::c_char> =
        strings.iter().map(|text| text.as_ptr()).collect();
    let mut error = [0 as std::ffi::c_char; 512];
    // SAFETY: the handle is valid while `client` is; librdkafka copies every string before
    // returning, and writes at most `error.len()` bytes (NUL-terminated) into `error`.
    let code = unsafe {
        native::rd_kafka_oauthbearer_set_token(
            client.requests().native_ptr(),
            value.as_ptr(),
            token.expires_at_ms,
            principal.as_ptr(),
            pointers.as_mut_ptr(),
            pointers.len(),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if code == native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    // SAFETY: librdkafka wrote a NUL-terminated message into the buffer (zeroed before).
    let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy();
    // librdkafka quotes a token with a character it refuses, cut to its buffer: whatever
    // follows the token's start is not said.
    let start: String = token.value().chars().take(8).collect();
    let message = match message.find(&start) {
        Some(at) => format!("{}{MASK}", &message[..at]),
        None => message.into_owned(),
    };
    Err(format!("librdkafka refused the token: {message}"))
}
