//! `convergio keys …`: issue, list and revoke API keys on a running server
//! through its `/v1/api-keys` admin API (the admin token is needed).

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
                say!("{}", answer.body);
            } else {
                say!("{}", answer.body["key"].as_str().unwrap_or_default());
                say!(
                    "  id {}  subject {}  (shown once: store it now)",
                    answer.body["id"].as_str().unwrap_or_default(),
                    answer.body["subject"].as_str().unwrap_or_default()
                );
            }
        }
        KeysCommand::List => {
            let answer = client.send(Method::GET, "/v1/api-keys", None, None).await?;
            if server.json {
                say!("{}", answer.body);
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

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}
