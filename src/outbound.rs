//! HTTP clients of the services outside Kafka the exporter talks to (the Schema Registry, an
//! identity provider's token endpoint): TLS from the system's OpenSSL, as librdkafka's is; a
//! CA file that replaces the system's CAs, as librdkafka's does; transport failures told
//! apart and said with their causes.

use std::error::Error as _;

use reqwest::{Certificate, ClientBuilder};

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// No connection (name resolution, refused, unreachable).
    Connect,
    /// The TLS handshake failed (an untrusted or expired certificate, a wrong name).
    Tls,
    /// No answer in time.
    Timeout,
}

impl Transport {
    /// What kind of failure `error` is.
    pub(crate) fn of(error: &reqwest::Error) -> Self {
        let mut source = error.source();
        while let Some(cause) = source {
            if cause.is::<native_tls::Error>() || cause.is::<openssl::ssl::Error>() {
                return Transport::Tls;
            }
            source = cause.source();
        }
        if error.is_timeout() {
            Transport::Timeout
        } else {
            Transport::Connect
        }
    }
}

/// An error with its causes, on one line.
pub(crate) fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `builder` trusting only the CAs of `pem` (one or more PEM certificates), not the system's.
pub(crate) fn trust_only(builder: ClientBuilder, pem: &[u8]) -> Result<ClientBuilder, String> {
    let certificates = Certificate::from_pem_bundle(pem).map_err(|error| error.to_string())?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".to_string());
    }
    Ok(certificates.into_iter().fold(
        builder.tls_built_in_root_certs(false),
        |builder, certificate| builder.add_root_certificate(certificate),
    ))
}
