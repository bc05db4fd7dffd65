//! `convergio agents …`: register, discover, show and manage agents on a
//! running server through its `/v1/agents` API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::ServerArgs;

/// Agent subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Register an agent from an A2A agent card file.
    Register {
        /// The agent card (JSON).
        card: PathBuf,
        /// Short name (default: derived from the card name).
        #[arg(long)]
        name: Option<String>,
        /// Owning organisation domain (default: this deployment's).
        #[arg(long)]
        org: Option<String>,
        /// worker, supervisor, router, planner or critic.
        #[arg(long)]
        role: Option<String>,
    },
    /// List agents, optionally filtered.
    List(Filters),
    /// Free-text search, optionally filtered.
    Search {
        /// The words to look for.
        text: String,
        #[command(flatten)]
        filters: Filters,
    },
    /// Show one agent (optionally an older version).
    Show {
        /// `name` or full id (`convergio://agents/x`, `external://org/agents/y`).
        id: String,
        /// A past version number.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List every stored version of an agent.
    Versions {
        /// Agent name or id.
        id: String,
    },
    /// Soft-delete an agent (it stays in history).
    Deregister {
        /// Agent name or id.
        id: String,
    },
    /// Trust levels.
    #[command(subcommand)]
    Trust(TrustCommand),
}

/// Trust subcommands.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Set an agent's trust level (administrators only).
    Set {
        /// Agent name or id.
        id: String,
        /// untrusted, registered, verified, trusted or internal.
        level: String,
        /// Why; recorded in the trust history.
        #[arg(long)]
        reason: String,
    },
    /// Show an agent's trust history.
    History {
        /// Agent name or id.
        id: String,
    },
}

/// Discovery filters.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Skill id or name.
    #[arg(long)]
    skill: Option<String>,
    /// Tag.
    #[arg(long)]
    tag: Option<String>,
    /// Accepted input media type.
    #[arg(long)]
    input_mode: Option<String>,
    /// Produced output media type.
    #[arg(long)]
    output_mode: Option<String>,
    /// Role.
    #[arg(long)]
    role: Option<String>,
    /// Owning organisation.
    #[arg(long)]
    org: Option<String>,
    /// Lowest trust level.
    #[arg(long)]
    min_trust: Option<String>,
    /// Results per page (1–100).
    #[arg(long)]
    page_size: Option<u32>,
    /// Continue from a previous page.
    #[arg(long)]
    page_token: Option<String>,
}

/// Runs an agents subcommand.
pub async fn run(server: &ServerArgs, command: AgentsCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        AgentsCommand::Register {
            card,
            name,
            org,
            role,
        } => {
            let text = std::fs::read_to_string(&card)
                .with_context(|| format!("reading {}", card.display()))?;
            let card_json: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", card.display()))?;
            let mut body = json!({ "card": card_json });
            for (key, value) in [("name", name), ("org", org), ("role", role)] {
                if let Some(value) = value {
                    body[key] = Value::String(value);
                }
            }
            let answer = client
                .send(Method::POST, "/v1/agents", Some(&body), None)
                .await?;
            print_agent(&answer.body, server.json);
        }
        AgentsCommand::List(filters) => {
            let answer = client
                .send(Method::GET, &discovery_path(None, &filters), None, None)
                .await?;
            print_page(&answer.body, server.json);
        }
        AgentsCommand::Search { text, filters } => {
            let answer = client
                .send(
                    Method::GET,
                    &discovery_path(Some(&text), &filters),
                    None,
                    None,
                )
                .await?;
            print_page(&answer.body, server.json);
        }
        AgentsCommand::Show { id, version } => {
            let mut path = agent_path(&id);
            if let Some(version) = version {
                path.push_str(&format!("?version={version}"));
            }
            let answer = client.send(Method::GET, &path, None, None).await?;
            print_json(&answer.body);
        }
        AgentsCommand::Versions { id } => {
            let path = format!("{}/versions", agent_path(&id));
            let answer = client.send(Method::GET, &path, None, None).await?;
            print_json(&answer.body);
        }
        AgentsCommand::Deregister { id } => {
            client
                .send(Method::DELETE, &agent_path(&id), None, None)
                .await?;
            say!("deregistered {id}");
        }
        AgentsCommand::Trust(TrustCommand::Set { id, level, reason }) => {
            let path = format!("{}/trust", agent_path(&id));
            let body = json!({ "level": level, "reason": reason });
            let answer = client.send(Method::PUT, &path, Some(&body), None).await?;
            if server.json {
                print_json(&answer.body);
            } else {
                say!("{id}: trust is now {level}");
            }
        }
        AgentsCommand::Trust(TrustCommand::History { id }) => {
            let path = format!("{}/trust", agent_path(&id));
            let answer = client.send(Method::GET, &path, None, None).await?;
            print_json(&answer.body);
        }
    }
    Ok(())
}

/// `/v1/agents/<id>` with the id percent-encoded when it is a full URI.
fn agent_path(id: &str) -> String {
    format!("/v1/agents/{}", utf8_percent_encode(id, NON_ALPHANUMERIC))
}

fn discovery_path(text: Option<&str>, filters: &Filters) -> String {
    let page_size = filters.page_size.map(|size| size.to_string());
    let pairs = [
        ("q", text),
        ("skill", filters.skill.as_deref()),
        ("tag", filters.tag.as_deref()),
        ("input_mode", filters.input_mode.as_deref()),
        ("output_mode", filters.output_mode.as_deref()),
        ("role", filters.role.as_deref()),
        ("org", filters.org.as_deref()),
        ("min_trust", filters.min_trust.as_deref()),
        ("page_size", page_size.as_deref()),
        ("page_token", filters.page_token.as_deref()),
    ];
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| {
            value.map(|value| format!("{key}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
        })
        .collect();
    if query.is_empty() {
        "/v1/agents".to_owned()
    } else {
        format!("/v1/agents?{}", query.join("&"))
    }
}

fn print_json(body: &Value) {
    say!(
        "{}",
        serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string())
    );
}

fn print_agent(record: &Value, raw: bool) {
    if raw {
        print_json(record);
        return;
    }
    let field = |key: &str| record.get(key).map(display).unwrap_or_default();
    say!(
        "registered {} (version {}, trust {})",
        field("id"),
        field("version"),
        field("trust")
    );
}

fn print_page(page: &Value, raw: bool) {
    if raw {
        print_json(page);
        return;
    }
    let agents = page
        .get("agents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    say!(
        "{:<48} {:<11} {:<10} {:<4} DESCRIPTION",
        "ID",
        "TRUST",
        "ROLE",
        "VER"
    );
    for agent in &agents {
        let get = |key: &str| agent.get(key).map(display).unwrap_or_default();
        let mut description = agent
            .pointer("/card/description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace('\n', " ");
        if description.chars().count() > 60 {
            description = description.chars().take(57).collect::<String>() + "...";
        }
        say!(
            "{:<48} {:<11} {:<10} {:<4} {}",
            get("id"),
            get("trust"),
            get("role"),
            get("version"),
            description
        );
    }
    match page.get("next_page_token").and_then(Value::as_str) {
        Some(token) if !token.is_empty() => {
            say!("(more: --page-token {token})");
        }
        _ => say!("({} agents)", agents.len()),
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
