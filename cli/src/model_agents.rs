//! `convergio agents apply FILE.yaml` and `convergio agents model
//! list|show|delete`: model agent declarations (issue 17) on a running
//! server through its `/v1/model-agents` API. `apply` reads a YAML (or
//! JSON) declaration and `PUT`s it under its name; the server checks it and
//! answers each violation with its JSON pointer.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::ServerArgs;

/// `convergio agents model …`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List this organisation's model agents and whether each can answer.
    List,
    /// Show one model agent's declaration and status.
    Show {
        /// The agent's name.
        name: String,
    },
    /// Delete a model agent (it stops answering at once).
    Delete {
        /// The agent's name.
        name: String,
    },
}

/// Reads a declaration file: YAML (JSON is YAML too) into a JSON value.
pub fn read_declaration(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    declaration_from_text(&text).with_context(|| format!("{} is not a declaration", path.display()))
}

/// A declaration's text (YAML or JSON) as a JSON value.
pub fn declaration_from_text(text: &str) -> anyhow::Result<Value> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).context("parsing YAML")?;
    let value = serde_json::to_value(yaml).context("the YAML is not representable as JSON")?;
    anyhow::ensure!(value.is_object(), "a declaration is a mapping");
    Ok(value)
}

fn agent_path(name: &str) -> String {
    format!(
        "/v1/model-agents/{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// `convergio agents apply FILE`.
pub async fn apply(server: &ServerArgs, file: &Path) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let document = read_declaration(file)?;
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .with_context(|| format!("{} has no name", file.display()))?
        .to_owned();
    let answer = client
        .send(Method::PUT, &agent_path(&name), Some(&document), None)
        .await?;
    if server.json {
        document!("{}", answer.body);
    } else {
        let version = answer.body["version"].as_i64().unwrap_or_default();
        let verb = if version == 1 { "created" } else { "updated" };
        say!(
            "{verb} model agent {name} (version {version}, org {})",
            text(&answer.body["org"])
        );
        say!("  {}", status_line(&answer.body["status"]));
    }
    Ok(())
}

/// Runs a `convergio agents model` subcommand.
pub async fn run(server: &ServerArgs, command: ModelCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        ModelCommand::List => {
            let answer = client
                .send(Method::GET, "/v1/model-agents", None, None)
                .await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            say!(
                "{:<24} {:<20} {:<10} {:<24} {:<4} STATUS",
                "NAME",
                "ORG",
                "PROVIDER",
                "MODEL",
                "VER"
            );
            for agent in answer.body["model_agents"].as_array().into_iter().flatten() {
                say!(
                    "{:<24} {:<20} {:<10} {:<24} {:<4} {}",
                    text(&agent["name"]),
                    text(&agent["org"]),
                    text(&agent["spec"]["provider"]),
                    text(&agent["spec"]["model"]),
                    agent["version"].as_i64().unwrap_or_default(),
                    status_line(&agent["status"])
                );
            }
        }
        ModelCommand::Show { name } => {
            let answer = client
                .send(Method::GET, &agent_path(&name), None, None)
                .await?;
            if server.json {
                document!("{}", answer.body);
            } else {
                say!("name      {}", text(&answer.body["name"]));
                say!("org       {}", text(&answer.body["org"]));
                say!(
                    "version   {} (updated {})",
                    answer.body["version"].as_i64().unwrap_or_default(),
                    text(&answer.body["updated_at"])
                );
                say!("status    {}", status_line(&answer.body["status"]));
                let yaml = serde_yaml::to_string(&answer.body["spec"])
                    .context("printing the declaration")?;
                say!("{}", yaml.trim_end());
            }
        }
        ModelCommand::Delete { name } => {
            client
                .send(Method::DELETE, &agent_path(&name), None, None)
                .await?;
            say!("deleted model agent {name}");
        }
    }
    Ok(())
}

fn status_line(status: &Value) -> String {
    if status["available"].as_bool().unwrap_or(false) {
        "available".to_owned()
    } else {
        format!("unavailable: {}", text(&status["reason"]))
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_declarations_become_json() {
        let value = declaration_from_text(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: s\nprovider: openai\nmodel: m\nmax_tokens: 5\ntemperature: 0.2\n",
        )
        .expect("parses");
        assert_eq!(value["max_tokens"], serde_json::json!(5));
        assert_eq!(value["temperature"], serde_json::json!(0.2));
        assert!(declaration_from_text("- a\n- b\n").is_err());
        assert!(declaration_from_text("a: [").is_err());
    }

    #[test]
    fn every_example_declaration_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agents");
        let mut checked = Vec::new();
        for dir in [root.clone(), root.join("review")] {
            for entry in std::fs::read_dir(&dir).expect("the examples exist") {
                let path = entry.expect("an entry").path();
                if path
                    .extension()
                    .is_some_and(|extension| extension == "yaml")
                {
                    let document = read_declaration(&path).expect("reads");
                    let spec = convergio_schemas::ModelAgentSpec::from_value(&document)
                        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
                    checked.push(spec.name);
                }
            }
        }
        checked.sort();
        for name in [
            "code_writer",
            "translator",
            "security_expert",
            "performance_expert",
            "style_checker",
            "code_analyzer",
            "review_aggregator",
            "report_generator",
        ] {
            assert!(
                checked.iter().any(|checked| checked == name),
                "{name} in {checked:?}"
            );
        }
    }
}
