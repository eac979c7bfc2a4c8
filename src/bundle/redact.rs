//! `--redact`: host names, IP addresses, topic and group names and the cluster id replaced by
//! stable short hashes everywhere in the bundle (the same name always gives the same hash, so
//! the bundle still reads: "broker 2 at host-3f9a01c2 fails"), as Confluent's Proactive
//! Support keeps no internal host names, addresses or topic names.

use std::collections::BTreeMap;

use regex::Regex;

/// What a redacted name was, in its replacement: `host-…`, `topic-…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Host,
    Address,
    Topic,
    Group,
    Cluster,
    Name,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Address => "ip",
            Kind::Topic => "topic",
            Kind::Group => "group",
            Kind::Cluster => "cluster",
            Kind::Name => "name",
        }
    }
}

/// The names to hide, and how each is replaced.
#[derive(Debug, Default)]
pub(super) struct Redactor {
    names: BTreeMap<String, Kind>,
}

/// Characters a name continues with: a match next to one is part of a longer word.
fn continues_name(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | '.')
}

impl Redactor {
    /// Hides `name` (of `kind`) wherever it appears as a whole word.
    pub(super) fn hide(&mut self, kind: Kind, name: &str) {
        let name = name.trim().trim_matches(['[', ']']);
        if name.is_empty() {
            return;
        }
        self.names.entry(name.to_string()).or_insert(kind);
    }

    /// Hides the label values of `label` in an OpenMetrics text (`group="…"`).
    pub(super) fn hide_label_values(&mut self, kind: Kind, text: &str, label: &str) {
        let Ok(pattern) = Regex::new(&format!(r#"[{{,]{}="([^"]*)""#, regex::escape(label))) else {
            return;
        };
        for capture in pattern.captures_iter(text) {
            self.hide(kind, &capture[1]);
        }
    }

    /// `text` with every hidden name, and every IPv4 address, replaced by its hash.
    pub(super) fn apply(&self, text: &str) -> String {
        let mut names: Vec<(&String, &Kind)> = self.names.iter().collect();
        // Longest first: a name inside a longer one must not break it apart.
        names.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        let alternatives: Vec<String> = names.iter().map(|(name, _)| regex::escape(name)).collect();
        let mut text = text.to_string();
        if !alternatives.is_empty() {
            if let Ok(pattern) = Regex::new(&alternatives.join("|")) {
                text = replace_words(&text, &pattern, |matched| {
                    self.names
                        .get(matched)
                        .map(|kind| replacement(*kind, matched))
                });
            }
        }
        let ipv4 = Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").expect("a valid pattern");
        replace_words(&text, &ipv4, |matched| {
            Some(replacement(Kind::Address, matched))
        })
    }
}

/// `text` with each match of `pattern` that stands as a whole word replaced by `replace`.
fn replace_words(text: &str, pattern: &Regex, replace: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in pattern.find_iter(text) {
        let before = text[..found.start()].chars().next_back();
        let after = text[found.end()..].chars().next();
        let whole = !before.is_some_and(continues_name) && !after.is_some_and(continues_name);
        // A host name followed by a dot ends a sentence, not a longer name.
        let sentence_end = after == Some('.')
            && !text[found.end() + 1..]
                .chars()
                .next()
                .is_some_and(continues_name);
        let whole = whole || (!before.is_some_and(continues_name) && sentence_end);
        if !whole {
            continue;
        }
        if let Some(replacement) = replace(found.as_str()) {
            out.push_str(&text[last..found.start()]);
            out.push_str(&replacement);
            last = found.end();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// `kind-` and the first 8 hex digits of the name's SHA-256.
fn replacement(kind: Kind, name: &str) -> String {
    let digest = openssl::sha::sha256(name.as_bytes());
    let hex: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{}-{hex}", kind.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_replaced_as_whole_words_by_stable_hashes() {
        let mut redactor = Redactor::default();
        redactor.hide(Kind::Topic, "orders");
        redactor.hide(Kind::Host, "b1.internal.example");
        redactor.hide(Kind::Group, "billing");
        let text = "topic orders and orders-dlq on b1.internal.example:9092 (10.1.2.3), \
                    group=\"billing\", reordersx. Host b1.internal.example.";
        let redacted = redactor.apply(text);
        let orders = replacement(Kind::Topic, "orders");
        assert!(redacted.starts_with(&format!("topic {orders} and orders-dlq on host-")));
        assert!(!redacted.contains("b1.internal.example"), "{redacted}");
        assert!(!redacted.contains("10.1.2.3"), "{redacted}");
        assert!(redacted.contains("group=\"group-"), "{redacted}");
        // Part of a longer word: left alone.
        assert!(redacted.contains("reordersx"), "{redacted}");
        // The same name, the same hash.
        assert_eq!(redactor.apply("orders"), orders);
    }

    #[test]
    fn label_values_of_a_metrics_text_are_hidden() {
        let mut redactor = Redactor::default();
        redactor.hide_label_values(
            Kind::Group,
            "lag{cluster=\"a\",group=\"payments\"} 1\nlag{group=\"risk\"} 2\n",
            "group",
        );
        let redacted = redactor.apply("payments risk");
        assert!(!redacted.contains("payments") && !redacted.contains("risk"));
    }
}
