//! Any configuration: INI text, then after a NUL byte the environment, one `NAME=VALUE` a line.
//! Loading never panics; what loads can be shown (`--check-config`) with no secret in sight.
#![no_main]

use std::path::Path;

use cc_heartbeat::config::{is_secret, Config, MASK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (ini, environment) = text.split_once('\0').unwrap_or((&text, ""));
    let environment: Vec<(String, String)> = environment
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let Ok(clusters) = Config::clusters_from_ini(ini, Path::new("fuzz.ini"), environment) else {
        return;
    };
    for config in clusters {
        // Every line that sets a secret shows the mask, whatever the value was.
        for line in config.render_masked().lines() {
            if let Some((key, value)) = line.split_once(" = ") {
                if is_secret(key) && !key.starts_with(' ') {
                    assert_eq!(value, MASK, "the secret `{key}` is shown");
                }
            }
        }
    }
});
