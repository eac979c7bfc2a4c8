//! The shape of the source, as `src/lib.rs` maps it: files and functions small enough to read,
//! every module named in its parent's map, no module using one above it, no import circles,
//! and only the recorder writing what the readers read.
//!
//! Modules are files (`a/b.rs`, or `a/b/mod.rs` for a folder); what a file uses is read from
//! its `crate::`, `super::` and `self::` paths, outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines: beyond it a file has found a second concern.
const MAX_FILE_LINES: usize = 700;
/// Longest function, in lines.
const MAX_FUNCTION_LINES: usize = 120;

/// A module path: `["tasks", "heartbeat", "producer"]`; the crate root is empty.
type Module = Vec<String>;

struct Source {
    path: PathBuf,
    module: Module,
    text: String,
}

impl Source {
    /// The text without test modules: what the running program is made of.
    fn code(&self) -> &str {
        match self.text.find("#[cfg(test)]\nmod tests") {
            Some(end) => &self.text[..end],
            None => &self.text,
        }
    }

    /// The names of the modules this file declares (`mod name;`).
    fn declared_modules(&self) -> Vec<String> {
        self.code()
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                let rest = line
                    .strip_prefix("mod ")
                    .or_else(|| line.strip_prefix("pub mod "))
                    .or_else(|| line.strip_prefix("pub(crate) mod "))?;
                rest.strip_suffix(';').map(str::to_string)
            })
            .collect()
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library source file with its module path (the binary's `main.rs` and unit-test files
/// are left out).
fn sources() -> Vec<Source> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                found.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        // The binary is not the library; a test module may use what it tests.
        .filter(|path| !path.ends_with("main.rs") && !path.ends_with("tests.rs"))
        .map(|path| {
            let relative = path.strip_prefix(root()).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source { path, module, text }
        })
        .collect()
}

/// The modules `source` uses: each `crate::`, `super::` or `self::` path resolved to the
/// longest module it names.
fn uses(source: &Source, modules: &BTreeSet<Module>) -> BTreeSet<Module> {
    let mut used = BTreeSet::new();
    for line in source.code().lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (start, _) in line.match_indices("crate::").chain(
            line.match_indices("super::")
                .chain(line.match_indices("self::")),
        ) {
            let before = line[..start].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<&str> = line[start..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|part| !part.is_empty())
                .collect();
            let mut module: Module = match path[0] {
                "crate" => Vec::new(),
                "super" => source.module[..source.module.len().saturating_sub(1)].to_vec(),
                _ => source.module.clone(),
            };
            for part in &path[1..] {
                let mut deeper = module.clone();
                deeper.push(part.to_string());
                if !modules.contains(&deeper) {
                    break;
                }
                module = deeper;
            }
            if module != source.module {
                used.insert(module);
            }
        }
    }
    used
}

