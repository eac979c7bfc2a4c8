//! The kinds of `[admin]` value: how each is read from its text, checked, and written back
//! (for `--check-config`).

use std::fmt;
use std::time::Duration;

/// How one kind of value is read from its text and written back.
pub(super) trait Kind<T> {
    fn parse(&self, value: &str) -> Result<T, String>;
    fn render(&self, value: &T) -> String;
}

/// A duration in (fractional) seconds, within bounds.
pub(super) struct Seconds(pub(super) f64, pub(super) f64);

impl Kind<Duration> for Seconds {
    fn parse(&self, value: &str) -> Result<Duration, String> {
        let Seconds(min, max) = *self;
        let seconds: f64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a number of seconds"))?;
        if !seconds.is_finite() || seconds < min || seconds > max {
            return Err(format!(
                "must be between {min} and {max} seconds, got {value}"
            ));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    fn render(&self, value: &Duration) -> String {
        format!("{}", value.as_secs_f64())
    }
}

/// A whole number, within bounds.
pub(super) struct Whole(pub(super) usize, pub(super) usize);

impl Kind<usize> for Whole {
    fn parse(&self, value: &str) -> Result<usize, String> {
        let Whole(min, max) = *self;
        match value.parse::<usize>() {
            Ok(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(format!(
                "must be a whole number from {min} to {max}, got {value}"
            )),
        }
    }

    fn render(&self, value: &usize) -> String {
        value.to_string()
    }
}

/// A boolean, written as Python's `configparser.getboolean` accepts it.
pub(super) struct Flag;

impl Kind<bool> for Flag {
    fn parse(&self, value: &str) -> Result<bool, String> {
        match value.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(true),
            "0" | "no" | "false" | "off" => Ok(false),
            _ => Err(format!(
                "`{value}` is not a boolean (true/false, yes/no, on/off, 1/0)"
            )),
        }
    }

    fn render(&self, value: &bool) -> String {
        value.to_string()
    }
}

/// One of a few named values.
pub(super) struct Choice<T: 'static> {
    pub(super) options: &'static [(&'static str, T)],
    pub(super) ignore_case: bool,
}

impl<T: Copy + PartialEq> Kind<T> for Choice<T> {
    fn parse(&self, value: &str) -> Result<T, String> {
        let matches = |name: &str| {
            if self.ignore_case {
                name.eq_ignore_ascii_case(value)
            } else {
                name == value
            }
        };
        match self.options.iter().find(|(name, _)| matches(name)) {
            Some((_, option)) => Ok(*option),
            None => {
                let names: Vec<&str> = self.options.iter().map(|(name, _)| *name).collect();
                let (last, first) = names.split_last().unwrap_or((&"", &[]));
                if first.is_empty() {
                    Err(format!("must be {last}"))
                } else {
                    Err(format!("must be {} or {last}", first.join(", ")))
                }
            }
        }
    }

    fn render(&self, value: &T) -> String {
        self.options
            .iter()
            .find(|(_, option)| option == value)
            .map(|(name, _)| name.to_string())
            .unwrap_or_default()
    }
}

/// A log level, by `tracing`'s names or Python's.
pub(super) struct LogLevel;

impl Kind<String> for LogLevel {
    fn parse(&self, value: &str) -> Result<String, String> {
        let level = match value.to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" | "notice" => "info",
            "warn" | "warning" => "warn",
            "error" | "critical" | "fatal" => "error",
            _ => return Err("must be one of trace, debug, info, warning, error".to_string()),
        };
        Ok(level.to_string())
    }

    fn render(&self, value: &String) -> String {
        value.clone()
    }
}

/// Any text (an empty value, like every empty `[admin]` value, means the default).
pub(super) struct Text;

impl Kind<String> for Text {
    fn parse(&self, value: &str) -> Result<String, String> {
        Ok(value.to_string())
    }

    fn render(&self, value: &String) -> String {
        value.clone()
    }
}

/// A Kafka topic name.
pub(super) struct TopicName;

impl Kind<String> for TopicName {
    fn parse(&self, value: &str) -> Result<String, String> {
        let valid = !value.is_empty()
            && value.len() <= 249
            && value != "."
            && value != ".."
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(value.to_string())
        } else {
            Err(format!(
                "`{value}` is not a valid Kafka topic name (1-249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
            ))
        }
    }

    fn render(&self, value: &String) -> String {
        value.clone()
    }
}

/// A value that may be left empty (none), else of kind `K`.
pub(super) struct Optional<K>(pub(super) K);

impl<T, K: Kind<T>> Kind<Option<T>> for Optional<K> {
    fn parse(&self, value: &str) -> Result<Option<T>, String> {
        if value.is_empty() {
            Ok(None)
        } else {
            self.0.parse(value).map(Some)
        }
    }

    fn render(&self, value: &Option<T>) -> String {
        value
            .as_ref()
            .map(|value| self.0.render(value))
            .unwrap_or_default()
    }
}

/// The name of a configured cluster, as its `[cluster:NAME]` sections write it (`default` for
/// a file without them).
pub(super) struct ClusterName;

impl Kind<String> for ClusterName {
    fn parse(&self, value: &str) -> Result<String, String> {
        let valid = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(value.to_string())
        } else {
            Err(format!(
                "`{value}` is not a cluster name (a-z, 0-9, _, as in [cluster:NAME])"
            ))
        }
    }

    fn render(&self, value: &String) -> String {
        value.clone()
    }
}

/// A host name or address to listen on.
pub(super) struct Host;

impl Kind<String> for Host {
    fn parse(&self, value: &str) -> Result<String, String> {
        if value.is_empty() {
            Err("must not be empty".to_string())
        } else {
            Ok(value.to_string())
        }
    }

    fn render(&self, value: &String) -> String {
        value.clone()
    }
}

/// A TCP port.
pub(super) struct Port;

impl Kind<u16> for Port {
    fn parse(&self, value: &str) -> Result<u16, String> {
        value
            .parse::<u16>()
            .map_err(|_| "must be a port number from 0 to 65535".to_string())
    }

    fn render(&self, value: &u16) -> String {
        value.to_string()
    }
}

/// An optional regular expression (empty: none).
pub(super) struct Expression;

impl Kind<Option<Pattern>> for Expression {
    fn parse(&self, value: &str) -> Result<Option<Pattern>, String> {
        if value.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(value)
            .map(|regex| Some(Pattern(regex)))
            .map_err(|error| format!("not a valid regular expression: {error}"))
    }

    fn render(&self, value: &Option<Pattern>) -> String {
        value.as_ref().map(ToString::to_string).unwrap_or_default()
    }
}

/// A comma-separated list of distinct names; blanks around names are ignored.
pub(super) struct Names;

impl Kind<Vec<String>> for Names {
    fn parse(&self, value: &str) -> Result<Vec<String>, String> {
        let names: Vec<String> = value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        let mut unique = std::collections::BTreeSet::new();
        match names.iter().find(|name| !unique.insert(name.as_str())) {
            Some(twice) => Err(format!("names `{twice}` twice")),
            None => Ok(names),
        }
    }

    fn render(&self, value: &Vec<String>) -> String {
        value.join(",")
    }
}

/// A regular expression setting, compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    /// Whether `name` is admitted by an optional `allow` (when set) and `deny` (when set).
    pub fn admits(allow: &Option<Pattern>, deny: &Option<Pattern>, name: &str) -> bool {
        allow.as_ref().is_none_or(|allow| allow.0.is_match(name))
            && !deny.as_ref().is_some_and(|deny| deny.0.is_match(name))
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}
