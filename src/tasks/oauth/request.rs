//! One token request to the identity provider's token endpoint (RFC 6749's client credentials
//! grant, the client authenticated with HTTP Basic as librdkafka and Kafka's Java client do),
//! and why one failed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::{Client, StatusCode};
use serde::Deserialize;

use crate::config::{OAuthSettings, MASK};
use crate::kafka::oauth::Token;
use crate::outbound::{chain, trust_only, Transport};
use crate::recorder::oauth::Outcome;

/// The longest life taken from a token's expiry.
const MAX_LIFETIME_SECONDS: f64 = 86_400.0;

/// A failed request: why, and what to say (never the secret, never a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failed {
    pub(super) outcome: Outcome,
    pub(super) detail: String,
}

/// Why the token endpoint's client could not be made (its CA).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("[default] https.ca.location: cannot read {path}: {error}")]
    CaFile { path: String, error: std::io::Error },
    #[error("[default] {key}: {error}")]
    Tls { key: &'static str, error: String },
}

/// The identity provider's token endpoint, with the settings it is asked with.
pub(super) struct TokenEndpoint {
    client: Client,
    settings: OAuthSettings,
}

/// What a token endpoint answers (RFC 6749, 5.1 and 5.2).
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    token_type: Option<String>,
    /// A number, or a number in a string (as Azure AD's v1 endpoint sends it).
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The claims of a JWT the exporter reads (it never checks the signature: the brokers do).
#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    sub: Option<String>,
}

impl TokenEndpoint {
    pub(super) fn new(settings: &OAuthSettings, timeout: Duration) -> Result<Self, EndpointError> {
        let mut builder = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry the client's credentials to another place.
            .redirect(reqwest::redirect::Policy::none());
        let pem = match (&settings.ca_location, &settings.ca_pem) {
            (Some(path), _) => Some((
                "https.ca.location",
                std::fs::read(path).map_err(|error| EndpointError::CaFile {
                    path: path.display().to_string(),
                    error,
                })?,
            )),
            (None, Some(pem)) => Some(("https.ca.pem", pem.as_bytes().to_vec())),
            (None, None) => None,
        };
        if let Some((key, pem)) = pem {
            builder =
                trust_only(builder, &pem).map_err(|error| EndpointError::Tls { key, error })?;
        }
        let client = builder.build().map_err(|error| EndpointError::Tls {
            key: "sasl.oauthbearer.token.endpoint.url",
            error: error.to_string(),
        })?;
        Ok(TokenEndpoint {
            client,
            settings: settings.clone(),
        })
    }

    /// Asks for a token.
    pub(super) async fn fetch(&self) -> Result<Token, Failed> {
        let settings = &self.settings;
        let host = settings.endpoint_host();
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &settings.scope {
            form.push(("scope", scope.as_str()));
        }
        let response = self
            .client
            .post(settings.token_endpoint.clone())
            .basic_auth(&settings.client_id, Some(&settings.client_secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| self.transport(error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.transport(error))?;
        let answer: Option<Answer> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            return Err(self.refusal(status, answer.as_ref(), &text));
        }
        let bad = |why: &str| Failed {
            outcome: Outcome::BadResponse,
            detail: format!("the token endpoint at {host} answered HTTP {status} {why}"),
        };
        let answer = answer.ok_or_else(|| bad("with a body that is not a token's JSON"))?;
        let token = answer
            .access_token
            .filter(|token| !token.is_empty())
            .ok_or_else(|| bad("without an access_token"))?;
        if let Some(kind) = answer
            .token_type
            .filter(|kind| !kind.eq_ignore_ascii_case("bearer"))
        {
            return Err(bad(&format!("with token_type `{kind}`, not bearer")));
        }
        // The token is put on the wire as it is: printable ASCII only (RFC 6750's b64token).
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(bad("with an access_token that is not printable ASCII"));
        }
        let claims = claims_of(&token);
        let now = unix_seconds();
        let expires_in = answer.expires_in.as_ref().and_then(|value| match value {
            serde_json::Value::Number(number) => number.as_f64(),
            serde_json::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        });
        let expires_at = claims
            .as_ref()
            .and_then(|claims| claims.exp)
            .or(expires_in.map(|seconds| now + seconds))
            .filter(|at| at.is_finite())
            .ok_or_else(|| bad("with neither expires_in nor a JWT with an exp claim"))?;
        if expires_at <= now {
            return Err(bad(
                "with a token that has already expired (check this machine's clock)",
            ));
        }
        // A token said to live longer than a day is refreshed within a day all the same.
        let expires_at = expires_at.min(now + MAX_LIFETIME_SECONDS);
        let principal = claims
            .and_then(|claims| claims.sub)
            .filter(|sub| !sub.is_empty())
            .unwrap_or_else(|| settings.client_id.clone());
        Ok(Token::new(token, principal, (expires_at * 1000.0) as i64))
    }

    fn transport(&self, error: reqwest::Error) -> Failed {
        // reqwest names the URL; its path and query stay out of messages.
        let error = error.without_url();
        let outcome = match Transport::of(&error) {
            Transport::Connect => Outcome::Unreachable,
            Transport::Tls => Outcome::Tls,
            Transport::Timeout => Outcome::Timeout,
        };
        let detail = chain(&error);
        Failed {
            outcome,
            detail: format!(
                "the token endpoint at {} did not answer: {}",
                self.settings.endpoint_host(),
                self.masked(&detail)
            ),
        }
    }

    /// A non-2xx answer: the client refused, or the provider failing.
    fn refusal(&self, status: StatusCode, answer: Option<&Answer>, text: &str) -> Failed {
        let host = self.settings.endpoint_host();
        let said = match answer {
            Some(Answer {
                error: Some(error),
                error_description,
                ..
            }) => match error_description {
                Some(description) => format!("{error}: {description}"),
                None => error.clone(),
            },
            _ => text.chars().take(200).collect(),
        };
        let said = self.masked(said.trim());
        let refused = matches!(status.as_u16(), 400 | 401 | 403);
        Failed {
            outcome: if refused {
                Outcome::Refused
            } else {
                Outcome::Failed
            },
            detail: if refused {
                format!(
                    "the token endpoint at {host} refused client `{}` (HTTP {status}): {said}",
                    self.settings.client_id
                )
            } else {
                format!("the token endpoint at {host} failed (HTTP {status}): {said}")
            },
        }
    }

    /// `text` with the client secret masked, should a provider echo it.
    fn masked(&self, text: &str) -> String {
        text.replace(&self.settings.client_secret, MASK)
    }
}

/// The claims of `token` when it is a JWT; `None` for an opaque token.
fn claims_of(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&json).ok()
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_gives_its_expiry_and_subject_and_an_opaque_token_none() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.c2lnbmF0dXJl",
            encode(r#"{"alg":"RS256","kid":"k"}"#),
            encode(r#"{"sub":"sa-123","exp":1893456000,"aud":"kafka"}"#)
        );
        let claims = claims_of(&token).unwrap();
        assert_eq!(claims.exp, Some(1_893_456_000.0));
        assert_eq!(claims.sub.as_deref(), Some("sa-123"));
        assert!(claims_of("an-opaque-token").is_none());
        assert!(claims_of("a.b!.c").is_none());
    }

    #[test]
    fn outcomes_are_distinct_labels() {
        let labels: std::collections::BTreeSet<_> = Outcome::ALL
            .iter()
            .map(|outcome| outcome.as_str())
            .collect();
        assert_eq!(labels.len(), Outcome::ALL.len());
    }
}
