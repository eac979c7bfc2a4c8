//! Secrets read from files: `sasl.username.file`, `sasl.password.file` and
//! `sasl.oauthbearer.client.secret.file`, in any librdkafka section, stand for the key without
//! `.file`, read from the file they name (a mounted Kubernetes secret, rotated in place). The exporter watches those files and applies
//! new credentials without a restart.

use std::path::PathBuf;

use super::raw::{parse_section_name, ConfigError, Entry, Origin, RawConfig, LIBRDKAFKA_SECTIONS};

/// Each key read from a file, and the key it stands for.
const FILE_KEYS: [(&str, &str); 3] = [
    ("sasl.username.file", "sasl.username"),
    ("sasl.password.file", "sasl.password"),
    (
        "sasl.oauthbearer.client.secret.file",
        "sasl.oauthbearer.client.secret",
    ),
];

/// A credential is short: a larger file is the wrong file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// The text of the secret file at `path`: a regular file (a device or a pipe could block or
/// never end), at most [`MAX_SECRET_BYTES`].
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let metadata =
        std::fs::metadata(path).map_err(|source| format!("cannot read `{shown}`: {source}"))?;
    if !metadata.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    if metadata.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "`{shown}` is larger than {MAX_SECRET_BYTES} bytes: not a credential"
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_BYTES).read_to_string(&mut text))
        .map_err(|source| format!("cannot read `{shown}`: {source}"))?;
    Ok(text)
}

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
            let value = read_secret(&path).map_err(error)?;
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
