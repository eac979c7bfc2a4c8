//! `--web.config.file`: TLS and basic authentication for the HTTP endpoints, in the file
//! format of Prometheus' exporter-toolkit, so that the file node_exporter or Prometheus itself
//! reads works here too:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_ca_file: ca.crt            # verify client certificates against these CAs
//!   client_auth_type: RequireAndVerifyClientCert
//!   min_version: TLS12
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...            # bcrypt
//! ```
//!
//! Relative paths are taken from the file's directory. Unknown keys are errors, as in the
//! toolkit (a misspelt `client_ca_file` must not leave clients unverified). The certificate,
//! key and CA files are read again when they change, so a rotated certificate (cert-manager,
//! a Kubernetes secret) is served without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslOptions, SslVerifyMode, SslVersion};
use openssl::x509::X509Name;
use serde::Deserialize;

/// Why a web configuration file cannot be used; each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: HttpFile,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Served over HTTP/1.1 either way: accepted so that the toolkit's files load.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// How clients' certificates are asked for, by the toolkit's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// The TLS settings, validated; the files are read by [`Tls::acceptor`].
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    min_version: SslVersion,
    max_version: Option<SslVersion>,
    prefer_server_ciphers: bool,
}

/// A validated web configuration.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name to bcrypt hash.
    pub users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

fn tls_version(path: &Path, key: &str, value: &str) -> Result<SslVersion, WebConfigError> {
    match value {
        "TLS10" => Ok(SslVersion::TLS1),
        "TLS11" => Ok(SslVersion::TLS1_1),
        "TLS12" => Ok(SslVersion::TLS1_2),
        "TLS13" => Ok(SslVersion::TLS1_3),
        other => Err(invalid(
            path,
            key,
            format!("{other:?} is not one of TLS10, TLS11, TLS12, TLS13"),
        )),
    }
}

fn version_rank(version: SslVersion) -> u8 {
    if version == SslVersion::TLS1 {
        0
    } else if version == SslVersion::TLS1_1 {
        1
    } else if version == SslVersion::TLS1_2 {
        2
    } else {
        3
    }
}

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> WebConfigError {
    WebConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

impl WebConfig {
    /// Reads and validates the file, and reads the TLS files once, so that a broken one stops
    /// the start rather than every connection.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|error| WebConfigError::Parse {
                path: path.to_path_buf(),
                message: error.to_string(),
            })?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let config = WebConfig {
            tls: file
                .tls_server_config
                .map(|tls| tls_settings(path, base, tls))
                .transpose()?,
            users: users(path, file.basic_auth_users)?,
            headers: headers(path, file.http_server_config.headers)?,
        };
        if let Some(tls) = &config.tls {
            tls.acceptor()
                .map_err(|(key, message)| invalid(path, key, message))?;
        }
        Ok(config)
    }
}

fn tls_settings(path: &Path, base: &Path, tls: TlsFile) -> Result<TlsSettings, WebConfigError> {
    let key = |name: &str| format!("tls_server_config.{name}");
    for (name, set) in [
        ("cipher_suites", !tls.cipher_suites.is_empty()),
        ("curve_preferences", !tls.curve_preferences.is_empty()),
        ("client_allowed_sans", !tls.client_allowed_sans.is_empty()),
    ] {
        if set {
            return Err(invalid(
                path,
                &key(name),
                "not supported by cc-heartbeat: leave it out (OpenSSL's defaults apply)",
            ));
        }
    }
    let file = |name: &str, value: &str| -> Result<PathBuf, WebConfigError> {
        if value.is_empty() {
            return Err(invalid(path, &key(name), "required with tls_server_config"));
        }
        Ok(base.join(value))
    };
    let cert_file = file("cert_file", &tls.cert_file)?;
    let key_file = file("key_file", &tls.key_file)?;
    let client_ca_file = (!tls.client_ca_file.is_empty()).then(|| base.join(&tls.client_ca_file));
    let client_auth = match tls.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(invalid(
                path,
                &key("client_auth_type"),
                format!(
                    "{other:?} is not one of NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ),
            ))
        }
    };
    let verifies = matches!(
        client_auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    // As the toolkit: a CA without a policy that uses it is a mistake, not a choice.
    if client_auth == ClientAuth::NoClientCert && client_ca_file.is_some() {
        return Err(invalid(
            path,
            &key("client_auth_type"),
            "client_ca_file is set: say how clients' certificates are asked for \
             (RequireAndVerifyClientCert, VerifyClientCertIfGiven, …)",
        ));
    }
    if verifies && client_ca_file.is_none() {
        return Err(invalid(
            path,
            &key("client_ca_file"),
            format!("required with client_auth_type {client_auth:?}"),
        ));
    }
    let min_version = match tls.min_version.as_str() {
        "" => SslVersion::TLS1_2,
        value => tls_version(path, &key("min_version"), value)?,
    };
    let max_version = match tls.max_version.as_str() {
        "" => None,
        value => Some(tls_version(path, &key("max_version"), value)?),
    };
    if let Some(max) = max_version {
        if version_rank(max) < version_rank(min_version) {
            return Err(invalid(
                path,
                &key("max_version"),
                format!("{} is below min_version", tls.max_version),
            ));
        }
    }
    Ok(TlsSettings {
        cert_file,
        key_file,
        client_ca_file,
        client_auth,
        min_version,
        max_version,
        prefer_server_ciphers: tls.prefer_server_cipher_suites.unwrap_or(true),
    })
}

