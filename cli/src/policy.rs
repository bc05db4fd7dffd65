//! `convergio policy …`: validate and test Cedar policy files offline, and
//! apply, diff, check, roll back and show the policy set of a running server
//! through its `/v1/policies` API (administrators only).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use convergio_policy::PolicyEngine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::ServerArgs;

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a Cedar file against the shipped schema (offline).
    Validate {
        /// The Cedar policy file.
        file: PathBuf,
    },
    /// Validate, then make a Cedar file the server's active policy set.
    Apply {
        /// The Cedar policy file.
        file: PathBuf,
        /// Why (kept with the version).
        #[arg(long)]
        reason: String,
    },
    /// Show how a Cedar file differs from the server's active set.
    Diff {
        /// The Cedar policy file.
        file: PathBuf,
    },
    /// Ask the server whether a request would be allowed, and why.
    Check {
        /// The caller: JSON (`{"subject":…,"org":…,"scopes":[…],"method":…}`)
        /// or `subject[@org]`.
        #[arg(long)]
        principal: String,
        /// Scopes of a `subject[@org]` principal, comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// How a `subject[@org]` principal authenticated (jwt, api_key, mtls,
        /// admin_token, anonymous).
        #[arg(long, default_value = "jwt")]
        method: String,
        /// The action (discover, read_card, send_message, …).
        #[arg(long)]
        action: String,
        /// The resource: JSON (`{"type":"agent","id":…,"org":…,"trust":…}`),
        /// `policy` or `system`.
        #[arg(long)]
        resource: String,
        /// The context as JSON (`{"a2a_method":…,"skill":…,"graph_run":…}`).
        #[arg(long)]
        context: Option<String>,
    },
    /// Run YAML policy tests in a directory (offline).
    Test {
        /// The directory of `*.yaml` test files.
        dir: PathBuf,
        /// The Cedar file under test [default: the embedded example set].
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Make an earlier version active again (as a new version).
    Rollback {
        /// The version to restore.
        version: i64,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reset to the shipped policy set (a new version; administrators only).
    Reset,
    /// Show the active policy set (or a version) and the version history.
    Show {
        /// A version [default: the active one].
        version: Option<i64>,
    },
}

/// Runs a policy subcommand.
pub async fn run(server: &ServerArgs, command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Validate { file } => {
            let text = read(&file)?;
            validate(&file, &text)?;
            say!("{}: valid", file.display());
            Ok(())
        }
        PolicyCommand::Test { dir, policies } => test(&dir, policies.as_deref()),
        PolicyCommand::Apply { file, reason } => {
            let text = read(&file)?;
            validate(&file, &text)?;
            let client = client(server)?;
            let answer = client
                .send(
                    Method::PUT,
                    "/v1/policies",
                    Some(&json!({"policies": text, "reason": reason})),
                    None,
                )
                .await?;
            print_version(&answer.body, server.json, "applied");
            Ok(())
        }
        PolicyCommand::Diff { file } => {
            let text = read(&file)?;
            let active = active_text(&client(server)?).await?;
            let diff = line_diff(&active, &text);
            if diff.is_empty() {
                say!("{}: same as the active set", file.display());
            } else {
                say!("--- active\n+++ {}", file.display());
                for line in diff {
                    say!("{line}");
                }
            }
            Ok(())
        }
        PolicyCommand::Check {
            principal,
            scopes,
            method,
            action,
            resource,
            context,
        } => {
            let body = json!({
                "principal": principal_json(&principal, &scopes, &method)?,
                "action": action,
                "resource": resource_json(&resource)?,
                "context": match context {
                    Some(text) => serde_json::from_str::<Value>(&text)
                        .context("--context is not valid JSON")?,
                    None => json!({}),
                },
            });
            let answer = client(server)?
                .send(Method::POST, "/v1/policies:check", Some(&body), None)
                .await?;
            if server.json {
                document!("{}", answer.body);
            } else {
                let decision = answer.body["decision"].as_str().unwrap_or("?");
                let determining: Vec<&str> = answer.body["determining"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                say!(
                    "{decision} (policy version {}; determined by: {})",
                    answer.body["version"],
                    if determining.is_empty() {
                        "no policy: default deny".to_owned()
                    } else {
                        determining.join(", ")
                    }
                );
            }
            Ok(())
        }
        PolicyCommand::Rollback { version, reason } => {
            let answer = client(server)?
                .send(
                    Method::POST,
                    "/v1/policies:rollback",
                    Some(&json!({"version": version, "reason": reason})),
                    None,
                )
                .await?;
            print_version(&answer.body, server.json, "rolled back");
            Ok(())
        }
        PolicyCommand::Reset => {
            let answer = client(server)?
                .send(Method::DELETE, "/v1/policies", None, None)
                .await?;
            print_version(&answer.body, server.json, "reset to the shipped set");
            Ok(())
        }
        PolicyCommand::Show { version } => {
            let client = client(server)?;
            let list = client
                .send(Method::GET, "/v1/policies", None, None)
                .await?
                .body;
            let Some(wanted) = version.or_else(|| list["active"].as_i64()) else {
                say!("no policy set is stored yet");
                return Ok(());
            };
            let stored = client
                .send(Method::GET, &format!("/v1/policies/{wanted}"), None, None)
                .await?
                .body;
            if server.json {
                document!("{}", json!({"list": list, "version": stored}));
                return Ok(());
            }
            say!("active version: {}", list["active"]);
            for entry in list["versions"].as_array().into_iter().flatten() {
                say!(
                    "  v{:<4} {} {:<12} {}{}",
                    entry["version"],
                    entry["created_at"].as_str().unwrap_or(""),
                    entry["author"].as_str().unwrap_or(""),
                    entry["reason"].as_str().unwrap_or(""),
                    if entry["active"].as_bool() == Some(true) {
                        "  (active)"
                    } else {
                        ""
                    }
                );
            }
            say!("\n--- version {wanted} ---");
            say!("{}", stored["text"].as_str().unwrap_or(""));
            Ok(())
        }
    }
}

fn client(server: &ServerArgs) -> anyhow::Result<Client> {
    Client::new(&server.server, server.token.clone(), &server.data_dir)
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn engine() -> anyhow::Result<PolicyEngine> {
    PolicyEngine::new(convergio_policy::engine::DEFAULT_SCHEMA).context("loading the Cedar schema")
}

/// Validates `text`; every problem is reported as `file:line:column: message`.
fn validate(file: &Path, text: &str) -> anyhow::Result<()> {
    if let Err(diagnostics) = engine()?.validate(text) {
        let lines: Vec<String> = diagnostics
            .iter()
            .map(|diagnostic| format!("{}:{diagnostic}", file.display()))
            .collect();
        bail!(
            "{} is not a valid policy set:\n{}",
            file.display(),
            lines.join("\n")
        );
    }
    Ok(())
}

fn test(dir: &Path, policies: Option<&Path>) -> anyhow::Result<()> {
    let engine = engine()?;
    let text = match policies {
        Some(file) => {
            let text = read(file)?;
            validate(file, &text)?;
            text
        }
        None => convergio_policy::engine::EXAMPLE_POLICIES.to_owned(),
    };
    engine
        .load(None, &text)
        .context("loading the policies under test")?;
    let report = convergio_policy::testing::run_policy_tests(dir, &engine)?;
    for failure in &report.failures {
        say!(
            "FAIL {}: {}: {}",
            failure.file.display(),
            failure.case,
            failure.message
        );
    }
    say!(
        "{} file(s), {} case(s), {} passed, {} failed",
        report.files,
        report.cases,
        report.passed,
        report.failures.len()
    );
    if !report.success() {
        bail!("policy tests failed");
    }
    Ok(())
}

async fn active_text(client: &Client) -> anyhow::Result<String> {
    let list = client
        .send(Method::GET, "/v1/policies", None, None)
        .await?
        .body;
    let Some(active) = list["active"].as_i64() else {
        return Ok(String::new());
    };
    let stored = client
        .send(Method::GET, &format!("/v1/policies/{active}"), None, None)
        .await?
        .body;
    Ok(stored["text"].as_str().unwrap_or_default().to_owned())
}

fn print_version(body: &Value, raw: bool, verb: &str) {
    if raw {
        document!("{}", body);
    } else {
        say!(
            "{verb}: version {} is active ({})",
            body["version"],
            body["reason"].as_str().unwrap_or("")
        );
    }
}

/// A principal from JSON or `subject[@org]` with `scopes` and `method`.
fn principal_json(text: &str, scopes: &str, method: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).context("--principal is not valid JSON");
    }
    let (subject, org) = match text.split_once('@') {
        Some((subject, org)) => (subject, Some(org)),
        None => (text, None),
    };
    let scopes: Vec<&str> = scopes
        .split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .collect();
    Ok(json!({"subject": subject, "org": org, "scopes": scopes, "method": method}))
}

