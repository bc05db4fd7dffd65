//! `convergio audit …`: read and verify the tamper-evident audit log of a
//! running server through `/v1/audit` (administrators only). Filters are
//! checked here before anything is sent: a decision the log never records
//! or a time the server cannot read would otherwise list nothing, silently.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
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
        /// Only this decision.
        #[arg(long, value_parser = DECISIONS)]
        decision: Option<String>,
        /// Records at or after this time: RFC 3339 (`2026-12-03T10:00:00Z`)
        /// or a duration back from now (`30m`, `1h`, `2d`, `1w`).
        #[arg(long, value_parser = parse_time)]
        since: Option<String>,
        /// Records before this time (same forms as `--since`).
        #[arg(long, value_parser = parse_time)]
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

/// Every decision the audit log records.
const DECISIONS: [&str; 5] = ["allow", "deny", "applied", "filtered", "rate_limited"];

/// The RFC 3339 time `--since`/`--until` mean: an RFC 3339 time as given,
/// or now minus a duration (`45s`, `30m`, `1h`, `2d`, `1w`, combinable as
/// `1h30m`).
fn parse_time(text: &str) -> Result<String, String> {
    parse_time_at(text, Utc::now())
}

fn parse_time_at(text: &str, now: DateTime<Utc>) -> Result<String, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    match parse_duration(text) {
        Some(back) => now
            .checked_sub_signed(back)
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .ok_or_else(|| format!("{text:?} reaches too far back")),
        None => Err(format!(
            "{text:?} is neither an RFC 3339 time nor a duration; examples: \
             2026-12-03T10:00:00Z, 30m, 1h, 2d, 1w"
        )),
    }
}

/// `1h`, `2d`, `1h30m`, …: whole numbers with a unit (s, m, h, d, w).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::zero();
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let amount: i64 = digits.parse().ok()?;
        digits.clear();
        let part = match character {
            's' => Duration::try_seconds(amount)?,
            'm' => Duration::try_minutes(amount)?,
            'h' => Duration::try_hours(amount)?,
            'd' => Duration::try_days(amount)?,
            'w' => Duration::try_weeks(amount)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
    }
    // A trailing number without a unit is ambiguous; so is nothing at all.
    (digits.is_empty() && !text.is_empty()).then_some(total)
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
                document!("{}", page);
                return Ok(());
            }
            let records = page["records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                say!("no records");
                return Ok(());
            }
            say!("{}", header());
            for record in &records {
                say!("{}", describe(record));
            }
            if let Some(next) = page["next"].as_i64() {
                say!("(more: --after {next})");
            }
            Ok(())
        }
        AuditCommand::Verify => {
            let verified = crate::client::with_spinner(
                "verifying the audit chain",
                client.send(Method::GET, "/v1/audit:verify", None, None),
            )
            .await?
            .body;
            if server.json {
                document!("{}", verified);
            } else {
                say!("{}", describe_verified(&verified));
            }
            Ok(())
        }
    }
}

/// The column names above [`describe`]'s lines.
fn header() -> String {
    format!(
        "{:>6} {:<27} {:<12} {:<14} {:<18} {:<32} DETERMINING / REQUEST",
        "SEQ", "AT", "DECISION", "SUBJECT", "ACTION", "RESOURCE"
    )
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
        "{:>6} {:<27} {:<12} {:<14} {:<18} {:<32} {}{}",
        // A `Value` ignores width and alignment: format its text.
        record["seq"].to_string(),
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

    #[test]
    fn since_takes_rfc3339_or_a_duration_back_from_now() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let cases = [
            ("2026-12-01T08:30:00Z", "2026-12-01T08:30:00Z"),
            ("2026-12-01T09:30:00+01:00", "2026-12-01T08:30:00Z"),
            ("1h", "2026-12-03T11:00:00Z"),
            ("2d", "2026-12-01T12:00:00Z"),
            ("1w", "2026-11-26T12:00:00Z"),
            ("1h30m", "2026-12-03T10:30:00Z"),
            ("45s", "2026-12-03T11:59:15Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_time_at(input, now).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
        for bad in ["yesterday", "", "10", "1y", "h", "2026-12-01"] {
            let error = parse_time_at(bad, now).expect_err(bad);
            assert!(
                error.contains("RFC 3339") && error.contains("2d"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_header_names_every_column_a_record_line_fills() {
        let record = serde_json::json!({"seq": 7, "at": "2026-12-03T12:00:00.123456Z",
            "decision": "rate_limited", "subject": "alice", "action": "send_message",
            "resource": "agent:convergio://agents/echo", "determining": ["p1"],
            "request_id": "r1"});
        let line = describe(&record);
        let header = header();
        // Each column starts where its name starts.
        for (name, value) in [
            ("AT", "2026-12-03"),
            ("DECISION", "rate_limited"),
            ("SUBJECT", "alice"),
            ("ACTION", "send_message"),
            ("RESOURCE", "agent:"),
        ] {
            assert_eq!(
                header.find(name),
                line.find(value),
                "{name}\n{header}\n{line}"
            );
        }
    }

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
