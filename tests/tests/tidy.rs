//! Tidy checks: the house rules that a reviewer would otherwise repeat
//! (STYLE.md). They read the source tree as text; no build needed.

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
        // SQL lives only in the storage modules of the registry and policy crates and in
        // the storage crate (which holds the orchestrator's run journal).
        // The test kit (`tests`) only creates and drops test databases.
        (
            "sqlx",
            &["registry", "orchestrator", "policy", "store", "tests"],
        ),
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
