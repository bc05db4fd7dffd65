//! `convergio agents …`: register, discover, show and manage agents on a
//! running server through its `/v1/agents` API. Records, versions and trust
//! histories print as short human views (`--output json` gives the server's
//! documents as they are); an unknown agent name gets the close names the
//! caller may see.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{Client, HttpFailure};
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
    /// Replace an agent's card (and role); its trust is kept. Applies only
    /// if the agent is still at the version read first, or at `--version`.
    Update {
        /// Agent name or id.
        id: String,
        /// The new agent card (JSON).
        card: PathBuf,
        /// worker, supervisor, router, planner or critic.
        #[arg(long)]
        role: Option<String>,
        /// Update only if the agent is at this version (412 otherwise).
        #[arg(long)]
        version: Option<i64>,
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
    /// Create or update a model agent from its declaration (YAML, `kind: ModelAgent`).
    Apply {
        /// The declaration file.
        file: PathBuf,
    },
    /// List, show and delete model agents.
    #[command(subcommand)]
    Model(crate::model_agents::ModelCommand),
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
            let mut body = json!({ "card": read_card(&card)? });
            for (key, value) in [("name", name), ("org", org), ("role", role)] {
                if let Some(value) = value {
                    body[key] = Value::String(value);
                }
            }
            let answer = client
                .send(Method::POST, "/v1/agents", Some(&body), None)
                .await?;
            print_agent(&answer.body, server.json, "registered");
        }
        AgentsCommand::Update {
            id,
            card,
            role,
            version,
        } => {
            let mut body = json!({ "card": read_card(&card)? });
            if let Some(role) = role {
                body["role"] = Value::String(role);
            }
            let path = agent_path(&id);
            let current = about_agent(&client, &id, Method::GET, &path, None).await?;
            let at = version.or(current.body["version"].as_i64()).unwrap_or(0);
            let agent_id: convergio_schemas::AgentId = current.body["id"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .context("the server answered an agent without a valid id")?;
            let etag = convergio_registry::model::etag_for(&agent_id, at);
            let answer = client
                .send(Method::PUT, &path, Some(&body), Some(&etag))
                .await?;
            print_agent(&answer.body, server.json, "updated");
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
            let answer = about_agent(&client, &id, Method::GET, &path, None).await?;
            if server.json {
                print_json(&answer.body);
            } else {
                say!("{}", render_record(&answer.body));
            }
        }
        AgentsCommand::Versions { id } => {
            let path = format!("{}/versions", agent_path(&id));
            let answer = about_agent(&client, &id, Method::GET, &path, None).await?;
            if server.json {
                print_json(&answer.body);
            } else {
                say!("{}", render_versions(&answer.body));
            }
        }
        AgentsCommand::Deregister { id } => {
            about_agent(&client, &id, Method::DELETE, &agent_path(&id), None).await?;
            say!("deregistered {id}");
        }
        AgentsCommand::Trust(TrustCommand::Set { id, level, reason }) => {
            let path = format!("{}/trust", agent_path(&id));
            let body = json!({ "level": level, "reason": reason });
            let answer = about_agent(&client, &id, Method::PUT, &path, Some(&body)).await?;
            if server.json {
                print_json(&answer.body);
            } else {
                say!("{id}: trust is now {level}");
            }
        }
        AgentsCommand::Apply { file } => crate::model_agents::apply(server, &file).await?,
        AgentsCommand::Model(command) => crate::model_agents::run(server, command).await?,
        AgentsCommand::Trust(TrustCommand::History { id }) => {
            let path = format!("{}/trust", agent_path(&id));
            let answer = about_agent(&client, &id, Method::GET, &path, None).await?;
            if server.json {
                print_json(&answer.body);
            } else {
                say!("{}", render_trust_history(&answer.body));
            }
        }
    }
    Ok(())
}

