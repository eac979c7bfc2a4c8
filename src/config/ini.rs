//! A literal INI reader compatible with the original Python tool's `configparser` files.
//!
//! Why not `rust-ini`'s own parser as-is: it treats a backslash at the end of a line as a line
//! continuation even with escapes off, and would mangle a password such as `abc\`. Values here
//! are taken literally, exactly as `configparser` (with interpolation off) reads them:
//! - `[section]` headers; `key = value` or `key: value`, split at the first `=` or `:`;
//! - whole-line comments starting with `#` or `;` (no inline comments: `#` inside a value is kept);
//! - keys are lower-cased (configparser's default `optionxform`), values are trimmed;
//! - an indented line continues the previous value (joined with a newline);
//! - a key or section given twice is an error, as in configparser's strict mode.
//!
//! The result plugs into the `config` crate as a [`config::Format`], so layering more sources
//! later (more files, more clusters) goes through one loader.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;

/// Sections in file order, each with its keys in file order.
pub type Sections = Vec<(String, Vec<(String, String)>)>;

/// A syntax error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl Error for SyntaxError {}

/// Parses INI text into sections. Keys outside any section are an error, as in configparser.
pub fn parse(text: &str) -> Result<Sections, SyntaxError> {
    let mut sections: Sections = Vec::new();
    // Indentation of the last key line while its value may still continue: a following line
    // indented deeper continues it (configparser's rule); anything else starts a new entry.
    let mut continues_after: Option<usize> = None;
    // A byte-order mark some editors write is not part of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        // Messages never quote the line: it may hold a secret.
        let error = |message: String| SyntaxError {
            line: line_number,
            message,
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continues_after = None;
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if continues_after.is_some_and(|key_indent| indent > key_indent) {
            if let Some((_, keys)) = sections.last_mut() {
                if let Some((_, value)) = keys.last_mut() {
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }
        }
        continues_after = None;
        if let Some(rest) = trimmed.strip_prefix('[') {
            // As configparser: the name runs to the last `]`; text after it is ignored.
            let name = rest
                .rfind(']')
                .map(|end| rest[..end].trim())
                .ok_or_else(|| error("section header lacks a closing `]`".to_string()))?;
            if name.is_empty() {
                return Err(error("empty section name".to_string()));
            }
            if sections.iter().any(|(existing, _)| existing == name) {
                return Err(error(format!("section [{name}] appears twice")));
            }
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let split = trimmed
            .find(['=', ':'])
            .ok_or_else(|| error("expected `key = value` (or `key: value`)".to_string()))?;
        let key = trimmed[..split].trim().to_lowercase();
        let value = trimmed[split + 1..].trim().to_string();
        if key.is_empty() {
            return Err(error(
                "a line starts with `=` or `:` and has no key".to_string(),
            ));
        }
        let Some((section, keys)) = sections.last_mut() else {
            return Err(error(format!(
                "key `{key}` comes before any [section] header"
            )));
        };
        if keys.iter().any(|(existing, _)| *existing == key) {
            return Err(error(format!("key `{key}` appears twice in [{section}]")));
        }
        keys.push((key, value));
        continues_after = Some(indent);
    }
    Ok(sections)
}

/// [`config::Format`] for literal INI, so the `config` crate loads files with these rules.
#[derive(Debug, Clone, Copy)]
pub struct LiteralIni;

impl config::Format for LiteralIni {
    fn parse(
        &self,
        uri: Option<&String>,
        text: &str,
    ) -> Result<config::Map<String, config::Value>, Box<dyn Error + Send + Sync>> {
        let mut map = config::Map::new();
        for (section, keys) in parse(text)? {
            let table: config::Map<String, config::Value> = keys
                .into_iter()
                .map(|(key, value)| (key, config::Value::new(uri, value)))
                .collect();
            map.insert(section, config::Value::new(uri, table));
        }
        Ok(map)
    }
}

impl config::FileStoredFormat for LiteralIni {
    fn file_extensions(&self) -> &'static [&'static str] {
        &["ini"]
    }
}

/// Loads INI text through the `config` crate into plain string tables.
pub fn load(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, LoadError> {
    // Syntax errors are reported from our own parser so the line number survives.
    parse(text).map_err(LoadError::Syntax)?;
    let loaded = config::Config::builder()
        .add_source(config::File::from_str(text, LiteralIni))
        .build()
        .map_err(|error| LoadError::Other(error.to_string()))?;
    loaded
        .try_deserialize()
        .map_err(|error| LoadError::Other(error.to_string()))
}

/// Why INI text could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Syntax(SyntaxError),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_literal() {
        let text = "[default]\nsasl.password = a\"b'c\\d#e;f=g:h\\\nbootstrap.servers: host:9092\n";
        let sections = load(text).unwrap();
        assert_eq!(sections["default"]["sasl.password"], "a\"b'c\\d#e;f=g:h\\");
        assert_eq!(sections["default"]["bootstrap.servers"], "host:9092");
    }

    #[test]
    fn comments_blank_lines_and_case() {
        let text = "# top\n; also\n[admin]\n\nLog.Level = INFO\n  # indented comment\n";
        let sections = load(text).unwrap();
        assert_eq!(sections["admin"]["log.level"], "INFO");
    }

    #[test]
    fn indented_lines_continue_a_value() {
        let sections = parse("[a]\nk = one\n  two\n").unwrap();
        assert_eq!(sections[0].1[0].1, "one\ntwo");
    }

    #[test]
    fn duplicates_and_orphans_are_errors() {
        assert_eq!(parse("[a]\nk=1\nk=2\n").unwrap_err().line, 3);
        assert_eq!(parse("[a]\n[a]\n").unwrap_err().line, 2);
        assert_eq!(parse("k=1\n").unwrap_err().line, 1);
        assert_eq!(parse("[a]\njust words\n").unwrap_err().line, 2);
        assert_eq!(parse("[a\n").unwrap_err().line, 1);
    }

    #[test]
    fn indented_keys_are_keys_not_continuations() {
        let text = "[default]\n  bootstrap.servers = a:9092\n  sasl.password = p\n    more\n";
        let sections = parse(text).unwrap();
        assert_eq!(
            sections[0].1,
            vec![
                ("bootstrap.servers".to_string(), "a:9092".to_string()),
                ("sasl.password".to_string(), "p\nmore".to_string()),
            ]
        );
    }

    #[test]
    fn crlf_bom_and_header_comments() {
        let text = "\u{feff}[admin] # main settings\r\nheartbeat.topic = t\r\n";
        let sections = load(text).unwrap();
        assert_eq!(sections["admin"]["heartbeat.topic"], "t");
    }

    #[test]
    fn syntax_errors_never_quote_the_line() {
        let error = parse("[default]\nhunter2\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
