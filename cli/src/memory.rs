//! `convergio memory …`: namespaces, items and search through the
//! `/v1/memory` API (issue 20), decided by the server's policies like any
//! caller's. Item values are JSON; a value that does not parse as JSON is
//! stored as a JSON string (a text document for vector memory), and
//! `@path` reads it from a file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::model_agents::read_declaration;
use crate::ServerArgs;

/// Memory subcommands.
#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// List your organisation's namespaces, with their scopes.
    List {
        /// Only the namespaces scoped to this agent (its memory).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Create a namespace from its declaration (YAML or JSON: kind,
    /// scope (`global` or `{agent: NAME}`), retention, schema or chunking
    /// and embedding).
    Create {
        /// The namespace's name.
        namespace: String,
        /// The declaration file.
        file: PathBuf,
    },
    /// Show a namespace's declaration.
    Show {
        /// The namespace.
        namespace: String,
    },
    /// Delete a namespace and everything in it.
    Delete {
        /// The namespace.
        namespace: String,
    },
    /// List a namespace's items, by key.
    Items {
        /// The namespace.
        namespace: String,
        /// Start after this key.
        #[arg(long)]
        after: Option<String>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one item.
    Get {
        /// The namespace.
        namespace: String,
        /// The item's key.
        key: String,
    },
    /// Write one item (created, or replaced as a new version).
    Put {
        /// The namespace.
        namespace: String,
        /// The item's key.
        key: String,
        /// JSON, or text (stored as a JSON string), or `@path`.
        value: String,
    },
    /// Delete one item.
    Forget {
        /// The namespace.
        namespace: String,
        /// The item's key.
        key: String,
    },
    /// Search a vector namespace by similarity.
    Search {
        /// The namespace.
        namespace: String,
        /// The text to look for.
        query: String,
        /// Hits wanted (1–100).
        #[arg(long, default_value_t = 10)]
        top_k: usize,
    },
}

/// A namespace's scope as a cell: `global` or `agent:NAME`.
fn scope_text(scope: &Value) -> String {
    match scope["agent"].as_str() {
        Some(agent) => format!("agent:{agent}"),
        None => scope.as_str().unwrap_or("global").to_owned(),
    }
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn item_path(namespace: &str, key: &str) -> String {
    format!("/v1/memory/{}/items/{}", segment(namespace), segment(key))
}

/// An item value as given: `@path` reads a file; JSON is taken as JSON,
/// anything else as a string.
fn value_of(given: &str) -> anyhow::Result<Value> {
    let text = match given.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => given.to_owned(),
    };
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Runs a memory subcommand.
pub async fn run(server: &ServerArgs, command: MemoryCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let (method, path, body) = match &command {
        MemoryCommand::List { agent } => {
            let path = match agent {
                Some(agent) => format!("/v1/memory?agent={}", segment(agent)),
                None => "/v1/memory".to_owned(),
            };
            (Method::GET, path, None)
        }
        MemoryCommand::Create { namespace, file } => (
            Method::PUT,
            format!("/v1/memory/{}", segment(namespace)),
            Some(read_declaration(file)?),
        ),
        MemoryCommand::Show { namespace } => (
            Method::GET,
            format!("/v1/memory/{}", segment(namespace)),
            None,
        ),
        MemoryCommand::Delete { namespace } => (
            Method::DELETE,
            format!("/v1/memory/{}", segment(namespace)),
            None,
        ),
        MemoryCommand::Items {
            namespace,
            after,
            limit,
        } => {
            let mut path = format!(
                "/v1/memory/{}/items?limit={}",
                segment(namespace),
                limit.unwrap_or(100)
            );
            if let Some(after) = after {
                path.push_str(&format!("&after={}", segment(after)));
            }
            (Method::GET, path, None)
        }
        MemoryCommand::Get { namespace, key } => (Method::GET, item_path(namespace, key), None),
        MemoryCommand::Put {
            namespace,
            key,
            value,
        } => (
            Method::PUT,
            item_path(namespace, key),
            Some(value_of(value)?),
        ),
        MemoryCommand::Forget { namespace, key } => {
            (Method::DELETE, item_path(namespace, key), None)
        }
        MemoryCommand::Search {
            namespace,
            query,
            top_k,
        } => (
            Method::POST,
            format!("/v1/memory/{}:search", segment(namespace)),
            Some(json!({"query": query, "top_k": top_k})),
        ),
    };
    let answer = client.send(method, &path, body.as_ref(), None).await?.body;
    if server.json {
        document!("{}", answer);
        return Ok(());
    }
    match command {
        MemoryCommand::List { .. } => {
            say!("{:<32} {:<10} {:<24} CREATED", "NAMESPACE", "KIND", "SCOPE");
            for namespace in answer["namespaces"].as_array().into_iter().flatten() {
                say!(
                    "{:<32} {:<10} {:<24} {}",
                    text(&namespace["name"]),
                    text(&namespace["kind"]),
                    scope_text(&namespace["scope"]),
                    text(&namespace["created_at"])
                );
            }
        }
        MemoryCommand::Create { namespace, .. } => {
            say!("created namespace {namespace} ({})", text(&answer["kind"]));
        }
        MemoryCommand::Show { .. } => {
            say!(
                "namespace {} of {} ({}), created {}",
                text(&answer["name"]),
                text(&answer["org"]),
                text(&answer["kind"]),
                text(&answer["created_at"])
            );
            let spec = serde_yaml::to_string(&answer["spec"]).unwrap_or_default();
            say!("{}", spec.trim_end());
        }
        MemoryCommand::Delete { namespace } => say!("deleted namespace {namespace}"),
        MemoryCommand::Items { .. } => {
            say!("{:<32} {:>7} UPDATED", "KEY", "VERSION");
            for item in answer["items"].as_array().into_iter().flatten() {
                say!(
                    "{:<32} {:>7} {}",
                    text(&item["key"]),
                    item["version"],
                    text(&item["updated_at"])
                );
            }
            if let Some(next) = answer["next_after"].as_str() {
                say!("more: --after {next}");
            }
        }
        MemoryCommand::Get { .. } => say!("{}", answer["value"]),
        MemoryCommand::Put { key, .. } => {
            say!("wrote {key} (version {})", answer["version"]);
        }
        MemoryCommand::Forget { key, .. } => say!("forgot {key}"),
        MemoryCommand::Search { .. } => {
            for hit in answer["hits"].as_array().into_iter().flatten() {
                let score = hit["score"].as_f64().unwrap_or_default();
                say!(
                    "{score:.3} {}#{}: {}",
                    text(&hit["key"]),
                    hit["seq"],
                    text(&hit["text"]).replace('\n', " ")
                );
            }
        }
    }
    Ok(())
}

/// A JSON value as plain text (strings without quotes).
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