/// An agent card file's JSON.
fn read_card(path: &std::path::Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A request about the agent `id`; a 404 adds the close names of agents
/// the caller may see ("did you mean …").
async fn about_agent(
    client: &Client,
    id: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<crate::client::Answer> {
    let error = match client.send(method, path, body, None).await {
        Ok(answer) => return Ok(answer),
        Err(error) => error,
    };
    let not_found = error
        .downcast_ref::<HttpFailure>()
        .is_some_and(|failure| failure.status == reqwest::StatusCode::NOT_FOUND);
    if !not_found {
        return Err(error);
    }
    // Best effort: a listing that fails leaves the 404 as it was.
    let names = match client
        .send(Method::GET, "/v1/agents?page_size=100", None, None)
        .await
    {
        Ok(page) => page.body["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|agent| agent["name"].as_str().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    };
    let wanted = id.rsplit('/').next().unwrap_or(id);
    let close = suggestions(wanted, &names);
    if close.is_empty() {
        return Err(error);
    }
    Err(anyhow::anyhow!(
        "{error}\n  did you mean: {}?",
        close.join(", ")
    ))
}

/// The names close to `wanted`, closest first (at most three): a small
/// edit distance for its length, or one name containing the other.
fn suggestions(wanted: &str, names: &[String]) -> Vec<String> {
    let wanted_lower = wanted.to_lowercase();
    let allowed = (wanted.chars().count() / 3).max(2);
    let mut close: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|name| {
            let lower = name.to_lowercase();
            let distance = edit_distance(&wanted_lower, &lower);
            let related = wanted_lower.len() >= 3
                && (lower.contains(&wanted_lower) || wanted_lower.contains(&lower));
            (distance <= allowed || related).then_some((distance, name))
        })
        .collect();
    close.sort();
    close.dedup_by(|a, b| a.1 == b.1);
    close
        .into_iter()
        .take(3)
        .map(|(_, name)| name.clone())
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1; right.len() + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

/// One agent record as a short summary: identity, trust, card, upstreams.
fn render_record(record: &Value) -> String {
    let text = |pointer: &str| record.pointer(pointer).map(display).unwrap_or_default();
    let mut lines = vec![
        format!("id           {}", text("/id")),
        format!("name         {}", text("/name")),
        format!("org          {}", text("/org")),
        format!("role         {}", text("/role")),
        format!("trust        {}", text("/trust")),
        format!(
            "version      {} (updated {}, created {})",
            text("/version"),
            text("/updated_at"),
            text("/created_at")
        ),
    ];
    if let Some(deleted) = record.get("deleted_at").filter(|value| !value.is_null()) {
        lines.push(format!("deregistered {}", display(deleted)));
    }
    lines.push(format!(
        "card         {} {}",
        text("/card/name"),
        text("/card/version")
    ));
    let description = text("/card/description");
    if !description.is_empty() {
        lines.push(format!("description  {}", description.replace('\n', " ")));
    }
    let skills: Vec<String> = record
        .pointer("/card/skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|skill| {
            let id = skill.get("id").map(display).unwrap_or_default();
            let tags: Vec<String> = skill
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(display)
                .collect();
            if tags.is_empty() {
                id
            } else {
                format!("{id} [{}]", tags.join(", "))
            }
        })
        .collect();
    for (index, skill) in skills.iter().enumerate() {
        let label = if index == 0 { "skills" } else { "" };
        lines.push(format!("{label:<12} {skill}"));
    }
    let upstreams = record
        .get("upstreams")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, upstream) in upstreams.iter().enumerate() {
        let label = if index == 0 { "upstreams" } else { "" };
        let get = |key: &str| upstream.get(key).map(display).unwrap_or_default();
        lines.push(format!(
            "{label:<12} {} {} {}",
            get("protocol_binding"),
            get("protocol_version"),
            get("url")
        ));
    }
    lines.join("\n")
}

/// Every stored version of an agent, oldest first, one line each.
fn render_versions(page: &Value) -> String {
    let versions = page
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{}: {} version(s)",
        page.get("agent_id").map(display).unwrap_or_default(),
        versions.len()
    )];
    lines.push(format!(
        "{:<4} {:<11} {:<32} {:<12} DEREGISTERED",
        "VER", "TRUST", "UPDATED", "CARD"
    ));
    for version in &versions {
        let get = |pointer: &str| version.pointer(pointer).map(display).unwrap_or_default();
        let deleted = version
            .get("deleted_at")
            .filter(|value| !value.is_null())
            .map(display)
            .unwrap_or_else(|| "-".to_owned());
        lines.push(format!(
            "{:<4} {:<11} {:<32} {:<12} {}",
            get("/version"),
            get("/trust"),
            get("/updated_at"),
            get("/card/version"),
            deleted
        ));
    }
    lines.join("\n")
}

