//! `convergio graph …`: validate a graph document against a running server
//! (agents checked against its registry), run it there with live progress,
//! and look runs up by id (status, result, trace).
//!
//! `run` uses the stream mode by default: each node's outcome is printed as
//! it happens (on stderr, so stdout carries only the result), then the
//! result is fetched by run id and printed. `--input NAME=VALUE` sets a
//! graph input; `NAME=@path` reads the value from a file.
//!
//! Durable runs (issue 8): `resume` continues an interrupted checkpointed
//! run (or, with `--checkpoint`, starts a new run from a named checkpoint),
//! `checkpoints` lists or names checkpoints, and `approve`, `reject` and
//! `input` decide a run waiting for a human; each follows the continued run
//! live like `run`. `cancel` stops a run for good (issue 15).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::ServerArgs;

/// Graph subcommands.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Validate a graph document (YAML or JSON) on the server.
    Validate {
        /// The graph document.
        file: PathBuf,
    },
    /// Run a graph document on the server and print each node's outcome and the result.
    Run {
        /// The graph document.
        file: PathBuf,
        /// A graph input, `NAME=VALUE` or `NAME=@path` (repeatable).
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// stream (live progress, the default), sync, or async (print the run id).
        #[arg(long, default_value = "stream")]
        mode: String,
    },
    /// Show a run's status.
    Status {
        /// The run id.
        run: String,
    },
    /// Show a finished run's result.
    Result {
        /// The run id.
        run: String,
    },
    /// Show a finished run's trace (design document §8.1).
    Trace {
        /// The run id.
        run: String,
    },
    /// Resume an interrupted checkpointed run, or start a new run from one of its named checkpoints.
    Resume {
        /// The run id.
        run: String,
        /// Start a new run from this named checkpoint.
        #[arg(long)]
        checkpoint: Option<String>,
        /// With --checkpoint: a new graph input, `NAME=VALUE` or `NAME=@path` (repeatable).
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
    },
    /// List a run's named checkpoints, or name its last step with --name.
    Checkpoints {
        /// The run id.
        run: String,
        /// Name the run's last committed step.
        #[arg(long)]
        name: Option<String>,
    },
    /// Approve the node a run is waiting on: it runs again and the run continues.
    Approve {
        /// The run id.
        run: String,
    },
    /// Reject the node a run is waiting on: the run fails.
    Reject {
        /// The run id.
        run: String,
        /// Why (kept in the run's error).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give the output of the node a run is waiting on (JSON, or text); the run continues.
    Input {
        /// The run id.
        run: String,
        /// The node's output: JSON, or plain text.
        output: String,
    },
    /// Cancel a run: it stops, and a checkpointed run is never resumed.
    Cancel {
        /// The run id.
        run: String,
    },
}

