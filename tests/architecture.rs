//! The layout rules of spec/architecture.md, checked on the source itself: no import cycle in
//! `src/` (between top-level modules, nor between files), the domain crate never imports the
//! runtime, and no source file grows past 400 lines without saying why.
//!
//! Size: a small reader of Rust paths (use trees, re-exports, inline paths) is most of it; it
//! is one piece, and it is checked by its own test.
//!
//! A dependency is a path that names an item of another module: `crate::queue::Queue`,
//! `super::held::HeldJobs`, or the same inside a `use` tree. A path through a re-export
//! (`pub use handle::Queue` in `queue/mod.rs`) is followed to the file that defines the item,
//! so a child that uses what its parent re-exports does not count as using its parent.
//! Declaring a module (`mod x;`) and re-exporting it are structure, not dependencies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A module path, without `crate`: `["queue", "handle"]`.
type ModPath = Vec<String>;

struct Module {
    text: String,
    /// `pub use a::b::Item;` → `Item` is `a::b::Item`, relative to this module.
    reexports: HashMap<String, Vec<String>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_path(root: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, string literals or `#[cfg(test)]` modules, which
/// name paths that are not dependencies of the module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every `use` tree of `code`, flattened into paths: `use a::{b, c::d};` → `a::b`, `a::c::d`,
/// each marked public when it is a re-export.
fn use_paths(code: &str) -> Vec<(bool, Vec<String>)> {
    const STARTS: [(&str, bool); 4] = [
        ("use ", false),
        ("pub use ", true),
        ("pub(crate) use ", true),
        ("pub(super) use ", true),
    ];
    let mut out = Vec::new();
    for chunk in code.split(';') {
        // A use statement is the last thing before its `;`: find the line it starts on.
        let mut found = None;
        let mut offset = 0;
        for line in chunk.split_inclusive('\n') {
            let trimmed = line.trim_start();
            for (start, public) in STARTS {
                if let Some(rest) = trimmed.strip_prefix(start) {
                    let at = offset + (line.len() - rest.len());
                    found = Some((at, public));
                }
            }
            offset += line.len();
        }
        let Some((at, public)) = found else { continue };
        let tree = chunk[at..].split_whitespace().collect::<Vec<_>>().join(" ");
        for path in expand(&tree) {
            out.push((public, path));
        }
    }
    out
}

fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.split("::").map(|s| s.trim().to_string()).collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .trim()
        .trim_end_matches("::")
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for part in parts.into_iter().filter(|p| !p.trim().is_empty()) {
        for rest in expand(part) {
            let mut path = prefix.clone();
            if rest != ["self"] {
                path.extend(rest);
            }
            out.push(path);
        }
    }
    out
}

/// Paths written inline in code: `crate::a::b(...)`, `super::x::Y`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            );
        }
    }
    out
}

struct Tree {
    modules: BTreeMap<ModPath, Module>,
}

