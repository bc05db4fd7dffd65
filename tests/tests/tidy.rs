//! Tidy checks: the house rules that a reviewer would otherwise repeat
//! (STYLE.md). They read the source tree as text; no build needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use convergio_tests::workspace_root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name.starts_with('.') || name == "target" || name.starts_with("target-") {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    assert!(
        !files.is_empty(),
        "found no Rust files under the workspace root"
    );
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc_comment() {
    let missing: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:#?}"
    );
}

#[test]
fn no_stubs_or_ignored_tests_in_the_tree() {
    // Spelled in pieces so this file does not match the hook's own search.
    let banned = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("#[", "ignore"),
        concat!("#[", "should_panic"),
    ];
    let this_file = Path::new(file!()).file_name().map(|name| name.to_owned());
    let offenders: Vec<String> = all_rust_files()
        .into_iter()
        .filter(|path| path.file_name().map(|name| name.to_owned()) != this_file)
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            banned
                .iter()
                .find(|needle| text.contains(*needle))
                .map(|needle| format!("{}: {needle}", path.display()))
        })
        .collect();
    assert!(offenders.is_empty(), "stubs found: {offenders:#?}");
}

/// Crates that may depend on a dependency, by dependency (ARCHITECTURE.md invariants).
#[test]
fn dependency_boundaries_hold() {
    let rules: [(&str, &[&str]); 2] = [
        // SQL lives only in the storage crate (issue #16).
        ("sqlx", &["store"]),
        // anyhow only at the binary's edge.
        ("anyhow", &["cli"]),
    ];
    let root = workspace_root();
    for (dependency, allowed) in rules {
        for entry in std::fs::read_dir(&root)
            .expect("workspace root is readable")
            .flatten()
        {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let crate_dir = entry.file_name().to_string_lossy().into_owned();
            let uses = text.lines().any(|line| {
                line.trim_start().starts_with(&format!("{dependency}."))
                    || line.trim_start().starts_with(&format!("{dependency} "))
            });
            if uses {
                assert!(
                    allowed.contains(&crate_dir.as_str()),
                    "{crate_dir} depends on {dependency}, which only {allowed:?} may use"
                );
            }
        }
    }
    // The leaf crates build on a few workspace crates only
    // (ARCHITECTURE.md, "Dependencies point one way").
    let leaves: [(&str, &[&str]); 3] = [
        // The planning layer: the shared vocabulary and the graph DSL.
        ("planner", &["convergio-schemas", "convergio-orchestrator"]),
        // Memory: the store implements its trait, the gateway serves it.
        ("memory", &["convergio-schemas"]),
        // Model agents: the A2A server core runs them.
        ("models", &["convergio-schemas", "convergio-agents"]),
    ];
    for (leaf, allowed) in leaves {
        let manifest = std::fs::read_to_string(root.join(leaf).join("Cargo.toml"))
            .unwrap_or_else(|error| panic!("the {leaf} manifest is unreadable: {error}"));
        let dependencies = manifest
            .split("[dev-dependencies]")
            .next()
            .unwrap_or_default();
        for line in dependencies.lines() {
            let name = line
                .trim_start()
                .split(['.', ' ', '='])
                .next()
                .unwrap_or("");
            if name.starts_with("convergio-") {
                assert!(
                    allowed.contains(&name),
                    "{leaf} depends on {name}; it may use only {allowed:?}"
                );
            }
        }
    }
}

/// Places no clone has: the `shared/` directory the project was developed
/// beside, and the development machine's absolute paths. Spelled in pieces
/// so this file does not flag itself.
const OUTSIDE_MARKERS: [&str; 2] = [concat!("../", "shared"), concat!("/", "work", "/")];

/// The files whose paths must stay inside the repository: every Rust file
/// (tests, benches, build scripts and sources alike) and every script
/// (`*.sh`, `*.py`, and whatever lives in `scripts/` and `.ci/`).
fn path_checked_files(dir: &Path, in_scripts: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            let scripts = in_scripts || name == "scripts" || name == ".ci";
            let hidden = name.starts_with('.') && name != ".ci";
            if hidden || name == "target" || name.starts_with("target-") {
                continue;
            }
            path_checked_files(&path, scripts, out);
        } else if in_scripts
            || name.ends_with(".rs")
            || name.ends_with(".sh")
            || name.ends_with(".py")
        {
            out.push(path);
        }
    }
}

