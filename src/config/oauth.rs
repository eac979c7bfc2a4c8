//! Signing in with OAuth: SASL/OAUTHBEARER with tokens from an identity provider's token
//! endpoint (OIDC client credentials), configured with librdkafka's own keys in `[default]`.
//!
//! librdkafka fetches such tokens only when built with libcurl; the exporter fetches them
//! itself instead (each request timed, each failure named) and hands them to every client, so
//! these keys are read here and never passed to librdkafka. Each is declared once, in
//! [`KEYS`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::properties::{sasl_mechanism, MASK};
use super::raw::{ConfigError, Entry};

/// Every key of OAuth sign-in and what it sets.
pub(super) const KEYS: [(&str, &str); 9] = [
    (
        "sasl.oauthbearer.method",
        "`oidc`: tokens from the identity provider's token endpoint (required with \
         sasl.mechanisms=OAUTHBEARER)",
    ),
    (
        "sasl.oauthbearer.token.endpoint.url",
        "the identity provider's token endpoint, https:// (http:// only on loopback)",
    ),
    (
        "sasl.oauthbearer.client.id",
        "the client (application) id the identity provider knows the exporter by",
    ),
    (
        "sasl.oauthbearer.client.secret",
        "its secret (or `sasl.oauthbearer.client.secret.file`, read again when it changes)",
    ),
    (
        "sasl.oauthbearer.scope",
        "the scope asked for, if the identity provider wants one",
    ),
    (
        "sasl.oauthbearer.extensions",
        "`key=value,…` sent with every sign-in: Confluent Cloud's \
         `logicalCluster=lkc-…,identityPoolId=pool-…`",
    ),
    (
        "sasl.oauthbearer.grant.type",
        "`client_credentials`, the only grant the exporter makes",
    ),
    (
        "https.ca.location",
        "a PEM file of the CAs the token endpoint's certificate is checked against (default: \
         the system's)",
    ),
    ("https.ca.pem", "the same CAs, as PEM text"),
];

/// librdkafka's other OIDC keys (JWT assertions, Azure IMDS, the aliases of the client's id
/// and secret): refused by name rather than silently ignored.
const UNSUPPORTED: [(&str, &str); 4] = [
    (
        "sasl.oauthbearer.assertion.",
        "JWT-bearer assertions are not supported: use client credentials \
         (sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret)",
    ),
    (
        "sasl.oauthbearer.metadata.authentication.type",
        "metadata-service tokens (Azure IMDS) are not supported: use client credentials",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "write sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "write sasl.oauthbearer.client.secret",
    ),
];

/// Whether `key` is read here rather than passed to librdkafka.
pub(crate) fn is_oauth_key(key: &str) -> bool {
    KEYS.iter().any(|(known, _)| *known == key)
        || UNSUPPORTED
            .iter()
            .any(|(prefix, _)| key.starts_with(prefix))
}

/// How the exporter signs in through the identity provider.
#[derive(Clone, PartialEq)]
pub struct OAuthSettings {
    pub token_endpoint: url::Url,
    pub client_id: String,
    /// Never logged or shown.
    pub client_secret: String,
    pub scope: Option<String>,
    /// SASL extensions, in the order written.
    pub extensions: Vec<(String, String)>,
    pub ca_location: Option<PathBuf>,
    pub ca_pem: Option<String>,
}

impl fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &MASK)
            .field("scope", &self.scope)
            .field("extensions", &self.extensions)
            .field("ca_location", &self.ca_location)
            .finish_non_exhaustive()
    }
}