/// Runs a graph subcommand.
pub async fn run(server: &ServerArgs, command: GraphCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        GraphCommand::Validate { file } => {
            let text = read_document(&file)?;
            let request = client
                .request(Method::POST, "/v1/graphs:validate")
                .header("content-type", "application/yaml")
                .body(text);
            let response = client
                .execute(request, &format!("validating {}", file.display()))
                .await?;
            let summary: Value = response.json().await.context("reading the answer")?;
            if server.json {
                say!("{summary:#}");
            } else {
                say!(
                    "{}: valid (graph {}, {} nodes, {} edges, agents: {})",
                    file.display(),
                    text_of(&summary["name"]),
                    summary["nodes"],
                    summary["edges"],
                    list_of(&summary["agents"])
                );
            }
        }
        GraphCommand::Run { file, inputs, mode } => {
            let text = read_document(&file)?;
            let input = parse_inputs(&inputs)?;
            run_graph(&client, server.json, text, input, &mode).await?;
        }
        GraphCommand::Status { run } => {
            let answer = client
                .send(Method::GET, &run_path(&run, ""), None, None)
                .await?;
            if server.json {
                say!("{:#}", answer.body);
            } else {
                say!(
                    "run {}  graph {}  {}",
                    text_of(&answer.body["run_id"]),
                    text_of(&answer.body["graph_id"]),
                    text_of(&answer.body["status"])
                );
            }
        }
        GraphCommand::Result { run } => {
            let answer = client
                .send(Method::GET, &run_path(&run, "/result"), None, None)
                .await?;
            print_result(&answer.body, server.json)?;
        }
        GraphCommand::Trace { run } => {
            let answer = client
                .send(Method::GET, &run_path(&run, "/trace"), None, None)
                .await?;
            if server.json {
                say!("{:#}", answer.body);
            } else {
                print_trace(&answer.body);
            }
        }
        GraphCommand::Resume {
            run,
            checkpoint,
            inputs,
        } => {
            let mut body = json!({"mode": "stream"});
            if let Some(checkpoint) = checkpoint {
                body["checkpoint"] = Value::String(checkpoint);
                if !inputs.is_empty() {
                    body["input"] = parse_inputs(&inputs)?;
                }
            } else if !inputs.is_empty() {
                bail!("--input needs --checkpoint (a resumed run keeps its input)");
            }
            continue_run(&client, server.json, &run, "resume", body).await?;
        }
        GraphCommand::Checkpoints { run, name } => {
            let answer = match name {
                Some(name) => {
                    client
                        .send(
                            Method::POST,
                            &run_path(&run, "/checkpoints"),
                            Some(&json!({"name": name})),
                            None,
                        )
                        .await?
                }
                None => {
                    client
                        .send(Method::GET, &run_path(&run, "/checkpoints"), None, None)
                        .await?
                }
            };
            if server.json {
                say!("{:#}", answer.body);
            } else if let Some(list) = answer.body["checkpoints"].as_array() {
                if list.is_empty() {
                    say!("run {run} has no named checkpoints");
                }
                for checkpoint in list {
                    say!(
                        "{}  step {}  {}",
                        text_of(&checkpoint["name"]),
                        checkpoint["seq"],
                        text_of(&checkpoint["created_at"])
                    );
                }
            } else {
                say!(
                    "checkpoint {} names step {} of run {run}",
                    text_of(&answer.body["name"]),
                    answer.body["seq"]
                );
            }
        }
        GraphCommand::Approve { run } => {
            continue_run(
                &client,
                server.json,
                &run,
                "approve",
                json!({"mode": "stream"}),
            )
            .await?;
        }
        GraphCommand::Reject { run, reason } => {
            let body = json!({"mode": "stream", "reason": reason});
            continue_run(&client, server.json, &run, "reject", body).await?;
        }
        GraphCommand::Input { run, output } => {
            let output = serde_json::from_str::<Value>(&output).unwrap_or(Value::String(output));
            let body = json!({"mode": "stream", "output": output});
            continue_run(&client, server.json, &run, "input", body).await?;
        }
        GraphCommand::Cancel { run } => {
            let answer = client
                .send(Method::POST, &run_path(&run, ":cancel"), None, None)
                .await?;
            if server.json {
                say!("{:#}", answer.body);
            } else {
                say!("run {run} cancelled");
            }
        }
    }
    Ok(())
}

/// `POST /v1/runs/{run}:{verb}` in stream mode: live progress, then the result.
async fn continue_run(
    client: &Client,
    json_output: bool,
    run: &str,
    verb: &str,
    body: Value,
) -> anyhow::Result<()> {
    let request = client
        .request(Method::POST, &run_path(run, &format!(":{verb}")))
        .json(&body);
    let response = client
        .execute(request, &format!("{verb} run {run}"))
        .await?;
    let run_id = follow_stream(response, json_output).await?;
    let answer = client
        .send(Method::GET, &run_path(&run_id, "/result"), None, None)
        .await?;
    print_result(&answer.body, json_output)
}

fn run_path(run: &str, tail: &str) -> String {
    format!(
        "/v1/runs/{}{tail}",
        utf8_percent_encode(run, NON_ALPHANUMERIC)
    )
}

fn read_document(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// `NAME=VALUE` and `NAME=@path` pairs as the run input object.
fn parse_inputs(inputs: &[String]) -> anyhow::Result<Value> {
    let mut object = Map::new();
    for pair in inputs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--input {pair:?} is not NAME=VALUE (or NAME=@path)");
        };
        if name.is_empty() {
            bail!("--input {pair:?} has an empty name");
        }
        let value = match value.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the value of input {name} from {path}"))?,
            None => value.to_owned(),
        };
        object.insert(name.to_owned(), Value::String(value));
    }
    Ok(Value::Object(object))
}