/// Whether a byte can be part of a path token (`../examples/cards`).
fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'/' | b'_' | b'-')
}

/// The paths in a Rust file's `text` that leave the repository, as
/// `(token, why)`. `file_dir` and `crate_dir` are relative to the workspace
/// root. A token holding `../` is resolved lexically: inside `include_str!`,
/// `include_bytes!` or `include!` (looked for back to the start of the
/// statement) against the file's directory, as the compiler does; anywhere
/// else against the crate directory, which is both `CARGO_MANIFEST_DIR`
/// (a token starting `/..` was glued to it with `concat!` or `format!`) and
/// the working directory of a test or bench. It leaves the repository when a
/// `..` climbs above the workspace root.
fn paths_leaving_the_repository(
    text: &str,
    file_dir: &Path,
    crate_dir: &Path,
) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for marker in OUTSIDE_MARKERS {
        if text.contains(marker) {
            found.push((marker.to_owned(), "names a place outside the repository"));
        }
    }
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(offset) = text[from..].find("../") {
        let at = from + offset;
        let mut start = at;
        while start > 0 && is_path_byte(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at;
        while end < bytes.len() && is_path_byte(bytes[end]) {
            end += 1;
        }
        from = end;
        let token = &text[start..end];
        // An absolute path (a URL path in a test, say) is not a file the
        // test reads relative to the repository.
        let relative = match token.strip_prefix('/') {
            Some(rest) if rest.starts_with("..") => rest,
            Some(_) => continue,
            None => token,
        };
        let statement_start = text[..start].rfind([';', '{', '}']).map_or(0, |i| i + 1);
        let statement = &text[statement_start..start];
        let base = if statement.contains("include_str!")
            || statement.contains("include_bytes!")
            || statement.contains("include!")
        {
            file_dir
        } else {
            crate_dir
        };
        let mut depth: Vec<String> = base
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect();
        let mut escapes = false;
        for part in relative.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if depth.pop().is_none() {
                        escapes = true;
                        break;
                    }
                }
                other => depth.push(other.to_owned()),
            }
        }
        if escapes {
            found.push((token.to_owned(), "climbs out of the workspace root"));
        }
    }
    found
}