/// An agent's trust level and every recorded change, oldest first.
fn render_trust_history(history: &Value) -> String {
    let changes = history
        .get("changes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{}: trust {}",
        history.get("agent_id").map(display).unwrap_or_default(),
        history.get("trust").map(display).unwrap_or_default()
    )];
    if changes.is_empty() {
        lines.push("no trust changes recorded".to_owned());
        return lines.join("\n");
    }
    lines.push(format!(
        "{:<32} {:<11} {:<11} {:<20} REASON",
        "AT", "FROM", "TO", "BY"
    ));
    for change in &changes {
        let get = |pointer: &str| change.pointer(pointer).map(display).unwrap_or_default();
        lines.push(format!(
            "{:<32} {:<11} {:<11} {:<20} {}",
            get("/at"),
            get("/from"),
            get("/to"),
            get("/actor/subject"),
            get("/reason").replace('\n', " ")
        ));
    }
    lines.join("\n")
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
    document!("{:#}", body);
}

fn print_agent(record: &Value, raw: bool, done: &str) {
    if raw {
        print_json(record);
        return;
    }
    let field = |key: &str| record.get(key).map(display).unwrap_or_default();
    say!(
        "{done} {} (version {}, trust {})",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_get_close_suggestions_only() {
        let names: Vec<String> = ["echo", "weather", "code_analyzer", "security_expert"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let cases: [(&str, &[&str]); 5] = [
            ("wether", &["weather"]),
            ("ecoh", &["echo"]),
            ("analyzer", &["code_analyzer"]),
            ("Weather", &["weather"]),
            ("zzz", &[]),
        ];
        for (wanted, expected) in cases {
            assert_eq!(suggestions(wanted, &names), expected, "{wanted}");
        }
    }

    #[test]
    fn records_versions_and_trust_history_read_as_text() {
        let record = json!({"id": "convergio://agents/weather", "name": "weather",
            "org": "convergio.local", "role": "worker", "trust": "trusted", "version": 2,
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-02T10:00:00Z",
            "deleted_at": null,
            "card": {"name": "Weather", "version": "1.2.0", "description": "Forecasts",
                "skills": [{"id": "forecast", "tags": ["weather"]}]},
            "upstreams": [{"url": "https://w.example/a2a", "protocol_binding": "JSONRPC",
                "protocol_version": "1.0"}]});
        let text = render_record(&record);
        for expected in [
            "convergio://agents/weather",
            "trusted",
            "Weather 1.2.0",
            "forecast [weather]",
            "JSONRPC 1.0 https://w.example/a2a",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        assert!(!text.contains('{'), "no raw JSON:\n{text}");

        let versions = json!({"agent_id": "convergio://agents/weather",
            "versions": [record.clone(), record]});
        let text = render_versions(&versions);
        assert!(
            text.contains("2 version(s)") && text.contains("VER"),
            "{text}"
        );

        let history = json!({"agent_id": "convergio://agents/weather", "trust": "trusted",
            "changes": [{"from": "registered", "to": "trusted", "at": "2026-12-02T10:00:00Z",
                "actor": {"subject": "admin", "is_admin": true}, "reason": "reviewed"}]});
        let text = render_trust_history(&history);
        for expected in ["trust trusted", "registered", "admin", "reviewed", "REASON"] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
        let empty = json!({"agent_id": "x", "trust": "registered", "changes": []});
        assert!(render_trust_history(&empty).contains("no trust changes"));
    }
}
