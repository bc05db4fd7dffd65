//! `convergio peers …`: administer federation peers on a running server
//! through its `/v1/peers` admin API (the admin token is needed).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::ServerArgs;

/// Peer subcommands.
#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// Add a peer organisation: pinned keys are approved at once, keys
    /// fetched from --jwks-url wait for `peers approve`.
    Add {
        /// The peer's organisation domain.
        domain: String,
        /// Base URL of the peer's gateway.
        #[arg(long)]
        url: String,
        /// A file holding a public JWK or a JWKS to pin (repeatable).
        #[arg(long = "key-file")]
        key_files: Vec<PathBuf>,
        /// Where the peer publishes its JWKS.
        #[arg(long)]
        jwks_url: Option<String>,
        /// Trust level of the peer's agents here [default: verified].
        #[arg(long)]
        trust: Option<String>,
    },
    /// List peers.
    List,
    /// Show one peer with its keys.
    Show {
        /// The peer's domain.
        domain: String,
    },
    /// Approve pending keys (those named with --kid, else all).
    Approve {
        /// The peer's domain.
        domain: String,
        /// A key id to approve (repeatable).
        #[arg(long = "kid")]
        kids: Vec<String>,
    },
    /// Fetch the peer's JWKS again; new keys are pending.
    Refresh {
        /// The peer's domain.
        domain: String,
    },
    /// Pull the peer's catalogue into the local registry now (its agents
    /// become external agents; ones gone from the peer are deregistered).
    Sync {
        /// The peer's domain.
        domain: String,
    },
    /// Remove a peer; its calls are refused at once.
    Remove {
        /// The peer's domain.
        domain: String,
    },
}

/// Runs a peers subcommand.
pub async fn run(server: &ServerArgs, command: PeersCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let path = |domain: &str, tail: &str| {
        format!(
            "/v1/peers/{}{tail}",
            utf8_percent_encode(domain, NON_ALPHANUMERIC)
        )
    };
    let answer = match command {
        PeersCommand::Add {
            domain,
            url,
            key_files,
            jwks_url,
            trust,
        } => {
            let mut keys = Vec::new();
            for file in key_files {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let value: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?;
                match value.get("keys").and_then(Value::as_array) {
                    Some(set) => keys.extend(set.iter().cloned()),
                    None => keys.push(value),
                }
            }
            let body = json!({"domain": domain, "url": url, "keys": keys,
                "jwks_url": jwks_url, "trust": trust});
            let answer = client
                .send(Method::POST, "/v1/peers", Some(&body), None)
                .await?;
            // The peer is stored either way; a failed first fetch must not
            // pass for success, so say it where a script's log will show it.
            if let Some(failure) = answer.body.get("jwks_fetch_failure") {
                eprintln!(
                    "warning: peer {} added, but fetching its JWKS failed: {}; {}",
                    text(&answer.body["domain"]),
                    text(&failure["error"]),
                    retry_note(text(&answer.body["domain"]), failure)
                );
            }
            answer
        }
        PeersCommand::List => {
            let answer = client.send(Method::GET, "/v1/peers", None, None).await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            let peers = answer.body["peers"].as_array().cloned().unwrap_or_default();
            say!(
                "{:<30} {:<10} {:<9} {:<8} URL",
                "DOMAIN",
                "TRUST",
                "APPROVED",
                "PENDING"
            );
            for peer in peers {
                let (approved, pending) = key_counts(&peer);
                say!(
                    "{:<30} {:<10} {:<9} {:<8} {}",
                    text(&peer["domain"]),
                    text(&peer["trust"]),
                    approved,
                    pending,
                    text(&peer["url"])
                );
            }
            return Ok(());
        }
        PeersCommand::Show { domain } => {
            client
                .send(Method::GET, &path(&domain, ""), None, None)
                .await?
        }
        PeersCommand::Approve { domain, kids } => {
            let body = if kids.is_empty() {
                json!({})
            } else {
                json!({ "kids": kids })
            };
            client
                .send(Method::POST, &path(&domain, "/approve"), Some(&body), None)
                .await?
        }
        PeersCommand::Refresh { domain } => {
            client
                .send(Method::POST, &path(&domain, "/refresh"), None, None)
                .await?
        }
        PeersCommand::Sync { domain } => {
            let path = format!(
                "/v1/peers/{}:sync",
                utf8_percent_encode(&domain, NON_ALPHANUMERIC)
            );
            let answer = crate::client::with_spinner(
                &format!("syncing {domain}"),
                client.send(Method::POST, &path, None, None),
            )
            .await?;
            if server.json {
                document!("{}", answer.body);
                return Ok(());
            }
            let report = &answer.body;
            let count = |name: &str| report[name].as_u64().unwrap_or_default();
            say!(
                "synced {}: {} seen, {} added, {} updated, {} removed",
                text(&report["peer"]),
                count("seen"),
                count("added"),
                count("updated"),
                count("removed")
            );
            for problem in report["problems"].as_array().into_iter().flatten() {
                say!("problem {}", text(problem));
            }
            return Ok(());
        }
        PeersCommand::Remove { domain } => {
            client
                .send(Method::DELETE, &path(&domain, ""), None, None)
                .await?;
            say!("removed {domain}");
            return Ok(());
        }
    };
    if server.json {
        document!("{}", answer.body);
    } else {
        print_peer(&answer.body);
    }
    Ok(())
}

fn print_peer(peer: &Value) {
    say!("domain  {}", text(&peer["domain"]));
    say!("url     {}", text(&peer["url"]));
    say!("jwks    {}", text(&peer["jwks_url"]));
    say!("trust   {}", text(&peer["trust"]));
    for key in peer["keys"].as_array().into_iter().flatten() {
        say!("key     {}  {}", text(&key["kid"]), text(&key["state"]));
    }
    if let Some(failure) = peer.get("jwks_fetch_failure") {
        say!(
            "jwks fetch failed at {} ({} attempt(s)): {}",
            time(&failure["failed_at"]),
            failure["attempts"].as_u64().unwrap_or(1),
            text(&failure["error"])
        );
        say!("        {}", retry_note(text(&peer["domain"]), failure));
    }
}

/// When the server retries a failed JWKS fetch, and how to retry now.
fn retry_note(domain: &str, failure: &Value) -> String {
    format!(
        "retried automatically at {} (at once: convergio peers refresh {domain})",
        time(&failure["next_retry_at"])
    )
}

/// A Unix time in seconds as RFC 3339 (UTC), or `-`.
fn time(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|seconds| chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0))
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_owned())
}

fn key_counts(peer: &Value) -> (usize, usize) {
    let keys = peer["keys"].as_array().cloned().unwrap_or_default();
    let approved = keys.iter().filter(|key| key["state"] == "approved").count();
    (approved, keys.len() - approved)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}