impl Tree {
    fn load(root: &Path) -> Tree {
        let mut files = Vec::new();
        rust_files(root, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            let path = module_path(root, &file);
            // Test modules in files of their own (`#[cfg(test)] mod tests;`) and the tests'
            // support are not what the runtime is built of.
            if path
                .last()
                .is_some_and(|m| m == "tests" || m == "test_support")
            {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = code_of(&text);
            let mut reexports = HashMap::new();
            for (public, path) in use_paths(&code) {
                if public {
                    if let Some(item) = path.last() {
                        reexports.insert(item.clone(), path.clone());
                    }
                }
            }
            modules.insert(module_path(root, &file), Module { text, reexports });
        }
        Tree { modules }
    }

    /// The module that defines what `path` (as written in module `at`) names, following
    /// re-exports; None for paths outside this crate.
    fn resolve(&self, at: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let mut abs: ModPath = match path[0].as_str() {
            "crate" => Vec::new(),
            "super" => {
                let mut base = at.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return self.locate(base, depth);
            }
            "self" => at.clone(),
            _ => {
                // Relative to this module: a child module, or a name it re-exports.
                let mut child = at.clone();
                child.push(path[0].clone());
                if self.modules.contains_key(&child) {
                    child.extend(path[1..].iter().cloned());
                    return self.locate(child, depth);
                }
                return None;
            }
        };
        abs.extend(path[1..].iter().cloned());
        self.locate(abs, depth)
    }

    /// The longest prefix of `abs` that is a module; then, if the next name is a re-export
    /// of that module, where it comes from.
    fn locate(&self, abs: ModPath, depth: usize) -> Option<ModPath> {
        let mut module = abs.clone();
        while !module.is_empty() && !self.modules.contains_key(&module) {
            module.pop();
        }
        if !self.modules.contains_key(&module) {
            return None;
        }
        if let Some(item) = abs.get(module.len()) {
            if let Some(target) = self.modules[&module].reexports.get(item) {
                if target.len() > 1 || target[0] != *item {
                    if let Some(found) = self.resolve(&module, target, depth + 1) {
                        return Some(found);
                    }
                }
            }
        }
        Some(module)
    }

    /// Which modules each module depends on, its own declarations and re-exports aside.
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (at, m) in &self.modules {
            let code = code_of(&m.text);
            let mut paths: Vec<Vec<String>> = use_paths(&code)
                .into_iter()
                .filter(|(public, _)| !public)
                .map(|(_, p)| p)
                .collect();
            paths.extend(inline_paths(&code));
            let targets = edges.entry(at.clone()).or_default();
            for p in paths {
                if let Some(to) = self.resolve(at, &p, 0) {
                    // A module using its own descendants is how a module is built.
                    if to != *at && !to.starts_with(at) {
                        targets.insert(to);
                    }
                }
            }
        }
        edges
    }
}

/// A cycle in `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        n: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut HashMap<ModPath, u8>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = HashMap::new();
    for n in edges.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(cycle: &[ModPath]) -> String {
    cycle
        .iter()
        .map(|m| format!("crate::{}", m.join("::")))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn src() -> Tree {
    Tree::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_import_cycle_between_files() {
    let edges = src().edges();
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", show(&cycle));
    }
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let mut top: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (from, tos) in src().edges() {
        let Some(f) = from.first() else { continue };
        for to in tos {
            let Some(t) = to.first() else { continue };
            if f != t {
                top.entry(vec![f.clone()])
                    .or_default()
                    .insert(vec![t.clone()]);
            }
        }
    }
    if let Some(cycle) = find_cycle(&top) {
        panic!("import cycle between top-level modules: {}", show(&cycle));
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let a: ModPath = vec!["a".into()];
    let b: ModPath = vec!["b".into()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert!(find_cycle(&edges).is_some());
    let tree = src();
    // The paths the checker must follow: a use tree, a re-export and an inline path.
    let at: ModPath = vec!["control".into(), "jobs".into()];
    assert_eq!(
        tree.resolve(&at, &["crate".into(), "queue".into(), "Queue".into()], 0),
        Some(vec!["queue".into(), "handle".into()]),
        "a re-export is followed to the file that defines the item"
    );
    assert!(tree.edges()[&at].contains(&vec!["queue".to_string(), "admin".to_string()]));
}

#[test]
fn the_domain_never_imports_the_runtime() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/src"),
        &mut files,
    );
    for f in files {
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        assert!(
            !code.contains("memwarden::"),
            "{} imports the runtime",
            f.display()
        );
    }
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/Cargo.toml"))
            .unwrap();
    assert!(
        !manifest
            .lines()
            .any(|l| l.trim_start().starts_with("memwarden ")),
        "jobs/Cargo.toml depends on the runtime"
    );
}

/// A file longer than this says why in a `//! Size:` line of its module docs.
const MAX_LINES: usize = 400;

#[test]
fn long_files_say_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "jobs/src", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let n = text.lines().count();
            (n > MAX_LINES && !text.contains("//! Size:"))
                .then(|| format!("{} ({n} lines)", f.strip_prefix(root).unwrap().display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a `//! Size:` reason: {long:?}"
    );
}

#[test]
#[ignore]
fn list_cycles() {
    let mut edges = src().edges();
    while let Some(cycle) = find_cycle(&edges) {
        eprintln!("{}", show(&cycle));
        let (a, b) = (&cycle[0], &cycle[1]);
        edges.get_mut(a).unwrap().remove(b);
    }
}
