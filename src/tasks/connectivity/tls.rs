//! The TLS part of the per-broker check, for clusters reached over SSL or SASL_SSL (Confluent
//! Cloud): a handshake with SNI set to the broker's host, verified the way librdkafka would
//! verify it (`ssl.ca.location` or `ssl.ca.pem`, else the system's CA paths; hostname checked
//! unless `ssl.endpoint.identification.algorithm=none`), with certificate problems told apart
//! and the certificate's expiry read even when it is not trusted.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::{X509NameRef, X509VerifyResult, X509};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::recorder::connectivity::outcome::FailureReason;
use crate::recorder::observed::Certificate;
use crate::sync::lock;

/// A completed TLS handshake.
pub(super) struct Handshake {
    /// The certificate presented.
    pub(super) certificate: Option<Certificate>,
    /// How long the handshake and its verification took.
    pub(super) took: Duration,
    /// How long the session was then listened to for a refusal.
    pub(super) listened: Duration,
}

/// How long a TLS session is listened to after the handshake, for a refusal the server sends
/// only then (TLS 1.3 client certificate checks).
const REFUSAL_WAIT: Duration = Duration::from_millis(250);

/// Why the TLS check could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot load the CA certificates of ssl.ca.location `{location}`: {source}")]
    CaLocation {
        location: String,
        source: ErrorStack,
    },
    #[error("cannot read ssl.ca.pem: {0}")]
    CaPem(ErrorStack),
    #[error("cannot load {key}: {source}")]
    ClientCertificate {
        key: &'static str,
        source: ErrorStack,
    },
    #[error("cannot read {key} `{path}`: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] ErrorStack),
}

/// A failed TLS handshake or verification.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsFailure {
    pub(crate) reason: FailureReason,
    pub(crate) detail: String,
    /// The presented certificate, when one was presented.
    pub(crate) certificate: Option<Certificate>,
}

/// How to check brokers' TLS, built once from the client properties.
pub(crate) struct TlsCheck {
    connector: SslConnector,
    verify: bool,
    verify_hostname: bool,
}

impl TlsCheck {
    /// `None` when `security.protocol` does not use TLS.
    pub(crate) fn from_properties(
        properties: &BTreeMap<String, String>,
    ) -> Result<Option<TlsCheck>, TlsSetupError> {
        let protocol = properties
            .get("security.protocol")
            .map(|value| value.to_ascii_uppercase())
            .unwrap_or_default();
        if protocol != "SSL" && protocol != "SASL_SSL" {
            return Ok(None);
        }
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        // As librdkafka: the configured CAs only, else the system's default paths (which the
        // builder starts from).
        let location = properties
            .get("ssl.ca.location")
            .filter(|location| *location != "probe");
        let pem = properties.get("ssl.ca.pem");
        if location.is_some() || pem.is_some() {
            let mut store = X509StoreBuilder::new()?;
            if let Some(location) = location {
                let loaded = if Path::new(location).is_dir() {
                    store
                        .add_lookup(X509Lookup::hash_dir())
                        .and_then(|lookup| lookup.add_dir(location, SslFiletype::PEM))
                } else {
                    std::fs::read(location)
                        .map_err(|_| ErrorStack::get())
                        .and_then(|bytes| X509::stack_from_pem(&bytes))
                        .and_then(|certificates| {
                            certificates
                                .into_iter()
                                .try_for_each(|certificate| store.add_cert(certificate))
                        })
                };
                loaded.map_err(|source| TlsSetupError::CaLocation {
                    location: location.clone(),
                    source,
                })?;
            }
            if let Some(pem) = pem {
                for certificate in
                    X509::stack_from_pem(pem.as_bytes()).map_err(TlsSetupError::CaPem)?
                {
                    store.add_cert(certificate).map_err(TlsSetupError::CaPem)?;
                }
            }
            builder.set_verify_cert_store(store.build())?;
        }
        // Clusters that require client certificates (mutual TLS) get the configured one.
        set_client_identity(&mut builder, properties)?;
        let verify = properties
            .get("enable.ssl.certificate.verification")
            .is_none_or(|value| !value.eq_ignore_ascii_case("false"));
        let verify_hostname = properties
            .get("ssl.endpoint.identification.algorithm")
            .is_none_or(|value| !value.eq_ignore_ascii_case("none"));
        Ok(Some(TlsCheck {
            connector: builder.build(),
            verify,
            verify_hostname,
        }))
    }

