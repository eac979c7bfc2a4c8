//! Secrets read from files: `sasl.username.file` and `sasl.password.file`, in any librdkafka
//! section, stand for `sasl.username` and `sasl.password` read from the file they name (a
//! mounted Kubernetes secret, rotated in place). The exporter watches those files and applies
//! new credentials without a restart.

use std::path::PathBuf;

use super::raw::{parse_section_name, ConfigError, Entry, Origin, RawConfig, LIBRDKAFKA_SECTIONS};

/// Each key read from a file, and the key it stands for.
const FILE_KEYS: [(&str, &str); 2] = [
    ("sasl.username.file", "sasl.username"),
    ("sasl.password.file", "sasl.password"),
];

/// Replaces each `KEY.file` of the librdkafka sections with `KEY`, its value the file's
/// content (without the trailing line break); returns the files read.
pub(super) fn resolve(raw: &mut RawConfig) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for (section, keys) in raw.sections.iter_mut() {
        let librdkafka = parse_section_name(section)
            .is_some_and(|(_, kind)| LIBRDKAFKA_SECTIONS.contains(&kind.as_str()));
        if !librdkafka {
            continue;
        }
        for (file_key, key) in FILE_KEYS {
            let Some(entry) = keys.remove(file_key) else {
                continue;
            };
            let error = |message: String| ConfigError::Key {
                origin: entry.origin.clone(),
                section: section.clone(),
                key: file_key.to_string(),
                message,
            };
            if keys.contains_key(key) {
                return Err(error(format!(
                    "set {key} or {file_key}, not both in one section"
                )));
            }
            let path = PathBuf::from(&entry.value);
            let value = std::fs::read_to_string(&path)
                .map_err(|source| error(format!("cannot read `{}`: {source}", path.display())))?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                return Err(error(format!("`{}` is empty", path.display())));
            }
            keys.insert(
                key.to_string(),
                Entry {
                    value: value.to_string(),
                    origin: Origin::File(path.clone()),
                    section: section.clone(),
                },
            );
            files.push(path);
        }
    }
    Ok(files)
}