/// Whether a (trimmed) line starts a function: `fn`, after any visibility and qualifiers.
fn is_function(mut line: &str) -> bool {
    let qualifiers = [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "async ",
        "const ",
        "unsafe ",
    ];
    while let Some(rest) = qualifiers
        .iter()
        .find_map(|qualifier| line.strip_prefix(qualifier))
    {
        line = rest;
    }
    line.starts_with("fn ")
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

#[test]
fn source_files_and_functions_stay_small() {
    let mut too_long = Vec::new();
    for source in sources() {
        let lines: Vec<&str> = source.text.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            too_long.push(format!("{}: {} lines", source.path.display(), lines.len()));
        }
        // rustfmt closes a function's body at the indentation its `fn` line starts at.
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !is_function(trimmed) {
                continue;
            }
            let signature_end = lines[start..]
                .iter()
                .find(|line| line.ends_with('{') || line.ends_with(';'));
            if signature_end.is_none_or(|line| line.ends_with(';')) {
                continue; // a declaration without a body
            }
            let indent = &line[..line.len() - trimmed.len()];
            let close = format!("{indent}}}");
            if let Some(length) = lines[start..].iter().position(|line| *line == close) {
                if length + 1 > MAX_FUNCTION_LINES {
                    too_long.push(format!(
                        "{}:{}: {} is {} lines",
                        source.path.display(),
                        start + 1,
                        trimmed[trimmed.find("fn ").unwrap_or(0)..]
                            .split(['(', '<'])
                            .next()
                            .unwrap_or(trimmed),
                        length + 1
                    ));
                }
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "over {MAX_FILE_LINES} lines per file or {MAX_FUNCTION_LINES} per function:\n{}",
        too_long.join("\n")
    );
}

#[test]
fn every_module_is_named_in_its_parents_map() {
    let mut unnamed = Vec::new();
    for source in sources() {
        let header: String = source
            .text
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        for module in source.declared_modules() {
            if !header.contains(&format!("`{module}`")) {
                unnamed.push(format!("{}: `{module}`", source.path.display()));
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "modules missing from their parent's `//!` map:\n{}",
        unnamed.join("\n")
    );
}

#[test]
fn no_module_uses_one_above_it_and_no_imports_go_in_circles() {
    let sources = sources();
    let modules: BTreeSet<Module> = sources.iter().map(|source| source.module.clone()).collect();
    let graph: BTreeMap<Module, BTreeSet<Module>> = sources
        .iter()
        .map(|source| (source.module.clone(), uses(source, &modules)))
        .collect();
    let mut problems = Vec::new();

    // Nothing reaches into a module that contains it: a folder's `mod.rs` puts its parts
    // together, it does not serve them.
    for (module, used) in &graph {
        for target in used {
            if module.starts_with(target) {
                problems.push(format!(
                    "{} uses {}, which contains it",
                    name(module),
                    name(target)
                ));
            }
        }
    }

    // The crate root's map lists the top-level modules from the top down: each uses only
    // those below it.
    let lib = sources
        .iter()
        .find(|source| source.module.is_empty())
        .unwrap();
    let order = lib.declared_modules();
    for (module, used) in &graph {
        let Some(own) = module.first() else { continue };
        let own_rank = order.iter().position(|name| name == own).unwrap();
        for target in used {
            let Some(other) = target.first().filter(|other| *other != own) else {
                continue;
            };
            let rank = order.iter().position(|name| name == other).unwrap();
            if rank < own_rank {
                problems.push(format!(
                    "{} uses {}, listed above it in lib.rs",
                    name(module),
                    name(target)
                ));
            }
        }
    }

    // Tasks share only what lies below them, never each other.
    for (module, used) in &graph {
        if let [tasks, task, ..] = module.as_slice() {
            if tasks != "tasks" {
                continue;
            }
            for target in used {
                if let [other_tasks, other, ..] = target.as_slice() {
                    if other_tasks == "tasks" && other != task {
                        problems.push(format!("{} uses {}", name(module), name(target)));
                    }
                }
            }
        }
    }

    // Tasks receive what they use (their settings, the recorder, their clients, a
    // cancellation token), never the generation's shared state.
    for (module, used) in &graph {
        if module.first().is_some_and(|top| top == "tasks")
            && used
                .iter()
                .any(|target| target.first().is_some_and(|top| top == "shared"))
        {
            problems.push(format!(
                "{} uses shared: a task is given what it uses",
                name(module)
            ));
        }
    }

    // No circles, at any depth: a depth-first search finds none.
    fn visit(
        module: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
        problems: &mut Vec<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(start) = path.iter().position(|on_path| on_path == module) {
            let circle: Vec<String> = path[start..].iter().chain([module]).map(name).collect();
            problems.push(format!("import circle: {}", circle.join(" -> ")));
            return;
        }
        path.push(module.clone());
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done, problems);
        }
        path.pop();
        done.insert(module.clone());
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut problems);
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Only the recorder writes what `/metrics`, the status page, `check`, the bundle and
/// readiness read: no module outside it (and `metrics`, which knows no task) declares or
/// updates a metric family, and the stores it keeps (`src/recorder/{observed,permissions,
/// status}.rs`) offer everyone else reads only; their writes are `pub(super)`, the recorder's.
/// A task reports what it observed with `Recorder::record`.
#[test]
fn only_the_recorder_writes_the_stores() {
    const WRITES: [&str; 8] = [
        "prometheus_client::metrics",
        "Family<",
        "get_or_create(",
        ".inc()",
        ".inc_by(",
        "impl Families for",
        "metrics.add(",
        "registry.register",
    ];
    let mut problems = Vec::new();
    for source in sources() {
        if matches!(
            source.module.first().map(String::as_str),
            Some("recorder" | "metrics")
        ) {
            continue;
        }
        for (number, line) in source.code().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for write in WRITES.iter().filter(|write| line.contains(*write)) {
                problems.push(format!(
                    "{}:{}: `{write}` outside the recorder: report an observation instead",
                    source.path.display(),
                    number + 1
                ));
            }
        }
    }
    // What each store lets the rest of the crate call: reads (and value constructors).
    let views: [(&str, &[&str]); 3] = [
        (
            "recorder/observed.rs",
            &[
                "connections",
                "partitions",
                "metadata",
                "groups_behind",
                "empty",
            ],
        ),
        (
            "recorder/permissions.rs",
            &["as_str", "new", "describe", "states", "causes"],
        ),
        ("recorder/status.rs", &["readiness"]),
    ];
    for (file, allowed) in views {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for line in text.lines() {
            let Some(rest) = line
                .trim_start()
                .strip_prefix("pub(crate) fn ")
                .or_else(|| line.trim_start().strip_prefix("pub fn "))
            else {
                continue;
            };
            let name = rest.split(['(', '<']).next().unwrap_or_default();
            if !allowed.contains(&name) {
                problems.push(format!(
                    "{file}: `{name}` is open to the crate; a store's writes are `pub(super)`, the recorder's (a new read goes in this test's list)"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
