//! librdkafka properties as configured: merged per client, secrets recognised (and never
//! shown), SASL credentials required where the mechanism needs them.

use std::collections::BTreeMap;

use super::raw::Entry;

/// What replaces a secret wherever configuration is shown.
pub const MASK: &str = "********";

/// Whether a librdkafka property holds a secret that must never be shown.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("passphrase")
        || key.ends_with(".pem")
        || key == "sasl.oauthbearer.config"
        || key == "ssl.keystore.location"
        || key == "basic.auth.user.info"
}

/// `base`'s values with `over`'s on top.
pub(super) fn merge(
    base: &BTreeMap<String, Entry>,
    over: &BTreeMap<String, Entry>,
) -> BTreeMap<String, String> {
    base.iter()
        .chain(over.iter())
        .map(|(key, entry)| (key.clone(), entry.value.clone()))
        .collect()
}

/// The SASL mechanism a client with `properties` authenticates with (`sasl.mechanisms`, or its
/// alias `sasl.mechanism`, else librdkafka's default GSSAPI), as written; `None` when
/// `security.protocol` uses no SASL.
pub fn sasl_mechanism(properties: &BTreeMap<String, String>) -> Option<String> {
    let protocol = properties.get("security.protocol")?.to_ascii_uppercase();
    if !protocol.starts_with("SASL") {
        return None;
    }
    Some(
        properties
            .get("sasl.mechanisms")
            .or_else(|| properties.get("sasl.mechanism"))
            .map_or("GSSAPI".to_string(), Clone::clone),
    )
}

/// SASL mechanisms that need a user name and a password.
const PASSWORD_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The SASL key that is missing, and why it is needed, for a mechanism that needs a user
/// name and a password.
pub(super) fn check_sasl_credentials(
    properties: &BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    let Some(mechanism) = sasl_mechanism(properties) else {
        return Ok(());
    };
    let mechanism = mechanism.to_ascii_uppercase();
    let protocol = properties
        .get("security.protocol")
        .map(|value| value.to_ascii_uppercase())
        .unwrap_or_default();
    if !PASSWORD_MECHANISMS.contains(&mechanism.as_str()) {
        return Ok(());
    }
    for key in ["sasl.username", "sasl.password"] {
        if properties.get(key).is_none_or(|value| value.is_empty()) {
            return Err((
                key.to_string(),
                format!(
                    "required with security.protocol={protocol} and sasl.mechanisms={mechanism}"
                ),
            ));
        }
    }
    Ok(())
}