impl OAuthSettings {
    /// The token endpoint's host (and port, when not the scheme's), to name it in messages:
    /// never its path or query, which some providers put tenant secrets in.
    pub fn endpoint_host(&self) -> String {
        let host = self.token_endpoint.host_str().unwrap_or("?");
        match self.token_endpoint.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// The settings `default` (the cluster's `[default]`) gives; `None` unless a client signs
    /// in with OAUTHBEARER. `clients`: each client's section over `[default]`, by name, for
    /// the mechanism they use and the keys misplaced in them. `warnings` gets what is worth
    /// saying at start.
    pub(super) fn parse(
        default: &BTreeMap<String, Entry>,
        clients: [(&str, &BTreeMap<String, Entry>); 2],
        warnings: &mut Vec<String>,
    ) -> Result<Option<OAuthSettings>, ConfigError> {
        let error = key_error;
        refuse_misplaced(default, clients)?;
        let value = |key: &str| {
            default
                .get(key)
                .map(|entry| entry.value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let mechanism_entry = oauthbearer_entry(default, clients);
        let method = value("sasl.oauthbearer.method");
        let Some(mechanism_entry) = mechanism_entry else {
            if let Some(entry) = default.get("sasl.oauthbearer.method") {
                return Err(error(
                    "sasl.oauthbearer.method",
                    entry,
                    "is for sasl.mechanisms=OAUTHBEARER (with security.protocol=SASL_SSL), \
                     which no client uses"
                        .to_string(),
                ));
            }
            return Ok(None);
        };
        if !method
            .as_deref()
            .is_some_and(|method| method.eq_ignore_ascii_case("oidc"))
        {
            let unsecured = value("enable.sasl.oauthbearer.unsecure.jwt")
                .is_some_and(|value| value.eq_ignore_ascii_case("true"));
            if unsecured && method.is_none() {
                warnings.push(format!(
                    "[{}] enable.sasl.oauthbearer.unsecure.jwt = true: the clients sign in \
                     with unsigned test tokens, which only a test broker accepts",
                    mechanism_entry.section
                ));
                return Ok(None);
            }
            let entry = default
                .get("sasl.oauthbearer.method")
                .unwrap_or(mechanism_entry);
            return Err(error(
                "sasl.oauthbearer.method",
                entry,
                "must be `oidc` with sasl.mechanisms=OAUTHBEARER, with \
                 sasl.oauthbearer.token.endpoint.url, sasl.oauthbearer.client.id and \
                 sasl.oauthbearer.client.secret: without them librdkafka signs in with an \
                 unsigned test token, which brokers refuse"
                    .to_string(),
            ));
        }
        let method_entry = &default["sasl.oauthbearer.method"];
        let required = |key: &str| {
            value(key).ok_or_else(|| {
                error(
                    key,
                    default.get(key).unwrap_or(method_entry),
                    "required with sasl.oauthbearer.method=oidc".to_string(),
                )
            })
        };
        let endpoint = required("sasl.oauthbearer.token.endpoint.url")?;
        let token_endpoint = parse_endpoint(&endpoint).map_err(|message| {
            error(
                "sasl.oauthbearer.token.endpoint.url",
                &default["sasl.oauthbearer.token.endpoint.url"],
                message,
            )
        })?;
        let client_id = required("sasl.oauthbearer.client.id")?;
        let client_secret = required("sasl.oauthbearer.client.secret")?;
        if let Some(grant) = value("sasl.oauthbearer.grant.type") {
            if grant != "client_credentials" {
                return Err(error(
                    "sasl.oauthbearer.grant.type",
                    &default["sasl.oauthbearer.grant.type"],
                    "only `client_credentials` is supported".to_string(),
                ));
            }
        }
        let extensions = match value("sasl.oauthbearer.extensions") {
            Some(text) => parse_extensions(&text).map_err(|message| {
                error(
                    "sasl.oauthbearer.extensions",
                    &default["sasl.oauthbearer.extensions"],
                    message,
                )
            })?,
            None => Vec::new(),
        };
        Ok(Some(OAuthSettings {
            token_endpoint,
            client_id,
            client_secret,
            scope: value("sasl.oauthbearer.scope"),
            extensions,
            ca_location: value("https.ca.location").map(PathBuf::from),
            ca_pem: value("https.ca.pem"),
        }))
    }
}

/// The error of `key`, set at `entry`.
fn key_error(key: &str, entry: &Entry, message: String) -> ConfigError {
    ConfigError::Key {
        origin: entry.origin.clone(),
        section: entry.section.clone(),
        key: key.to_string(),
        message,
    }
}

/// Refuses librdkafka's OIDC keys the exporter does not implement, and OAuth keys outside
/// `[default]`.
fn refuse_misplaced(
    default: &BTreeMap<String, Entry>,
    clients: [(&str, &BTreeMap<String, Entry>); 2],
) -> Result<(), ConfigError> {
    for (key, entry) in default
        .iter()
        .chain(clients.iter().flat_map(|(_, own)| *own))
    {
        if let Some((_, why)) = UNSUPPORTED
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix))
        {
            return Err(key_error(key, entry, why.to_string()));
        }
    }
    for (_, own) in clients {
        if let Some((key, entry)) = own.iter().find(|(key, _)| is_oauth_key(key)) {
            return Err(key_error(
                key,
                entry,
                "belongs in [default]: one token serves every client of a cluster".to_string(),
            ));
        }
    }
    Ok(())
}

/// Where `sasl.mechanisms=OAUTHBEARER` was set, when a client (its section over `[default]`)
/// signs in with it.
fn oauthbearer_entry<'a>(
    default: &'a BTreeMap<String, Entry>,
    clients: [(&str, &'a BTreeMap<String, Entry>); 2],
) -> Option<&'a Entry> {
    clients.into_iter().find_map(|(_, own)| {
        let merged: BTreeMap<String, String> = default
            .iter()
            .chain(own.iter())
            .map(|(key, entry)| (key.clone(), entry.value.clone()))
            .collect();
        sasl_mechanism(&merged)
            .filter(|mechanism| mechanism.eq_ignore_ascii_case("OAUTHBEARER"))
            .and_then(|_| {
                ["sasl.mechanisms", "sasl.mechanism"]
                    .iter()
                    .find_map(|key| own.get(*key).or_else(|| default.get(*key)))
            })
    })
}

/// The token endpoint's URL: https, or http on loopback only (the client secret crosses the
/// connection); never with credentials in it. Errors never quote the URL.
fn parse_endpoint(text: &str) -> Result<url::Url, String> {
    if text.contains('@') {
        return Err("must not hold credentials: set sasl.oauthbearer.client.secret".to_string());
    }
    let url = url::Url::parse(text).map_err(|problem| format!("is not a URL ({problem})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => return Err("must be an https:// URL with a host".to_string()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(
            "must be https:// (the client secret would cross the network unencrypted); \
             http:// is accepted on loopback only"
                .to_string(),
        ),
        _ => Err("must be an https:// URL".to_string()),
    }
}

/// `key=value,…` as RFC 7628 allows them: keys of letters (not `auth`), values of printable
/// ASCII.
fn parse_extensions(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut extensions: Vec<(String, String)> = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("`{pair}` is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!("key `{key}` must be letters only"));
        }
        if key == "auth" {
            return Err("`auth` is reserved by SASL/OAUTHBEARER".to_string());
        }
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(format!("the value of `{key}` must be printable ASCII"));
        }
        if extensions.iter().any(|(known, _)| known == key) {
            return Err(format!("`{key}` is given twice"));
        }
        extensions.push((key.to_string(), value.to_string()));
    }
    Ok(extensions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;

    fn entry(section: &str, value: &str) -> Entry {
        Entry {
            value: value.to_string(),
            origin: Origin::File(PathBuf::from("test.ini")),
            section: section.to_string(),
        }
    }

    fn section(pairs: &[(&str, &str)]) -> BTreeMap<String, Entry> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), entry("default", value)))
            .collect()
    }

    fn parse(default: &[(&str, &str)]) -> Result<Option<OAuthSettings>, String> {
        let empty = BTreeMap::new();
        OAuthSettings::parse(
            &section(default),
            [("producer", &empty), ("consumer", &empty)],
            &mut Vec::new(),
        )
        .map_err(|error| error.to_string())
    }

    const OIDC: [(&str, &str); 6] = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "OAUTHBEARER"),
        ("sasl.oauthbearer.method", "oidc"),
        (
            "sasl.oauthbearer.token.endpoint.url",
            "https://login.example.com/oauth2/token",
        ),
        ("sasl.oauthbearer.client.id", "exporter"),
        ("sasl.oauthbearer.client.secret", "s3cret"),
    ];

    #[test]
    fn client_credentials_with_confluent_cloud_extensions() {
        let mut keys = OIDC.to_vec();
        keys.push((
            "sasl.oauthbearer.extensions",
            "logicalCluster=lkc-abc12,identityPoolId=pool-Xy9",
        ));
        let settings = parse(&keys).unwrap().unwrap();
        assert_eq!(settings.endpoint_host(), "login.example.com");
        assert_eq!(
            settings.extensions,
            vec![
                ("logicalCluster".to_string(), "lkc-abc12".to_string()),
                ("identityPoolId".to_string(), "pool-Xy9".to_string())
            ]
        );
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn oauthbearer_without_a_token_source_is_refused_by_name() {
        let error = parse(&OIDC[..2]).unwrap_err();
        assert!(
            error.contains("sasl.oauthbearer.method: must be `oidc`"),
            "{error}"
        );
        assert!(error.contains("unsigned test token"), "{error}");
        // An explicit choice of librdkafka's unsecured tokens (a test broker) is allowed.
        let mut unsecured = OIDC[..2].to_vec();
        unsecured.push(("enable.sasl.oauthbearer.unsecure.jwt", "true"));
        assert_eq!(parse(&unsecured).unwrap(), None);
    }

    #[test]
    fn each_missing_or_wrong_key_is_named_and_no_secret_quoted() {
        for missing in [
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.oauthbearer.client.id",
            "sasl.oauthbearer.client.secret",
        ] {
            let keys: Vec<_> = OIDC
                .iter()
                .copied()
                .filter(|(key, _)| *key != missing)
                .collect();
            let error = parse(&keys).unwrap_err();
            assert!(error.contains(&format!("{missing}: required")), "{error}");
        }
        let with = |key: &'static str, value: &'static str| {
            let mut keys = OIDC.to_vec();
            keys.retain(|(known, _)| *known != key);
            keys.push((key, value));
            parse(&keys).unwrap_err()
        };
        let error = with(
            "sasl.oauthbearer.token.endpoint.url",
            "http://idp.example.com/token",
        );
        assert!(error.contains("must be https://"), "{error}");
        let error = with(
            "sasl.oauthbearer.token.endpoint.url",
            "https://id:pw@idp/token",
        );
        assert!(error.contains("must not hold credentials") && !error.contains("pw@"));
        let error = with("sasl.oauthbearer.extensions", "logicalCluster");
        assert!(error.contains("is not key=value"), "{error}");
        let error = with("sasl.oauthbearer.extensions", "auth=x");
        assert!(error.contains("reserved"), "{error}");
        let error = with(
            "sasl.oauthbearer.grant.type",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        );
        assert!(error.contains("only `client_credentials`"), "{error}");
        let error = with("sasl.oauthbearer.assertion.file", "/a");
        assert!(error.contains("not supported"), "{error}");
        // Loopback may be plain http (a local identity provider, a test).
        let mut keys = OIDC.to_vec();
        keys.retain(|(key, _)| *key != "sasl.oauthbearer.token.endpoint.url");
        keys.push((
            "sasl.oauthbearer.token.endpoint.url",
            "http://127.0.0.1:8080/token",
        ));
        assert!(parse(&keys).unwrap().is_some());
    }

    #[test]
    fn oidc_without_oauthbearer_and_keys_outside_default_are_refused() {
        let error = parse(&[("sasl.oauthbearer.method", "oidc")]).unwrap_err();
        assert!(error.contains("no client uses"), "{error}");
        let producer: BTreeMap<String, Entry> = [(
            "sasl.oauthbearer.client.id".to_string(),
            entry("producer", "other"),
        )]
        .into();
        let empty = BTreeMap::new();
        let error = OAuthSettings::parse(
            &section(&OIDC),
            [("producer", &producer), ("consumer", &empty)],
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("[producer] sasl.oauthbearer.client.id: belongs in [default]"),
            "{error}"
        );
    }

    #[test]
    fn only_oauth_keys_are_kept_from_librdkafka() {
        assert!(is_oauth_key("sasl.oauthbearer.client.secret"));
        assert!(is_oauth_key("https.ca.location"));
        assert!(is_oauth_key("sasl.oauthbearer.assertion.file"));
        assert!(!is_oauth_key("sasl.oauthbearer.config"));
        assert!(!is_oauth_key("sasl.mechanisms"));
        assert!(!is_oauth_key("ssl.ca.location"));
    }
}
