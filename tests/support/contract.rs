//! The metrics contract, `tests/contract/metric-families.tsv`: every metric family's name,
//! type, unit, label names and help text, as the dashboard, the rules and users' own alerts
//! rely on them. `tests/contract.rs` checks every family a run against tansu shows; the few
//! that only a real Kafka cluster or a real Schema Registry gives a series are checked, with
//! [`assert_pinned`], by the tests that give them one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::Metrics;

/// One family as exported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Family {
    pub kind: String,
    pub unit: String,
    pub help: String,
    pub labels: BTreeSet<String>,
    pub samples: usize,
}

/// The families of an OpenMetrics exposition, by name, with the label names of their samples.
pub fn families(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        let descriptor = |prefix: &str| {
            line.strip_prefix(prefix).map(|rest| {
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                (name.to_string(), value.to_string())
            })
        };
        if let Some((name, help)) = descriptor("# HELP ") {
            families.entry(name).or_default().help = help;
        } else if let Some((name, kind)) = descriptor("# TYPE ") {
            families.entry(name).or_default().kind = kind;
        } else if let Some((name, unit)) = descriptor("# UNIT ") {
            families.entry(name).or_default().unit = unit;
        }
    }
    let parsed = Metrics::parse(text);
    for sample in &parsed.samples {
        // The family whose name the sample's is, or is followed by a type's suffix.
        let family = families
            .keys()
            .filter(|family| {
                let Some(suffix) = sample.name.strip_prefix(family.as_str()) else {
                    return false;
                };
                [
                    "", "_total", "_bucket", "_sum", "_count", "_created", "_info",
                ]
                .contains(&suffix)
            })
            .max_by_key(|family| family.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample {} belongs to no family", sample.name));
        let family = families.get_mut(&family).unwrap();
        family.samples += 1;
        family.labels.extend(
            sample
                .labels
                .keys()
                .filter(|label| !(family.kind == "histogram" && *label == "le"))
                .cloned(),
        );
    }
    families
}

/// The contract's text: one line per family, tab-separated.
pub fn render(families: &BTreeMap<String, Family>) -> String {
    let mut out = String::from("# name\ttype\tunit\tlabels\thelp\n");
    for (name, family) in families {
        let unit = if family.unit.is_empty() {
            "-"
        } else {
            &family.unit
        };
        let labels: Vec<&str> = family.labels.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{name}\t{}\t{unit}\t{}\t{}\n",
            family.kind,
            labels.join(","),
            family.help
        ));
    }
    out
}

/// The contract's file.
pub fn contract_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/metric-families.tsv")
}

/// The contract's line of each family, by name.
pub fn contract_lines() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(contract_file()).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| Some((line.split('\t').next()?.to_string(), line.to_string())))
        .collect()
}

/// Asserts that each of `names` is exported in `exposition` (OpenMetrics) exactly as the
/// contract pins it: name, type, unit, label names and help.
pub fn assert_pinned(exposition: &str, names: &[&str]) {
    let found = families(exposition);
    let expected = contract_lines();
    for name in names {
        let family = found
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not exported here"));
        assert!(family.samples > 0, "{name} has no series here");
        let line = render(&BTreeMap::from([(name.to_string(), family.clone())]));
        let line = line.lines().nth(1).unwrap_or_default();
        assert_eq!(
            Some(line),
            expected.get(*name).map(String::as_str),
            "{name} differs from {}",
            contract_file().display()
        );
    }
}