/// Issue #14: a fresh clone must pass its tests, so no test, bench, build
/// script or script may read a path outside the repository (fixtures are
/// copied in, with their origin and licence noted).
#[test]
fn no_file_reaches_outside_the_repository() {
    let root = workspace_root();
    let mut files = Vec::new();
    path_checked_files(&root, false, &mut files);
    assert!(
        files.len() > 10,
        "found only {} files to check",
        files.len()
    );
    let this_file = Path::new(file!()).file_name().map(|name| name.to_owned());
    let mut offenders = Vec::new();
    for path in files {
        if path.file_name().map(|name| name.to_owned()) == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let relative = path.strip_prefix(&root).unwrap_or(&path);
        let file_dir = relative.parent().unwrap_or(Path::new(""));
        // The crate is the nearest directory holding a Cargo.toml.
        let crate_dir = file_dir
            .ancestors()
            .find(|dir| root.join(dir).join("Cargo.toml").is_file())
            .unwrap_or(Path::new(""));
        let is_rust = relative.extension().is_some_and(|ext| ext == "rs");
        let found = if is_rust {
            paths_leaving_the_repository(&text, file_dir, crate_dir)
        } else {
            // Scripts `cd` where they like; only the markers are certain.
            OUTSIDE_MARKERS
                .iter()
                .filter(|marker| text.contains(**marker))
                .map(|marker| ((*marker).to_owned(), "names a place outside the repository"))
                .collect()
        };
        for (token, why) in found {
            offenders.push(format!("{}: {token} {why}", relative.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "paths outside the repository (vendor what is needed, with its origin \
         and licence): {offenders:#?}"
    );
}

#[test]
fn the_outside_path_check_resolves_includes_and_manifest_paths() {
    let crate_dir = Path::new("registry");
    let file_dir = Path::new("registry/tests");
    let check = |text: &str| paths_leaving_the_repository(text, file_dir, crate_dir).len();
    // Inside the repository: the crate's sibling directories.
    assert_eq!(
        check(r#"concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/x.json")"#),
        0
    );
    assert_eq!(
        check(r#"include_str!("../../examples/cards/weather.json")"#),
        0
    );
    assert_eq!(check(r#"Path::new("..").join("../x")"#), 0);
    assert_eq!(check(r#"client.get("/agents/../v1/agents")"#), 0);
    // Outside: past the workspace root, or the known outside places.
    assert_eq!(
        check(r#"concat!(env!("CARGO_MANIFEST_DIR"), "/../../elsewhere/x.json")"#),
        1
    );
    assert_eq!(check(r#"include_str!("../../../x.json")"#), 1);
    assert_eq!(
        check(r#"Path::new(env!("CARGO_MANIFEST_DIR")).join("../../x")"#),
        1
    );
    assert_eq!(check(concat!("let p = \"/", "work", "/main/x\";")), 1);
}

/// The README's set-up section: from its heading to the next `## `.
fn readme_setup_section(readme: &str) -> &str {
    let heading = "## Set-up on a fresh machine";
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let body = &readme[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// Issue #14: a new user follows the README word by word, so its set-up
/// section holds exactly the two commands, CI runs the second, and what
/// `scripts/test.sh` sets up (the scripts it calls, nextest) is listed there.
#[test]
fn the_readme_set_up_is_two_commands_that_ci_runs() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme_setup_section(&readme);
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && !line.is_empty() && !line.starts_with('#') {
            commands.push(line);
        }
    }
    assert_eq!(
        commands,
        ["cargo run --bin convergio -- serve", "scripts/test.sh"],
        "the set-up section's commands"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines()
            .map(str::trim)
            .any(|line| !line.starts_with('#') && line.contains("scripts/test.sh")),
        ".ci/run does not call scripts/test.sh"
    );
    // What the test script relies on is named where a new user reads.
    let test_script = std::fs::read_to_string(root.join("scripts/test.sh")).expect("test.sh");
    let mut prerequisites: Vec<String> = test_script
        .split(|c: char| c.is_whitespace() || c == '"' || c == ';')
        .filter(|word| word.starts_with("scripts/") && word.ends_with(".sh"))
        .filter(|word| *word != "scripts/test.sh")
        .map(str::to_owned)
        .collect();
    prerequisites.extend(["rust-toolchain.toml", "nextest", "PyPI"].map(str::to_owned));
    for prerequisite in prerequisites {
        assert!(
            section.contains(&prerequisite),
            "the README's set-up section does not mention {prerequisite}"
        );
    }
}

// === module import circles (issue #16) ===

/// Module circles known when the check was written, by crate: each found
/// circle must lie inside one of these sets. Remove an entry once its
/// circle is gone; never add one for `gateway` or `orchestrator`.
const KNOWN_MODULE_CIRCLES: &[(&str, &[&str])] = &[
    // The storage modules are being moved into the storage crate (issue #16).
    ("registry", &["keys", "peers", "retention", "store"]),
    ("policy", &["audit", "store"]),
    // The handlers share the server's state type with the server that
    // mounts them; it belongs in a leaf module.
    ("agents", &["jsonrpc", "rest", "server"]),
];

/// Whether `byte` can be part of a Rust identifier.
fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// `text` without `//` comments (doc comments included: an intra-doc link
/// is not an import).
fn without_line_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The use tree starting at `text` (after a `crate::` or `super::`): the
/// paths it names, each as its segments with an `as` alias replacing the
/// last one. `a::{b, c::d as e}` is `[a, b]` and `[a, c, e]`.
fn use_tree_paths(text: &str) -> Vec<Vec<String>> {
    fn tree(text: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let text = text.trim_start();
        if let Some(inner) = text.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            for (at, byte) in inner.bytes().enumerate() {
                match byte {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        tree(&inner[start..at], prefix, out);
                        start = at + 1;
                        if byte == b'}' {
                            return;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
            }
            return;
        }
        let end = text
            .bytes()
            .position(|b| !is_ident_byte(b))
            .unwrap_or(text.len());
        if end == 0 {
            return;
        }
        let mut path = prefix.to_vec();
        path.push(text[..end].to_owned());
        let rest = &text[end..];
        if let Some(rest) = rest.strip_prefix("::") {
            tree(rest, &path, out);
            return;
        }
        if let Some(alias) = rest.trim_start().strip_prefix("as ") {
            let alias = alias.trim_start();
            let end = alias
                .bytes()
                .position(|b| !is_ident_byte(b))
                .unwrap_or(alias.len());
            if let Some(last) = path.last_mut() {
                *last = alias[..end].to_owned();
            }
        }
        out.push(path);
    }
    let mut out = Vec::new();
    tree(text, &[], &mut out);
    out
}

/// The names at the crate root that a file refers to: the first segment
/// after every `crate::` (grouped imports expanded), and after a `super::`
/// chain that climbs to the root from `module_path` (the file's module
/// path: `src/a2a/forward.rs` is `[a2a, forward]`, `src/a2a/mod.rs` is
/// `[a2a]`).
fn root_names(text: &str, module_path: &[String]) -> BTreeSet<String> {
    let text = without_line_comments(text);
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut add = |tail: &str| {
        for path in use_tree_paths(tail) {
            if let Some(first) = path.first() {
                names.insert(first.clone());
            }
        }
    };
    for (needle, is_super) in [("crate::", false), ("super::", true)] {
        let mut from = 0;
        while let Some(offset) = text[from..].find(needle) {
            let at = from + offset;
            from = at + needle.len();
            if at > 0 && is_ident_byte(bytes[at - 1]) {
                continue;
            }
            if !is_super {
                add(&text[from..]);
                continue;
            }
            // A `super::super::` chain is read once, from its first link.
            if text[..at].ends_with("super::") {
                continue;
            }
            let mut climbs = 1;
            let mut tail = &text[from..];
            while let Some(rest) = tail.strip_prefix("super::") {
                climbs += 1;
                tail = rest;
            }
            if climbs >= module_path.len() {
                add(tail);
            }
        }
    }
    names
}

/// One crate's graph of top-level modules: `a → b` when a file of module
/// `a` names something of module `b`.
struct ModuleGraph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

/// Builds the module graph of the crate whose sources are in `src`.
///
/// A file's module is the first component of its path under `src/`
/// (`src/foo.rs` and everything under `src/foo/` are `foo`); the crate
/// root (`lib.rs`, `main.rs`) and `src/bin/` belong to no module. A name
/// the root re-exports (`pub use foo::Bar;` in `lib.rs`) counts as a
/// reference to the module it comes from, so `crate::Bar` is an edge to
/// `foo`. Paths in comments are not references; paths in string literals
/// and inline `mod` blocks are read like any other text (a rare false edge
/// errs on the safe side).
fn module_graph(src: &Path) -> ModuleGraph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("src is readable").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lib.rs" || name == "main.rs" || name == "bin" {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".rs") {
            modules.insert(stem.to_owned());
        } else if entry.path().is_dir() {
            modules.insert(name);
        }
    }
    let mut reexports = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(text) = std::fs::read_to_string(src.join(root)) else {
            continue;
        };
        let text = without_line_comments(&text);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("use ") {
            let line_start = rest[..at].rfind(['\n', ';', '}']).map_or(0, |i| i + 1);
            let prefix = rest[line_start..at].trim();
            let end = rest[at..].find(';').map_or(rest.len(), |i| at + i);
            let tree = rest[at + 4..end].trim_start();
            rest = &rest[end..];
            if !(prefix == "pub" || prefix.starts_with("pub(")) {
                continue;
            }
            let tree = tree.strip_prefix("crate::").unwrap_or(tree);
            for path in use_tree_paths(tree) {
                if let (Some(first), Some(last)) = (path.first(), path.last()) {
                    if modules.contains(first) {
                        reexports.insert(last.clone(), first.clone());
                    }
                }
            }
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let is_root = parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs");
        if is_root || parts[0] == "bin" {
            continue;
        }
        if let Some(last) = parts.pop() {
            if last != "mod.rs" {
                parts.push(last.trim_end_matches(".rs").to_owned());
            }
        }
        let module = parts[0].clone();
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for name in root_names(&text, &parts) {
            let target = if modules.contains(&name) {
                Some(name)
            } else {
                reexports.get(&name).cloned()
            };
            if let Some(target) = target.filter(|target| *target != module) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    ModuleGraph { edges }
}

// === impl ModuleGraph ===

impl ModuleGraph {
    /// Every circle, as the set of modules on it (the strongly connected
    /// components with more than one module) and one path around it.
    fn circles(&self) -> Vec<(BTreeSet<String>, Vec<String>)> {
        let reaches = |from: &str| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.to_owned()];
            while let Some(node) = stack.pop() {
                for next in self.edges.get(&node).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&String, BTreeSet<String>> = self
            .edges
            .keys()
            .map(|node| (node, reaches(node)))
            .collect();
        let mut circles: Vec<(BTreeSet<String>, Vec<String>)> = Vec::new();
        for (node, reached) in &reach {
            if !reached.contains(*node) || circles.iter().any(|(set, _)| set.contains(*node)) {
                continue;
            }
            let members: BTreeSet<String> = reached
                .iter()
                .filter(|other| reach.get(other).is_some_and(|back| back.contains(*node)))
                .cloned()
                .collect();
            circles.push((members.clone(), self.path_around(node, &members)));
        }
        circles
    }

    /// The shortest path from `start` back to itself inside `members`.
    fn path_around(&self, start: &str, members: &BTreeSet<String>) -> Vec<String> {
        let mut came_from: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.to_owned()]);
        while let Some(node) = queue.pop_front() {
            for next in self.edges.get(&node).into_iter().flatten() {
                if !members.contains(next) || came_from.contains_key(next) {
                    continue;
                }
                came_from.insert(next.clone(), node.clone());
                if next == start {
                    let mut path = vec![start.to_owned()];
                    let mut at = came_from[start].clone();
                    while at != start {
                        path.push(at.clone());
                        at = came_from[&at].clone();
                    }
                    path.push(start.to_owned());
                    path.reverse();
                    return path;
                }
                queue.push_back(next.clone());
            }
        }
        vec![start.to_owned()]
    }
}

/// Issue #16: no two top-level modules of a crate import each other, even
/// through others: the consumer defines the trait it needs, and shared
/// request, response and state types live in leaf modules. The graph is
/// read from `crate::…` (and root-reaching `super::…`) paths; see
/// [`module_graph`] for how a file's module is decided.
#[test]
fn no_module_import_circles_within_a_crate() {
    let root = workspace_root();
    let mut crates = 0;
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&root).expect("workspace root").flatten() {
        let src = entry.path().join("src");
        if !entry.path().join("Cargo.toml").is_file() || !src.is_dir() {
            continue;
        }
        crates += 1;
        let crate_dir = entry.file_name().to_string_lossy().into_owned();
        for (members, path) in module_graph(&src).circles() {
            let known = KNOWN_MODULE_CIRCLES.iter().any(|(name, allowed)| {
                *name == crate_dir && members.iter().all(|m| allowed.contains(&m.as_str()))
            });
            if known {
                eprintln!("known circle in {crate_dir}: {}", path.join(" → "));
            } else {
                offenders.push(format!("{crate_dir}: {}", path.join(" → ")));
            }
        }
    }
    assert!(crates >= 8, "found only {crates} crates");
    assert!(
        offenders.is_empty(),
        "module import circles (move the shared type to a leaf module, or let \
         the consumer define the trait): {offenders:#?}"
    );
    assert!(
        KNOWN_MODULE_CIRCLES
            .iter()
            .all(|(name, _)| *name != "gateway" && *name != "orchestrator"),
        "gateway and orchestrator must stay free of module circles"
    );
}

#[test]
fn the_module_graph_reads_grouped_imports_root_paths_and_reexports() {
    let path = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        use_tree_paths("a::{b, c::{d as e, f}}, g"),
        vec![
            path(&["a", "b"]),
            path(&["a", "c", "e"]),
            path(&["a", "c", "f"])
        ]
    );
    let names = |text: &str, module: &[&str]| {
        root_names(text, &path(module))
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("use crate::{a::X, b};\nlet x = crate::c::f();", &["m"]),
        ["a", "b", "c"]
    );
    // `super::` from `src/m/x.rs` stays in `m`; two levels reach the root.
    assert_eq!(names("use super::y::Z;", &["m", "x"]), Vec::<String>::new());
    assert_eq!(names("use super::super::n::Z;", &["m", "x"]), ["n"]);
    assert_eq!(names("use super::n;", &["m"]), ["n"]);
    // Comments and other crates' paths are not references.
    assert_eq!(
        names("/// see [`crate::doc`]\nuse other_crate::x;", &["m"]),
        Vec::<String>::new()
    );
    let graph = ModuleGraph {
        edges: [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
            .into_iter()
            .fold(BTreeMap::new(), |mut edges, (from, to)| {
                edges
                    .entry(from.to_owned())
                    .or_insert_with(BTreeSet::new)
                    .insert(to.to_owned());
                edges
            }),
    };
    let circles = graph.circles();
    assert_eq!(circles.len(), 1);
    assert_eq!(circles[0].1, ["a", "b", "c", "a"]);
}
