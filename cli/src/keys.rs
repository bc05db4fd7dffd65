//! `convergio keys …`: issue, list and revoke API keys on a running server
//! through its `/v1/api-keys` admin API (the admin token is needed). `issue`
//! prints the key's organisation and scopes and what it may reach: the
//! agents the server lets it discover, asked with the new key itself.

use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::ServerArgs;

/// API key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key; it is printed once and never stored in clear.
    Issue {
        /// The subject the key authenticates as.
        #[arg(long)]
        subject: String,
        /// The subject's organisation domain.
        #[arg(long)]
        org: Option<String>,
        /// A scope to grant (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime in seconds (no expiry by default).
        #[arg(long)]
        ttl_seconds: Option<u64>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; effective at once.
    Revoke {
        /// The key id (the part between `cvg_` and the second `_`).
        id: String,
    },
}

/// Runs a keys subcommand.
pub async fn run(server: &ServerArgs, command: KeysCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        KeysCommand::Issue {
            subject,
            org,
            scopes,
            ttl_seconds,
        } => {
            let body = json!({"subject": subject, "org": org, "scopes": scopes, "ttl_seconds": ttl_seconds});
            let answer = client
                .send(Method::POST, "/v1/api-keys", Some(&body), None)
                .await?;
            if server.json {
                document!("{}", answer.body);
            } else {
                let key = answer.body["key"].as_str().unwrap_or_default();
                say!("{key}");
                say!(
                    "  id {}  subject {}  (shown once: store it now)",
                    answer.body["id"].as_str().unwrap_or_default(),
                    answer.body["subject"].as_str().unwrap_or_default()
                );
                let org = answer.body["org"].as_str().filter(|org| !org.is_empty());
                let scopes = list(&answer.body["scopes"]);
                say!(
                    "  org {}  scopes {}",
                    org.unwrap_or("none"),
                    if scopes.is_empty() {
                        "none"
                    } else {
                        scopes.as_str()
                    }
                );
                say!("  {}", reach(&client, key, org).await);
            }
        }
        KeysCommand::List => {
            let answer = client.send(Method::GET, "/v1/api-keys", None, None).await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            let keys = answer.body["keys"].as_array().cloned().unwrap_or_default();
            say!("{:<20} {:<30} {:<24} STATE", "ID", "SUBJECT", "ORG");
            for key in keys {
                let state = if !key["revoked_at"].is_null() {
                    "revoked"
                } else {
                    "active"
                };
                say!(
                    "{:<20} {:<30} {:<24} {state}",
                    text(&key["id"]),
                    text(&key["subject"]),
                    text(&key["org"])
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let path = format!(
                "/v1/api-keys/{}",
                utf8_percent_encode(&id, NON_ALPHANUMERIC)
            );
            client.send(Method::DELETE, &path, None, None).await?;
            say!("revoked {id}");
        }
    }
    Ok(())
}

/// What a new key may reach, asked of the server as the key's holder: the
/// agents policy lets it discover right now. When that is none, says which
/// organisations this server's agents belong to, the usual reason (the
/// example policies let a caller reach its own organisation's agents).
async fn reach(client: &Client, key: &str, org: Option<&str>) -> String {
    let names = |body: &Value| -> Vec<String> {
        body["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|agent| agent["name"].as_str().map(str::to_owned))
            .collect()
    };
    let listing = client
        .request_with_key(Method::GET, "/v1/agents?page_size=100", key)
        .send()
        .await;
    let visible = match listing {
        Ok(response) if response.status().is_success() => {
            names(&response.json::<Value>().await.unwrap_or_default())
        }
        _ => return "reach: could not list agents with the new key".to_owned(),
    };
    if !visible.is_empty() {
        let more = if visible.len() == 100 { ", …" } else { "" };
        return format!(
            "reaches (may discover) {} agents: {}{more}",
            visible.len(),
            visible.join(", ")
        );
    }
    let orgs: std::collections::BTreeSet<String> = match client
        .send(Method::GET, "/v1/agents?page_size=100", None, None)
        .await
    {
        Ok(answer) => answer.body["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|agent| agent["org"].as_str().map(str::to_owned))
            .collect(),
        Err(_) => Default::default(),
    };
    let mine = org.unwrap_or("no organisation");
    if orgs.is_empty() {
        format!("reaches no agent yet (key of {mine})")
    } else {
        format!(
            "reaches no agent: policy lets this key ({mine}) discover none; this server's agents belong to {}",
            orgs.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

fn list(value: &Value) -> String {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}