async fn run_graph(
    client: &Client,
    json_output: bool,
    document: String,
    input: Value,
    mode: &str,
) -> anyhow::Result<()> {
    if !matches!(mode, "stream" | "sync" | "async") {
        bail!("--mode must be stream, sync or async (batch runs take many inputs: use the API)");
    }
    let body = json!({"graph_yaml": document, "mode": mode, "input": input});
    let request = client.request(Method::POST, "/v1/runs").json(&body);
    let response = client.execute(request, "starting the run").await?;
    match mode {
        "async" => {
            let accepted: Value = response.json().await.context("reading the answer")?;
            if json_output {
                say!("{accepted:#}");
            } else {
                let run_id = text_of(&accepted["run_id"]);
                say!("run {run_id} started");
                say!("  convergio graph status {run_id}");
                say!("  convergio graph result {run_id}");
            }
            Ok(())
        }
        "sync" => {
            let outcome: Value = response.json().await.context("reading the answer")?;
            print_result(&outcome, json_output)
        }
        _ => {
            let run_id = follow_stream(response, json_output).await?;
            let answer = client
                .send(Method::GET, &run_path(&run_id, "/result"), None, None)
                .await?;
            print_result(&answer.body, json_output)
        }
    }
}

/// Prints each event as it arrives; returns the run id.
async fn follow_stream(response: reqwest::Response, json_output: bool) -> anyhow::Result<String> {
    let mut run_id = None;
    let mut buffer = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("reading the event stream")?;
        buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let data: String = frame
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n");
            if data.is_empty() {
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if run_id.is_none() {
                run_id = event["run_id"].as_str().map(str::to_owned);
            }
            print_event(&event, json_output);
        }
    }
    run_id.context("the event stream ended before the run said who it is")
}

/// One line per event, on stderr: progress, not the result.
fn print_event(event: &Value, json_output: bool) {
    if json_output {
        eprintln!("{event}");
        return;
    }
    let node = text_of(&event["node_id"]);
    match event["type"].as_str().unwrap_or_default() {
        "node_started" => {
            let agent = event["agent"].as_str().unwrap_or("-");
            eprintln!("  ▶ {node} ({agent})");
        }
        "node_finished" => {
            let status = text_of(&event["status"]);
            let mark = if status == "succeeded" { "✓" } else { "✗" };
            eprintln!("  {mark} {node} {status} in {} ms", event["duration_ms"]);
        }
        "node_error" => eprintln!(
            "  ! {node}: {} (then {})",
            text_of(&event["error"]),
            text_of(&event["action"])
        ),
        "run_finished" => eprintln!(
            "run {} {}",
            text_of(&event["run_id"]),
            text_of(&event["status"])
        ),
        _ => {}
    }
}

/// Prints the run's output; a run that did not succeed is an error.
fn print_result(outcome: &Value, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        say!("{outcome:#}");
    } else {
        print_output(&outcome["output"]);
    }
    let status = text_of(&outcome["status"]);
    if status != "succeeded" {
        bail!(
            "run {} ended {status}: {}",
            text_of(&outcome["run_id"]),
            outcome["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// Text as text (a Markdown report stays readable), anything else as JSON;
/// a list of parts (text and data, as several agents answer) item by item.
fn print_output(output: &Value) {
    match output {
        Value::String(text) => say!("{text}"),
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(text) => say!("{text}"),
                    other => say!("{other:#}"),
                }
            }
        }
        other => say!("{other:#}"),
    }
}

/// The §8.1 trace as a table.
fn print_trace(trace: &Value) {
    say!(
        "trace {}  graph {}",
        text_of(&trace["trace_id"]),
        text_of(&trace["graph_id"])
    );
    say!(
        "{:<24} {:<22} {:>9} {:>9} {:>6}  status",
        "node",
        "agent",
        "tokens_in",
        "tokens_out",
        "tools"
    );
    for node in trace["nodes"].as_array().into_iter().flatten() {
        say!(
            "{:<24} {:<22} {:>9} {:>9} {:>6}  {}",
            text_of(&node["node_id"]),
            text_of(&node["agent"]),
            node["tokens_in"],
            node["tokens_out"],
            node["tool_calls"],
            text_of(&node["status"])
        );
    }
    say!(
        "total: {} tokens, cost {}, {} ms",
        trace["total_tokens"],
        trace["total_cost"],
        trace["duration_ms"]
    );
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn list_of(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(text_of).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_take_values_inline_or_from_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("code.py");
        std::fs::write(&path, "print('hi')\n").expect("writing the fixture");
        let inputs = vec![
            "name=world".to_owned(),
            format!("source_code=@{}", path.display()),
            "empty=".to_owned(),
        ];
        assert_eq!(
            parse_inputs(&inputs).expect("valid inputs"),
            json!({"name": "world", "source_code": "print('hi')\n", "empty": ""})
        );
        assert!(parse_inputs(&["novalue".to_owned()]).is_err());
        assert!(parse_inputs(&["=x".to_owned()]).is_err());
        assert!(parse_inputs(&["x=@/no/such/file".to_owned()]).is_err());
    }
}
