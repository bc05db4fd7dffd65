//! `convergio audit …`: read and verify the tamper-evident audit log of a
//! running server through `/v1/audit` (administrators only).

use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::ServerArgs;

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, oldest first, with optional filters.
    List {
        /// Only this principal subject.
        #[arg(long)]
        principal: Option<String>,
        /// Only this action (`send_message`, `policy.put`, `agent.set_trust`, …).
        #[arg(long)]
        action: Option<String>,
        /// Only this decision (`allow`, `deny`, `applied`, `filtered`, `rate_limited`).
        #[arg(long)]
        decision: Option<String>,
        /// Records at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Records before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Continue after this sequence number (the previous page's `next`).
        #[arg(long)]
        after: Option<i64>,
        /// Records per page.
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Walk the whole hash chain; fails at the first missing or edited record.
    Verify,
}

/// Runs an audit subcommand.
pub async fn run(server: &ServerArgs, command: AuditCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        AuditCommand::List {
            principal,
            action,
            decision,
            since,
            until,
            after,
            limit,
        } => {
            let pairs = [
                ("principal", principal),
                ("action", action),
                ("decision", decision),
                ("since", since),
                ("until", until),
                ("after", after.map(|value| value.to_string())),
                ("limit", limit.map(|value| value.to_string())),
            ];
            let query: Vec<String> = pairs
                .into_iter()
                .filter_map(|(key, value)| {
                    value.map(|value| {
                        format!("{key}={}", utf8_percent_encode(&value, NON_ALPHANUMERIC))
                    })
                })
                .collect();
            let path = if query.is_empty() {
                "/v1/audit".to_owned()
            } else {
                format!("/v1/audit?{}", query.join("&"))
            };
            let page = client.send(Method::GET, &path, None, None).await?.body;
            if server.json {
                say!("{page}");
                return Ok(());
            }
            for record in page["records"].as_array().into_iter().flatten() {
                say!("{}", describe(record));
            }
            if let Some(next) = page["next"].as_i64() {
                say!("(more: --after {next})");
            }
            Ok(())
        }
        AuditCommand::Verify => {
            let verified = client
                .send(Method::GET, "/v1/audit:verify", None, None)
                .await?
                .body;
            if server.json {
                say!("{verified}");
            } else {
                say!("{}", describe_verified(&verified));
            }
            Ok(())
        }
    }
}

/// What `audit verify` checked: the range, and where retention pruned
/// the chain before it (issue 15).
fn describe_verified(verified: &Value) -> String {
    let head = verified["head"].as_str().unwrap_or("");
    let records = &verified["records"];
    let (first, last) = (&verified["first_seq"], &verified["last_seq"]);
    let range = if records.as_i64() == Some(0) {
        "no records to check".to_owned()
    } else {
        format!("verified seq {first}..{last} ({records} record(s))")
    };
    let pruned = match verified.get("checkpoint") {
        Some(checkpoint) if checkpoint.is_object() => format!(
            " (records before {first} pruned at checkpoint seq {}, hash {}, record time {}, \
             {} record(s) pruned, last prune {})",
            checkpoint["seq"],
            checkpoint["hash"].as_str().unwrap_or(""),
            checkpoint["at"].as_str().unwrap_or(""),
            checkpoint["pruned"],
            checkpoint["pruned_at"].as_str().unwrap_or("")
        ),
        _ => String::new(),
    };
    format!("audit chain intact: {range}{pruned}, head {head}")
}

/// One record on one line.
fn describe(record: &Value) -> String {
    let determining: Vec<&str> = record["determining"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{:>6} {} {:<8} {:<14} {:<18} {:<32} {}{}",
        record["seq"],
        record["at"].as_str().unwrap_or(""),
        record["decision"].as_str().unwrap_or(""),
        record["subject"].as_str().unwrap_or(""),
        record["action"].as_str().unwrap_or(""),
        record["resource"].as_str().unwrap_or(""),
        if determining.is_empty() {
            String::new()
        } else {
            format!("[{}] ", determining.join(","))
        },
        record["request_id"].as_str().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verify_output_names_the_range_and_the_retention_checkpoint() {
        let whole = json!({"records": 3, "head": "h3", "first_seq": 1, "last_seq": 3});
        assert_eq!(
            describe_verified(&whole),
            "audit chain intact: verified seq 1..3 (3 record(s)), head h3"
        );
        let pruned = json!({
            "records": 2, "head": "h9", "first_seq": 8, "last_seq": 9,
            "checkpoint": {"seq": 7, "hash": "h7", "at": "2026-01-01T00:00:00.000000Z",
                           "pruned_at": "2026-04-01T00:00:00.000000Z", "pruned": 7}
        });
        let text = describe_verified(&pruned);
        assert!(
            text.starts_with("audit chain intact: verified seq 8..9 (2 record(s)) (records before 8 pruned at checkpoint seq 7, hash h7"),
            "{text}"
        );
    }
}
