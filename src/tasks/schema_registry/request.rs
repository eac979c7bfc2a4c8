//! The Schema Registry's REST API (Confluent's, which compatible registries serve): the three
//! requests of the probe, and why one failed.

use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Identity, StatusCode};
use serde_json::Value;

use crate::config::SchemaRegistrySettings;
use crate::outbound::{chain, trust_only, Transport};
use crate::recorder::schema_registry::{Failure, Request};

/// A failed request: why, and what to log (never a credential).
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) reason: Failure,
    pub(super) detail: String,
}

/// Why the registry's client could not be built (a TLS file the section names).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("[schema_registry] {key}: cannot read {path}: {error}")]
    File {
        key: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("[schema_registry] {key}: {error}")]
    Tls { key: &'static str, error: String },
}

/// The registry's HTTP client, with the section's TLS settings and credentials.
pub(super) struct RegistryClient {
    client: Client,
    url: String,
    user_info: Option<(String, String)>,
}

/// What a request answered: its JSON body, and the server certificate's expiry (https).
pub(super) struct Answer {
    pub(super) body: Value,
    pub(super) certificate_expiry: Option<f64>,
}

const CONTENT: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    pub(super) fn new(
        settings: &SchemaRegistrySettings,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|error| ClientError::File {
                key,
                path: path.display().to_string(),
                error,
            })
        };
        let tls = |key: &'static str| {
            move |error: &dyn std::fmt::Display| ClientError::Tls {
                key,
                error: error.to_string(),
            }
        };
        let mut builder = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tls_info(true)
            .danger_accept_invalid_hostnames(!settings.verify_hostname);
        // Like librdkafka: a CA file replaces the system's CAs.
        if let Some(path) = &settings.ca_location {
            let pem = read("ssl.ca.location", path)?;
            builder = trust_only(builder, &pem).map_err(|error| tls("ssl.ca.location")(&error))?;
        }
        if let (Some(certificate), Some(key)) =
            (&settings.certificate_location, &settings.key_location)
        {
            let certificate = read("ssl.certificate.location", certificate)?;
            let key = read("ssl.key.location", key)?;
            // The client takes an unencrypted PKCS#8 key: decrypt it here.
            let key = match &settings.key_password {
                Some(password) => {
                    openssl::pkey::PKey::private_key_from_pem_passphrase(&key, password.as_bytes())
                }
                None => openssl::pkey::PKey::private_key_from_pem(&key),
            }
            .and_then(|key| key.private_key_to_pem_pkcs8())
            .map_err(|error| tls("ssl.key.location")(&error))?;
            let identity = Identity::from_pkcs8_pem(&certificate, &key)
                .map_err(|error| tls("ssl.certificate.location")(&error))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|error| tls("url")(&error))?;
        let user_info = settings.user_info.as_ref().and_then(|info| {
            info.split_once(':')
                .map(|(user, password)| (user.to_string(), password.to_string()))
        });
        Ok(RegistryClient {
            client,
            url: settings.url.clone(),
            user_info,
        })
    }

    /// Sends `request` (`path` under the registry's URL; `body` for a POST).
    pub(super) async fn send(
        &self,
        request: Request,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Failed> {
        let url = format!("{}{path}", self.url);
        let mut builder = match body {
            Some(body) => self
                .client
                .post(&url)
                .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT))
                .body(body.to_string()),
            None => self.client.get(&url),
        }
        .header(ACCEPT, HeaderValue::from_static(CONTENT));
        if let Some((user, password)) = &self.user_info {
            builder = builder.basic_auth(user, Some(password));
        }
        let response = builder.send().await.map_err(|error| Failed {
            reason: failure_of_error(&error),
            detail: format!("{} {url}: {}", request.as_str(), chain(&error)),
        })?;
        let certificate_expiry = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(expiry_of);
        let status = response.status();
        let text = response.text().await.map_err(|error| Failed {
            reason: failure_of_error(&error),
            detail: format!("{} {url}: {}", request.as_str(), chain(&error)),
        })?;
        if !status.is_success() {
            // The registry's error body (`{"error_code":…,"message":…}`) says why; at most a
            // line of it.
            let said: String = text.chars().take(200).collect();
            return Err(Failed {
                reason: failure_of_status(status),
                detail: format!("{} {url}: HTTP {status}: {said}", request.as_str()),
            });
        }
        let body = serde_json::from_str(&text).map_err(|error| Failed {
            reason: Failure::Mismatch,
            detail: format!("{} {url}: not the API's JSON: {error}", request.as_str()),
        })?;
        Ok(Answer {
            body,
            certificate_expiry,
        })
    }
}

/// The failure an HTTP status is.
fn failure_of_status(status: StatusCode) -> Failure {
    match status.as_u16() {
        401 | 403 => Failure::Auth,
        429 => Failure::RateLimited,
        500.. => Failure::Server,
        _ => Failure::ClientError,
    }
}

/// The failure a transport error is.
fn failure_of_error(error: &reqwest::Error) -> Failure {
    match Transport::of(error) {
        Transport::Connect => Failure::Connect,
        Transport::Tls => Failure::Tls,
        Transport::Timeout => Failure::Timeout,
    }
}

/// The Unix time a DER certificate expires.
fn expiry_of(der: &[u8]) -> Option<f64> {
    let certificate = X509::from_der(der).ok()?;
    let epoch = Asn1Time::from_unix(0).ok()?;
    let difference = epoch.diff(certificate.not_after()).ok()?;
    Some(f64::from(difference.days) * 86_400.0 + f64::from(difference.secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_told_apart() {
        let of = |code: u16| failure_of_status(StatusCode::from_u16(code).unwrap()).as_str();
        assert_eq!(of(401), "auth");
        assert_eq!(of(403), "auth");
        assert_eq!(of(429), "rate_limited");
        assert_eq!(of(500), "server");
        assert_eq!(of(503), "server");
        assert_eq!(of(404), "client_error");
        assert_eq!(of(422), "client_error");
    }
}