    /// Completes a TLS handshake over `stream` as a client of `host`, then listens a moment for
    /// a late refusal. On success returns the certificate presented, how long
    /// the handshake took, and how long was spent listening after it (not part of it).
    pub(super) async fn handshake(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> Result<Handshake, TlsFailure> {
        let started = Instant::now();
        let failure = |reason, detail: String| TlsFailure {
            reason,
            detail,
            certificate: None,
        };
        let mut configuration = self
            .connector
            .configure()
            .map_err(|error| failure(FailureReason::Other, error.to_string()))?;
        configuration.set_verify_hostname(self.verify_hostname);
        // Verification errors are recorded, not fatal, so the certificate can still be read
        // (its expiry matters most when it is the problem); they are judged after the handshake.
        let first_error: Arc<Mutex<Option<X509VerifyResult>>> = Arc::default();
        let recorder = first_error.clone();
        configuration.set_verify_callback(SslVerifyMode::PEER, move |preverified, context| {
            if !preverified {
                let mut first = lock(&recorder);
                first.get_or_insert(context.error());
            }
            true
        });
        let ssl = configuration
            .into_ssl(host)
            .map_err(|error| failure(FailureReason::Other, error.to_string()))?;
        let mut tls = tokio_openssl::SslStream::new(ssl, stream)
            .map_err(|error| failure(FailureReason::Other, error.to_string()))?;
        if let Err(error) = Pin::new(&mut tls).connect().await {
            return Err(failure(FailureReason::Handshake, error.to_string()));
        }
        let presented = tls.ssl().peer_certificate().map(|certificate| Certificate {
            subject: names(certificate.subject_name()),
            issuer: names(certificate.issuer_name()),
            expires_at: unix_seconds(certificate.not_after()),
        });
        let verify_error = *lock(&first_error);
        if let Some(error) = verify_error.filter(|_| self.verify) {
            return Err(TlsFailure {
                reason: classify(error),
                detail: format!("certificate of {host}: {}", error.error_string()),
                certificate: presented.clone(),
            });
        }
        // With TLS 1.3 a server that refuses the client's certificate (or its absence) says
        // so only after the client's side of the handshake is done: listen for a moment. A
        // Kafka broker says nothing until asked, so silence is the healthy answer.
        let took = started.elapsed();
        let listening = Instant::now();
        let mut byte = [0u8; 1];
        match tokio::time::timeout(REFUSAL_WAIT, tls.read(&mut byte)).await {
            Ok(Ok(0)) => Err(TlsFailure {
                reason: FailureReason::Handshake,
                detail: format!(
                    "{host} closed the connection right after the TLS handshake (does it require \
                     a client certificate? ssl.certificate.location, ssl.keystore.location)"
                ),
                certificate: presented.clone(),
            }),
            Ok(Err(error)) => Err(TlsFailure {
                reason: FailureReason::Handshake,
                detail: format!("{host} refused the TLS session: {error}"),
                certificate: presented.clone(),
            }),
            _ => Ok(Handshake {
                certificate: presented.clone(),
                took,
                listened: listening.elapsed(),
            }),
        }
    }
}

/// Presents the client identity librdkafka would: a PKCS#12 keystore (`ssl.keystore.location`,
/// `ssl.keystore.password`), or a certificate chain and a key, each from a file
/// (`ssl.certificate.location`, `ssl.key.location`) or inline PEM (`ssl.certificate.pem`,
/// `ssl.key.pem`), the key possibly encrypted (`ssl.key.password`).
fn set_client_identity(
    builder: &mut SslConnectorBuilder,
    properties: &BTreeMap<String, String>,
) -> Result<(), TlsSetupError> {
    let read = |key: &'static str| -> Result<Option<Vec<u8>>, TlsSetupError> {
        properties
            .get(key)
            .map(|path| {
                std::fs::read(path).map_err(|source| TlsSetupError::Read {
                    key,
                    path: path.clone(),
                    source,
                })
            })
            .transpose()
    };
    let invalid =
        |key: &'static str| move |source| TlsSetupError::ClientCertificate { key, source };
    if let Some(der) = read("ssl.keystore.location")? {
        let password = properties
            .get("ssl.keystore.password")
            .map_or("", String::as_str);
        let keystore = Pkcs12::from_der(&der)
            .and_then(|keystore| keystore.parse2(password))
            .map_err(invalid("ssl.keystore.location"))?;
        if let Some(certificate) = &keystore.cert {
            builder.set_certificate(certificate)?;
        }
        if let Some(key) = &keystore.pkey {
            builder.set_private_key(key)?;
        }
        for certificate in keystore.ca.into_iter().flatten() {
            builder.add_extra_chain_cert(certificate)?;
        }
        return Ok(());
    }
    let certificates = match read("ssl.certificate.location")? {
        Some(pem) => Some(("ssl.certificate.location", pem)),
        None => properties
            .get("ssl.certificate.pem")
            .map(|pem| ("ssl.certificate.pem", pem.as_bytes().to_vec())),
    };
    if let Some((key, pem)) = certificates {
        let mut chain = X509::stack_from_pem(&pem)
            .map_err(invalid(key))?
            .into_iter();
        if let Some(certificate) = chain.next() {
            builder.set_certificate(&certificate)?;
        }
        for certificate in chain {
            builder.add_extra_chain_cert(certificate)?;
        }
    }
    let private_key = match read("ssl.key.location")? {
        Some(pem) => Some(("ssl.key.location", pem)),
        None => properties
            .get("ssl.key.pem")
            .map(|pem| ("ssl.key.pem", pem.as_bytes().to_vec())),
    };
    if let Some((key, pem)) = private_key {
        let parsed = match properties.get("ssl.key.password") {
            Some(password) => PKey::private_key_from_pem_passphrase(&pem, password.as_bytes()),
            None => PKey::private_key_from_pem(&pem),
        };
        let private_key = parsed.map_err(invalid(key))?;
        builder.set_private_key(&private_key)?;
    }
    Ok(())
}

/// The failure reason for a certificate verification error.
pub(crate) fn classify(error: X509VerifyResult) -> FailureReason {
    // Codes from OpenSSL's x509_vfy.h.
    const CERT_HAS_EXPIRED: i32 = 10;
    const HOSTNAME_MISMATCH: i32 = 62;
    const IP_ADDRESS_MISMATCH: i32 = 64;
    match error.as_raw() {
        CERT_HAS_EXPIRED => FailureReason::CertificateExpired,
        HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => FailureReason::NameMismatch,
        _ => FailureReason::CertificateUntrusted,
    }
}

/// A certificate's name as `CN=…, O=…`, in the order it holds them.
fn names(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn unix_seconds(time: &Asn1TimeRef) -> Option<f64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let difference = epoch.diff(time).ok()?;
    Some(f64::from(difference.days) * 86_400.0 + f64::from(difference.secs))
}
