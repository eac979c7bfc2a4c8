//! Any expositions (split at NUL bytes, one per cluster): the merge never panics, names each
//! family once, and keeps every sample of a family, none dropped and none invented.
#![no_main]

use std::collections::HashMap;

use cc_heartbeat::merge_families;
use libfuzzer_sys::fuzz_target;

/// The family a `# HELP` line opens, as the merge reads it.
fn family(line: &str) -> Option<&str> {
    line.strip_prefix("# HELP ")
        .map(|rest| rest.split(' ').next().unwrap_or_default())
}

/// Its lines, as the merge reads them: split at each `\n`, nothing else removed.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .map(|line| line.strip_suffix('\n').unwrap_or(line))
}

/// The sample lines of an exposition: those after a family's `# HELP`, not comments.
fn samples(exposition: &str) -> Vec<&str> {
    let mut in_family = false;
    let mut out = Vec::new();
    for line in lines(exposition) {
        if family(line).is_some() {
            in_family = true;
        } else if in_family && !line.starts_with("# ") {
            out.push(line);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let expositions: Vec<String> = text.split('\0').map(str::to_string).collect();
    let merged = merge_families(&expositions);

    let mut described: HashMap<&str, usize> = HashMap::new();
    for name in lines(&merged).filter_map(family) {
        *described.entry(name).or_default() += 1;
    }
    assert!(
        described.values().all(|&count| count == 1),
        "a family described twice: {described:?}"
    );

    let mut expected: Vec<&str> = expositions.iter().flat_map(|e| samples(e)).collect();
    let mut found = samples(&merged);
    expected.sort_unstable();
    found.sort_unstable();
    assert_eq!(found, expected, "samples dropped or invented");
});
