//! The documents a person and their tools read besides `/metrics` (`/api/status`, the
//! check's JSON and text, the support bundle's files), reduced to what must not change from
//! one run to the next: every key and its type, every fixed word. What a run decides (numbers,
//! digits inside text, ids, ports, temporary paths, how many samples a window holds) is
//! masked. The expected reductions are `tests/contract/outputs/*`; after a deliberate change,
//! rerun with `UPDATE_CONTRACT=1` to rewrite them, and review the difference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Keys whose elements are events of a log or a window: only their shape is kept (how many,
/// and which messages, depends on timing).
const EVENT_ARRAYS: [&str; 2] = ["events", "recent"];

/// `text` with each of `literals` replaced by its name, then every UUID, long hexadecimal id
/// and run of digits masked.
pub fn mask(text: &str, literals: &[(&str, &str)]) -> String {
    let mut text = text.to_string();
    for (literal, name) in literals {
        if !literal.is_empty() {
            text = text.replace(literal, name);
        }
    }
    // With or without its dashes (the instance id has none).
    let uuid = regex::Regex::new(
        r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b",
    )
    .unwrap();
    let text = uuid.replace_all(&text, "<uuid>");
    let digits = regex::Regex::new(r"[0-9]+").unwrap();
    digits.replace_all(&text, "#").into_owned()
}

/// A JSON document as sorted lines `path: value`: numbers as `<number>`, strings masked;
/// an array of objects as the distinct lines of its elements (under `path[]`), an array of
/// scalars by the types it holds.
pub fn json_lines(value: &Value, literals: &[(&str, &str)]) -> String {
    let mut lines = BTreeSet::new();
    walk(value, "", literals, false, &mut lines);
    lines.into_iter().map(|line| line + "\n").collect()
}

fn walk(
    value: &Value,
    path: &str,
    literals: &[(&str, &str)],
    shape_only: bool,
    lines: &mut BTreeSet<String>,
) {
    match value {
        Value::Object(map) => {
            if map.is_empty() {
                lines.insert(format!("{path}: {{}}"));
            }
            for (key, value) in map {
                let shape_only = shape_only || EVENT_ARRAYS.contains(&key.as_str());
                walk(value, &format!("{path}.{key}"), literals, shape_only, lines);
            }
        }
        Value::Array(_) if shape_only => {
            lines.insert(format!("{path}[]: <events>"));
        }
        Value::Array(items) => {
            let path = format!("{path}[]");
            if items.is_empty() {
                lines.insert(format!("{path}: empty"));
            }
            for item in items {
                match item {
                    // An element holding no list of its own is one line, so that what its
                    // fields say together (an operation and its resource) is kept.
                    Value::Object(_) if !holds_objects(item) => {
                        let mut fields = BTreeSet::new();
                        walk(item, "", literals, shape_only, &mut fields);
                        let fields: Vec<String> = fields.into_iter().collect();
                        lines.insert(format!("{path}: {{{}}}", fields.join(", ")));
                    }
                    Value::Object(_) | Value::Array(_) => {
                        walk(item, &path, literals, shape_only, lines)
                    }
                    scalar => {
                        lines.insert(format!("{path}: {}", kind(scalar)));
                    }
                }
            }
        }
        Value::Null => {
            lines.insert(format!("{path}: null"));
        }
        Value::Bool(flag) => {
            lines.insert(format!("{path}: {flag}"));
        }
        Value::Number(_) => {
            lines.insert(format!("{path}: <number>"));
        }
        Value::String(_) if shape_only => {
            lines.insert(format!("{path}: <string>"));
        }
        Value::String(text) => {
            lines.insert(format!("{path}: {:?}", mask(text, literals)));
        }
    }
}

/// Whether `value` holds a list of objects, at any depth.
fn holds_objects(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.values().any(holds_objects),
        Value::Array(items) => items
            .iter()
            .any(|item| item.is_object() || holds_objects(item)),
        _ => false,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A text document, each line masked and its runs of spaces made one (columns are padded to
/// the widths of the values), in its order.
pub fn text_lines(text: &str, literals: &[(&str, &str)]) -> String {
    let spaces = regex::Regex::new(" +").unwrap();
    text.lines()
        .map(|line| spaces.replace_all(&mask(line, literals), " ").into_owned() + "\n")
        .collect()
}

/// An OpenMetrics exposition as its descriptors and the distinct series (name and labels,
/// masked), without values, sorted.
pub fn exposition_lines(text: &str, literals: &[(&str, &str)]) -> String {
    let mut lines = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with('#') {
            lines.insert(mask(line, literals));
            continue;
        }
        let series = match line.rfind('}') {
            Some(end) => &line[..=end],
            None => line.split(' ').next().unwrap_or_default(),
        };
        lines.insert(mask(series, literals));
    }
    lines.into_iter().map(|line| line + "\n").collect()
}

fn expected_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contract/outputs")
        .join(name)
}

/// Asserts that `reduced` is `tests/contract/outputs/<name>`, or writes it there with
/// `UPDATE_CONTRACT=1`.
pub fn assert_reduced(name: &str, reduced: &str) {
    let path = expected_file(name);
    if std::env::var_os("UPDATE_CONTRACT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, reduced).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != reduced {
        let expected_lines: BTreeSet<&str> = expected.lines().collect();
        let found_lines: BTreeSet<&str> = reduced.lines().collect();
        let gone: Vec<&&str> = expected_lines.difference(&found_lines).collect();
        let new: Vec<&&str> = found_lines.difference(&expected_lines).collect();
        panic!(
            "{} differs (rerun with UPDATE_CONTRACT=1 after a deliberate change)\n\
             expected, not found: {gone:#?}\nfound, not expected: {new:#?}\nfound:\n{reduced}",
            path.display()
        );
    }
}
