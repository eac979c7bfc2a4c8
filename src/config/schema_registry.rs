//! The optional `[schema_registry]` section (`[cluster:NAME:schema_registry]` per cluster): the
//! Schema Registry the cluster's applications use, which the exporter probes. Each key is
//! declared once, in [`KEYS`], with what it means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::properties::MASK;
use super::raw::{ConfigError, Entry};

/// Every `[schema_registry]` key and what it sets.
pub(super) const KEYS: [(&str, &str); 7] = [
    (
        "url",
        "the registry's base URL, http:// or https:// (required)",
    ),
    (
        "basic.auth.user.info",
        "`user:password` for HTTP basic authentication (a Confluent Cloud API key and secret)",
    ),
    (
        "ssl.ca.location",
        "a PEM file of the CAs to trust (default: the system's)",
    ),
    (
        "ssl.certificate.location",
        "a PEM client certificate, for mutual TLS",
    ),
    ("ssl.key.location", "the PEM key of that certificate"),
    (
        "ssl.key.password",
        "the password of that key, if it is encrypted",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "`https` (default) checks the host name against the certificate, `none` does not",
    ),
];

/// Where and how to reach the Schema Registry.
#[derive(Clone, PartialEq)]
pub struct SchemaRegistrySettings {
    pub url: String,
    /// `user:password`; never logged or shown.
    pub user_info: Option<String>,
    pub ca_location: Option<PathBuf>,
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    /// Never logged or shown.
    pub key_password: Option<String>,
    /// Whether the certificate must name the host.
    pub verify_hostname: bool,
}

impl fmt::Debug for SchemaRegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistrySettings")
            .field("url", &self.url)
            .field("user_info", &self.user_info.as_ref().map(|_| MASK))
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl SchemaRegistrySettings {
    /// A registry at `url` with no credentials and the system's CAs (the demo's own).
    pub fn plain(url: &str) -> Self {
        SchemaRegistrySettings {
            url: url.to_string(),
            user_info: None,
            ca_location: None,
            certificate_location: None,
            key_location: None,
            key_password: None,
            verify_hostname: true,
        }
    }

    /// The section's settings; `None` when it is absent or empty.
    pub(super) fn parse(
        section: &BTreeMap<String, Entry>,
    ) -> Result<Option<SchemaRegistrySettings>, ConfigError> {
        let error = |key: &str, entry: &Entry, message: String| ConfigError::Key {
            origin: entry.origin.clone(),
            section: entry.section.clone(),
            key: key.to_string(),
            message,
        };
        for (key, entry) in section {
            if !KEYS.iter().any(|(known, _)| known == key) {
                let known: Vec<&str> = KEYS.iter().map(|(known, _)| *known).collect();
                return Err(error(
                    key,
                    entry,
                    format!("unknown key (known keys: {})", known.join(", ")),
                ));
            }
        }
        let Some((_, first)) = section.iter().next() else {
            return Ok(None);
        };
        let value = |key: &str| {
            section
                .get(key)
                .map(|entry| entry.value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let Some(url) = value("url") else {
            return Err(error(
                "url",
                first,
                "is required in this section".to_string(),
            ));
        };
        let url_entry = &section["url"];
        // Credentials in the URL would be in every error message that names it. Checked
        // before parsing, so even a URL that does not parse is not taken for something else.
        if url.contains('@') {
            return Err(error(
                "url",
                url_entry,
                "must not hold credentials: set basic.auth.user.info".to_string(),
            ));
        }
        // Never quoted in an error.
        let parsed = url::Url::parse(&url)
            .map_err(|problem| error("url", url_entry, format!("is not a URL ({problem})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(error(
                "url",
                url_entry,
                "must be an http:// or https:// URL with a host".to_string(),
            ));
        }
        let user_info = value("basic.auth.user.info");
        if let (Some(info), Some(entry)) = (&user_info, section.get("basic.auth.user.info")) {
            if !info.contains(':') {
                return Err(error(
                    "basic.auth.user.info",
                    entry,
                    "must be `user:password`".to_string(),
                ));
            }
        }
        let verify_hostname = match value("ssl.endpoint.identification.algorithm").as_deref() {
            None | Some("https") => true,
            Some("none") => false,
            Some(other) => {
                return Err(error(
                    "ssl.endpoint.identification.algorithm",
                    &section["ssl.endpoint.identification.algorithm"],
                    format!("`{other}` is neither https nor none"),
                ))
            }
        };
        Ok(Some(SchemaRegistrySettings {
            url: url.trim_end_matches('/').to_string(),
            user_info,
            ca_location: value("ssl.ca.location").map(PathBuf::from),
            certificate_location: value("ssl.certificate.location").map(PathBuf::from),
            key_location: value("ssl.key.location").map(PathBuf::from),
            key_password: value("ssl.key.password"),
            verify_hostname,
        }))
    }

    /// The section as INI lines, secrets masked.
    pub(super) fn render_masked(&self) -> Vec<(&'static str, String)> {
        let path = |path: &Option<PathBuf>| path.as_ref().map(|path| path.display().to_string());
        let masked = |secret: &Option<String>| secret.as_ref().map(|_| MASK.to_string());
        [
            ("url", Some(self.url.clone())),
            ("basic.auth.user.info", masked(&self.user_info)),
            ("ssl.ca.location", path(&self.ca_location)),
            ("ssl.certificate.location", path(&self.certificate_location)),
            ("ssl.key.location", path(&self.key_location)),
            ("ssl.key.password", masked(&self.key_password)),
            (
                "ssl.endpoint.identification.algorithm",
                Some(
                    if self.verify_hostname {
                        "https"
                    } else {
                        "none"
                    }
                    .to_string(),
                ),
            ),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }
}
