//! `--redact`: host names, IP addresses, topic and group names and the cluster id replaced by
//! short hashes everywhere in the bundle (within a bundle the same name always gives the same
//! hash, so it still reads: "broker 2 at host-3f9a01c2 fails"; keyed per bundle, so no hash
//! can be reversed by guessing), as Confluent's Proactive Support keeps no internal host
//! names, addresses or topic names.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

/// What a redacted name was, in its replacement: `host-…`, `topic-…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Host,
    Address,
    Topic,
    Group,
    Cluster,
    /// A SASL user name (on Confluent Cloud, the API key's id).
    User,
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
            Kind::User => "user",
            Kind::Name => "name",
        }
    }
}

/// The names to hide, and how each is replaced.
#[derive(Debug)]
pub(super) struct Redactor {
    names: BTreeMap<String, Kind>,
    /// cc-heartbeat's own default names (the `cc-heartbeat` topic and group): they tell
    /// nothing of the user, and they are the product's name in its own sentences ("your
    /// properties over cc-heartbeat's defaults"), which hiding them would garble.
    own: BTreeSet<String>,
    /// Made anew for each bundle and never written: without it a hash cannot be reversed by
    /// trying every IPv4 address or a list of likely topic names.
    key: [u8; 16],
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor {
            names: BTreeMap::new(),
            own: BTreeSet::new(),
            key: *uuid::Uuid::new_v4().as_bytes(),
        }
    }
}

/// Characters a name continues with: a match next to one is part of a longer word.
fn continues_name(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | '.')
}

impl Redactor {
    /// A redactor that leaves `own`, cc-heartbeat's own default names, in place.
    pub(super) fn keeping<'a>(own: impl IntoIterator<Item = &'a str>) -> Self {
        Redactor {
            own: own.into_iter().map(str::to_string).collect(),
            ..Redactor::default()
        }
    }

    /// Hides `name` (of `kind`) wherever it appears as a whole word, unless it is one of
    /// cc-heartbeat's own.
    pub(super) fn hide(&mut self, kind: Kind, name: &str) {
        let name = name.trim().trim_matches(['[', ']']);
        if name.is_empty() || self.own.contains(name) {
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
        let lookup = |matched: &str| {
            self.names
                .get(matched)
                .map(|kind| self.replacement(*kind, matched))
        };
        match regex::RegexBuilder::new(&alternatives.join("|"))
            .size_limit(1 << 28)
            .build()
        {
            Ok(pattern) if !alternatives.is_empty() => {
                text = replace_words(&text, &pattern, lookup);
            }
            Ok(_) => {}
            // Too many names for one pattern: one at a time, longest first (slower, as sure).
            Err(_) => {
                for alternative in &alternatives {
                    if let Ok(pattern) = Regex::new(alternative) {
                        text = replace_words(&text, &pattern, lookup);
                    }
                }
            }
        }
        let ipv4 = Regex::new(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").expect("a valid pattern");
        replace_words(&text, &ipv4, |matched| {
            Some(self.replacement(Kind::Address, matched))
        })
    }

    /// `kind-` and the first 8 hex digits of the keyed SHA-256 of the name.
    fn replacement(&self, kind: Kind, name: &str) -> String {
        let mut keyed = self.key.to_vec();
        keyed.extend_from_slice(name.as_bytes());
        let digest = openssl::sha::sha256(&keyed);
        let hex: String = digest[..4]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("{}-{hex}", kind.prefix())
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
        let orders = redactor.replacement(Kind::Topic, "orders");
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
    fn the_products_own_default_names_are_kept_and_its_sentences_stay_whole() {
        let mut redactor = Redactor::keeping(["cc-heartbeat"]);
        redactor.hide(Kind::Topic, "cc-heartbeat");
        redactor.hide(Kind::Group, "cc-heartbeat");
        redactor.hide(Kind::User, "ABCDEFGH12345678");
        let text = "# your properties over cc-heartbeat's defaults\n\
                    sasl.username = ABCDEFGH12345678\nheartbeat.topic = cc-heartbeat\n";
        let redacted = redactor.apply(text);
        assert!(
            redacted.starts_with("# your properties over cc-heartbeat's defaults\n"),
            "{redacted}"
        );
        assert!(!redacted.contains("ABCDEFGH12345678"), "{redacted}");
        assert!(redacted.contains("sasl.username = user-"), "{redacted}");
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