/// A resource from JSON, `policy` or `system`.
fn resource_json(text: &str) -> anyhow::Result<Value> {
    match text.trim() {
        "policy" => Ok(json!({"type": "policy"})),
        "system" => Ok(json!({"type": "system"})),
        other => serde_json::from_str(other).context(
            "--resource must be JSON such as {\"type\":\"agent\",\"id\":…}, or policy, or system",
        ),
    }
}

/// A unified-style line diff (`-` old, `+` new) from the longest common
/// subsequence; empty when the texts are the same. Policy files are small,
/// so the quadratic table is fine.
pub fn line_diff(old: &str, new: &str) -> Vec<String> {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    let mut changed = false;
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push(format!(" {}", old[i]));
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || common[i][j + 1] >= common[i + 1][j]) {
            lines.push(format!("+{}", new[j]));
            changed = true;
            j += 1;
        } else {
            lines.push(format!("-{}", old[i]));
            changed = true;
            i += 1;
        }
    }
    if changed {
        lines
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_removed_and_added_lines() {
        assert!(line_diff("a\nb\n", "a\nb\n").is_empty());
        assert_eq!(
            line_diff("a\nb\nc", "a\nc\nd"),
            vec![" a", "-b", " c", "+d"]
        );
    }

    #[test]
    fn shorthand_principal_and_resource_become_json() {
        let principal =
            principal_json("alice@acme.example", "admin, agents:write", "jwt").expect("shorthand");
        assert_eq!(principal["org"], json!("acme.example"));
        assert_eq!(principal["scopes"], json!(["admin", "agents:write"]));
        assert_eq!(
            resource_json("policy").expect("keyword"),
            json!({"type": "policy"})
        );
        assert!(resource_json("agent").is_err());
    }
}
