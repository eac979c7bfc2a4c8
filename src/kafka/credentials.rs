//! SASL credentials changed on running clients (librdkafka's `rd_kafka_sasl_set_credentials`):
//! a rotated API key or password is used for every new connection, with no client recreated,
//! so nothing measured is lost. Connections already authenticated stay up, as brokers allow
//! (Confluent Cloud keeps an old key valid for a while after a new one is made).

use std::ffi::{CStr, CString};

use rdkafka::bindings as native;

use super::client::{client_properties, Role};
use super::handle::AnyClient;
use crate::config::Config;

/// The SASL user name and password `config` gives the client of `role`, when it has both.
pub(crate) fn sasl_credentials(config: &Config, role: Role) -> Option<(String, String)> {
    let properties = client_properties(config, role);
    let value = |key: &str| properties.get(key).map(|(value, _)| value.clone());
    Some((value("sasl.username")?, value("sasl.password")?))
}

/// Gives `client` new SASL credentials for its next authentication. Fails for a mechanism
/// that takes none (GSSAPI, OAUTHBEARER) or a value with a NUL byte; the error never quotes
/// a credential.
pub(crate) fn set_sasl_credentials(
    client: &dyn AnyClient,
    username: &str,
    password: &str,
) -> Result<(), String> {
    let username =
        CString::new(username).map_err(|_| "sasl.username contains a NUL byte".to_string())?;
    let password =
        CString::new(password).map_err(|_| "sasl.password contains a NUL byte".to_string())?;
    // SAFETY: the handle is valid while `client` is, and librdkafka copies both strings before
    // returning; the error it may return is read and destroyed here, once.
    unsafe {
        let error = native::rd_kafka_sasl_set_credentials(
            client.requests().native_ptr(),
            username.as_ptr(),
            password.as_ptr(),
        );
        if error.is_null() {
            return Ok(());
        }
        let message = CStr::from_ptr(native::rd_kafka_error_string(error))
            .to_string_lossy()
            .into_owned();
        native::rd_kafka_error_destroy(error);
        Err(message)
    }
}