fn users(
    path: &Path,
    users: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, WebConfigError> {
    for (user, hash) in &users {
        if user.contains(':') || user.is_empty() {
            return Err(invalid(
                path,
                &format!("basic_auth_users.{user}"),
                "a user name is not empty and has no ':'",
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(invalid(
                path,
                &format!("basic_auth_users.{user}"),
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':'`)",
            ));
        }
    }
    Ok(users)
}

fn headers(
    path: &Path,
    headers: BTreeMap<String, String>,
) -> Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>, WebConfigError> {
    headers
        .into_iter()
        .map(|(name, value)| {
            let key = format!("http_server_config.headers.{name}");
            let header = axum::http::HeaderName::try_from(name.as_str())
                .map_err(|_| invalid(path, &key, "not a header name"))?;
            // The toolkit's list: security headers, not ones that change what a response is.
            const ALLOWED: [&str; 5] = [
                "strict-transport-security",
                "x-content-type-options",
                "x-frame-options",
                "x-xss-protection",
                "content-security-policy",
            ];
            if !ALLOWED.contains(&header.as_str()) {
                return Err(invalid(
                    path,
                    &key,
                    "not one of Strict-Transport-Security, X-Content-Type-Options, \
                     X-Frame-Options, X-XSS-Protection, Content-Security-Policy",
                ));
            }
            let value = axum::http::HeaderValue::try_from(value)
                .map_err(|_| invalid(path, &key, "not a header value"))?;
            Ok((header, value))
        })
        .collect()
}

impl TlsSettings {
    /// An acceptor from the files as they are now; on failure, the key at fault and why.
    pub fn acceptor(&self) -> Result<SslAcceptor, (&'static str, String)> {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(|error| ("tls_server_config", error.to_string()))?;
        fn at<'a>(
            key: &'static str,
            file: &'a Path,
        ) -> impl FnOnce(openssl::error::ErrorStack) -> (&'static str, String) + 'a {
            move |error| (key, format!("{}: {error}", file.display()))
        }
        builder
            .set_certificate_chain_file(&self.cert_file)
            .map_err(at("tls_server_config.cert_file", &self.cert_file))?;
        builder
            .set_private_key_file(&self.key_file, SslFiletype::PEM)
            .map_err(at("tls_server_config.key_file", &self.key_file))?;
        builder.check_private_key().map_err(|error| {
            (
                "tls_server_config.key_file",
                format!("does not match the certificate: {error}"),
            )
        })?;
        builder
            .set_min_proto_version(Some(self.min_version))
            .map_err(|error| ("tls_server_config.min_version", error.to_string()))?;
        builder
            .set_max_proto_version(self.max_version)
            .map_err(|error| ("tls_server_config.max_version", error.to_string()))?;
        // The Mozilla profile turns TLS 1.0 and 1.1 off; a min_version asking for them turns
        // them back on.
        if version_rank(self.min_version) < 2 {
            builder.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
        }
        if self.prefer_server_ciphers {
            builder.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
        } else {
            builder.clear_options(SslOptions::CIPHER_SERVER_PREFERENCE);
        }
        // Session resumption with client certificates needs a context to resume in; without
        // one OpenSSL fails the resuming handshake (curl, browsers and Java resume).
        builder
            .set_session_id_context(b"cc-heartbeat")
            .map_err(|error| ("tls_server_config", error.to_string()))?;
        if let Some(ca) = &self.client_ca_file {
            builder
                .set_ca_file(ca)
                .map_err(at("tls_server_config.client_ca_file", ca))?;
            let names = X509Name::load_client_ca_file(ca)
                .map_err(at("tls_server_config.client_ca_file", ca))?;
            builder.set_client_ca_list(names);
        }
        let peer = SslVerifyMode::PEER;
        let required = SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT;
        match self.client_auth {
            ClientAuth::NoClientCert => builder.set_verify(SslVerifyMode::NONE),
            // Asked for (or required) but not verified, as the toolkit's types say.
            ClientAuth::RequestClientCert => builder.set_verify_callback(peer, |_, _| true),
            ClientAuth::RequireAnyClientCert => builder.set_verify_callback(required, |_, _| true),
            ClientAuth::VerifyClientCertIfGiven => builder.set_verify(peer),
            ClientAuth::RequireAndVerifyClientCert => builder.set_verify(required),
        }
        Ok(builder.build())
    }

    fn modified(&self) -> Vec<Option<(SystemTime, u64)>> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|file| {
            let metadata = std::fs::metadata(file).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
    }
}

/// The acceptor in force, made anew when a file it was made from changes; a change that does
/// not load (a key written before its certificate) keeps the one before, with a warning.
pub struct Tls {
    settings: TlsSettings,
    current: Mutex<Current>,
}

struct Current {
    /// What the files were (modification time, size) when the acceptor was made.
    files: Vec<Option<(SystemTime, u64)>>,
    acceptor: Arc<SslAcceptor>,
    /// When a change that did not load was last said.
    warned: Option<std::time::Instant>,
}

impl Tls {
    pub fn new(settings: TlsSettings) -> Result<Tls, String> {
        let modified = settings.modified();
        let acceptor = settings
            .acceptor()
            .map_err(|(key, message)| format!("{key}: {message}"))?;
        Ok(Tls {
            settings,
            current: Mutex::new(Current {
                files: modified,
                acceptor: Arc::new(acceptor),
                warned: None,
            }),
        })
    }

    /// The acceptor for a new connection. A change that does not load (a key written before
    /// its certificate) is tried again at the next connection, and said at most once a minute.
    pub fn acceptor(&self) -> Arc<SslAcceptor> {
        let mut current = crate::sync::lock(&self.current);
        let modified = self.settings.modified();
        if current.files != modified {
            match self.settings.acceptor() {
                Ok(acceptor) => {
                    tracing::info!("TLS certificate files changed: serving the new ones");
                    current.files = modified;
                    current.acceptor = Arc::new(acceptor);
                    current.warned = None;
                }
                Err((key, message)) => {
                    let now = std::time::Instant::now();
                    let said_lately = current
                        .warned
                        .is_some_and(|at| now.duration_since(at) < Duration::from_secs(60));
                    if !said_lately {
                        tracing::warn!(
                            "TLS files changed but do not load ({key}: {message}); serving \
                             the ones before"
                        );
                        current.warned = Some(now);
                    }
                }
            }
        }
        current.acceptor.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        WebConfig::load(&path).map_err(|error| error.to_string())
    }

    #[test]
    fn every_mistake_names_its_key() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        assert!(load("").unwrap().tls.is_none());
        let users = load(&format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
        assert_eq!(users.users.len(), 1);
        for (text, said) in [
            ("basic_auth_user:\n  a: b\n", "unknown field `basic_auth_user`"),
            ("basic_auth_users:\n  alice: plain\n", "basic_auth_users.alice: not a bcrypt hash"),
            ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file: required"),
            ("tls_server_config:\n  cert_fil: c\n", "unknown field `cert_fil`"),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS9\n",
                "tls_server_config.min_version: \"TLS9\" is not one of",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Any\n",
                "tls_server_config.client_auth_type: \"Any\" is not one of",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: VerifyClientCertIfGiven\n",
                "tls_server_config.client_ca_file: required",
            ),
            (
                "tls_server_config:\n  cert_file: missing.pem\n  key_file: k\n",
                "tls_server_config.cert_file: ",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "tls_server_config.cipher_suites: not supported",
            ),
            ("http_server_config:\n  headers:\n    Vary: x\n", "headers.Vary: not one of"),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
                "tls_server_config.client_auth_type: client_ca_file is set",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n",
                "tls_server_config.max_version: TLS12 is below min_version",
            ),
            ("- a\n", "invalid type"),
        ] {
            let error = load(text).unwrap_err();
            assert!(error.contains(said), "{text}: {error}");
        }
    }
}
