//! YAML policy tests: files of cases (principal, action, resource, context
//! → expected decision), run against an engine. `convergio policy test DIR`
//! and this crate's test suite use [`run_policy_tests`].
//!
//! File shape:
//! ```yaml
//! cases:
//!   - name: same-org caller may send a message
//!     principal: { subject: alice, org: acme.example, scopes: [], method: jwt }
//!     action: send_message
//!     resource: { type: agent, id: "convergio://agents/echo", org: acme.example, trust: registered }
//!     context: { a2a_method: SendMessage }   # optional
//!     expect: allow                          # allow | deny
//!     determining: [internal-same-org]       # optional, exact set
//! ```

use std::path::{Path, PathBuf};

use convergio_schemas::Principal;
use serde::{Deserialize, Serialize};

use crate::engine::{Action, AuthzRequest, PolicyEngine, RequestContext, Resource};
use crate::error::{PolicyError, Result};

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The request must be allowed.
    Allow,
    /// The request must be denied.
    Deny,
}

/// One test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestCase {
    /// What the case checks.
    pub name: String,
    /// The caller.
    pub principal: Principal,
    /// The action.
    pub action: Action,
    /// The resource.
    pub resource: Resource,
    /// The context (defaults: no method, skill or graph run, now = 0).
    #[serde(default)]
    pub context: RequestContext,
    /// The expected decision.
    pub expect: Expect,
    /// The exact set of determining policy ids, when given.
    #[serde(default)]
    pub determining: Option<Vec<String>>,
}

/// A test file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestFile {
    /// The cases.
    pub cases: Vec<PolicyTestCase>,
}

/// A case that did not get its expected decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestFailure {
    /// The file.
    pub file: PathBuf,
    /// The case name.
    pub case: String,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Cases run.
    pub cases: usize,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failures: Vec<TestFailure>,
}

// === impl Report ===

impl Report {
    /// Whether every case passed (and there was at least one).
    pub fn success(&self) -> bool {
        self.failures.is_empty() && self.cases > 0
    }
}

/// Parses one test file's text; `path` names it in errors.
pub fn parse_test_file(path: &Path, text: &str) -> Result<PolicyTestFile> {
    serde_yaml::from_str(text)
        .map_err(|error| PolicyError::InvalidInput(format!("{}: {error}", path.display())))
}

/// Runs the cases of one parsed file.
pub fn run_cases(path: &Path, file: &PolicyTestFile, engine: &PolicyEngine, report: &mut Report) {
    for case in &file.cases {
        report.cases += 1;
        let decision = engine.authorize(&AuthzRequest {
            principal: &case.principal,
            action: case.action,
            resource: &case.resource,
            context: &case.context,
        });
        let actual = if decision.allowed {
            Expect::Allow
        } else {
            Expect::Deny
        };
        let mut problems = Vec::new();
        if actual != case.expect {
            problems.push(format!(
                "expected {:?}, got {:?} (determining: {:?})",
                case.expect, actual, decision.determining
            ));
        }
        if let Some(expected) = &case.determining {
            let mut expected = expected.clone();
            expected.sort();
            if expected != decision.determining {
                problems.push(format!(
                    "expected determining policies {expected:?}, got {:?}",
                    decision.determining
                ));
            }
        }
        if !decision.errors.is_empty() {
            problems.push(format!("evaluation errors: {:?}", decision.errors));
        }
        if problems.is_empty() {
            report.passed += 1;
        } else {
            report.failures.push(TestFailure {
                file: path.to_owned(),
                case: case.name.clone(),
                message: problems.join("; "),
            });
        }
    }
}

/// Runs every `*.yaml`/`*.yml` file in `dir` (sorted by name) against
/// `engine`. A file of the wrong shape is an error naming the file and field.
pub fn run_policy_tests(dir: &Path, engine: &PolicyEngine) -> Result<Report> {
    let io_error = |source| PolicyError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let is_yaml = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| extension == "yaml" || extension == "yml");
        if is_yaml {
            paths.push(path);
        }
    }
    paths.sort();
    let mut report = Report::default();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file = parse_test_file(&path, &text)?;
        report.files += 1;
        run_cases(&path, &file, engine, &mut report);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lives here rather than with the engine's tests, so the engine module
    // does not import the module that builds on it.
    #[test]
    fn shipped_policy_tests_pass_against_the_example_set() {
        let engine = PolicyEngine::with_defaults().expect("shipped schema and policies are valid");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/tests");
        let report = run_policy_tests(&dir, &engine).expect("test files are well-formed");
        assert!(report.failures.is_empty(), "{:#?}", report.failures);
        assert!(report.files >= 6 && report.cases >= 20, "{report:?}");
    }
}
