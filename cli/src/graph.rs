//! `convergio graph …`: validate a graph document against a running server
//! (agents checked against its registry), run it there with live progress,
//! list the caller's runs (`list`, alias `runs`) and look runs up by id
//! (status, result, trace). Every run prints its id on stderr, so stdout
//! stays the report.
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
//!
//! Graphs as agents (issue 18): `publish` makes a stored graph an A2A agent
//! at `/agents/NAME`; `agents`, `agent` and `unpublish` list, show and
//! withdraw them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
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
    /// Store a graph document on the server (validated; a new version of
    /// your organisation's graph of that name).
    Store {
        /// The graph document.
        file: PathBuf,
    },
    /// List the stored graphs you may read (latest versions).
    Stored,
    /// Show a stored graph: its summary and document.
    Show {
        /// The graph's name.
        name: String,
        /// An older version.
        #[arg(long)]
        version: Option<u32>,
        /// Another organisation's graph (if policy lets you read it).
        #[arg(long)]
        org: Option<String>,
    },
    /// Run a graph on the server and print each node's outcome and the result.
    Run {
        /// The graph document, or with --stored a stored graph's name.
        file: PathBuf,
        /// FILE names a stored graph.
        #[arg(long)]
        stored: bool,
        /// A graph input, `NAME=VALUE` or `NAME=@path` (repeatable).
        #[arg(long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// stream (live progress, the default), sync, or async (print the run id).
        #[arg(long, default_value = "stream")]
        mode: String,
    },
    /// Run a graph once per input, a few at a time, and print each run's outcome.
    Batch {
        /// The graph document, or with --stored a stored graph's name.
        file: PathBuf,
        /// FILE names a stored graph.
        #[arg(long)]
        stored: bool,
        /// The inputs: a JSON array of objects, or JSON lines (one object per line).
        #[arg(long)]
        inputs: PathBuf,
        /// Runs at a time (the server's default otherwise).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Follow a run's events (replayed from its start, then live) until it ends.
    Events {
        /// The run id.
        run: String,
    },
    /// List your runs, newest first (runs belong to the principal that started them).
    #[command(visible_alias = "runs")]
    List {
        /// Only runs in this status (running, succeeded, failed, waiting_for_human, …).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this graph.
        #[arg(long)]
        graph: Option<String>,
        /// Only runs started at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only runs started before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Runs per page (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (the token it printed).
        /// The global `--output json` prints the raw answer.
        #[arg(long)]
        page_token: Option<String>,
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
    /// Publish a stored graph as an A2A agent at /agents/NAME (issue 18):
    /// a message to it runs the graph and answers with its output.
    Publish {
        /// The agent's name.
        name: String,
        /// The stored graph (of your organisation).
        #[arg(long)]
        graph: String,
        /// A fixed version of the graph (default: the latest at each call).
        #[arg(long)]
        graph_version: Option<u32>,
        /// The card's description (default: the graph's).
        #[arg(long)]
        description: Option<String>,
        /// A tag of the card's skill (repeatable; `external` opts in other
        /// organisations under the shipped policies).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List your organisation's graphs published as agents.
    Agents,
    /// Show a graph published as an agent, and whether it answers.
    Agent {
        /// The agent's name.
        name: String,
    },
    /// Withdraw a graph published as an agent: it stops answering.
    Unpublish {
        /// The agent's name.
        name: String,
    },
}

/// Runs a graph subcommand.
pub async fn run(server: &ServerArgs, command: GraphCommand) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    match command {
        GraphCommand::Validate { file } => {
            let summary =
                post_document(&client, "/v1/graphs:validate", &file, "validating").await?;
            if server.json {
                document!("{:#}", summary);
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
        GraphCommand::Run {
            file,
            stored,
            inputs,
            mode,
        } => {
            let graph = graph_of(&file, stored)?;
            let input = parse_inputs(&inputs)?;
            run_graph(&client, server.json, graph, input, &mode).await?;
        }
        GraphCommand::Store { file } => {
            let summary = post_document(&client, "/v1/graphs", &file, "storing").await?;
            if server.json {
                document!("{:#}", summary);
            } else {
                say!(
                    "stored graph {} version {} ({} nodes, agents: {})",
                    text_of(&summary["name"]),
                    summary["version"],
                    summary["nodes"],
                    list_of(&summary["agents"])
                );
            }
        }
        GraphCommand::Stored => {
            let answer = client.send(Method::GET, "/v1/graphs", None, None).await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                say!(
                    "{:<28} {:<20} {:>7} {:>5}  STORED",
                    "NAME",
                    "ORG",
                    "VERSION",
                    "NODES"
                );
                for graph in answer.body["graphs"].as_array().into_iter().flatten() {
                    say!(
                        "{:<28} {:<20} {:>7} {:>5}  {}",
                        text_of(&graph["name"]),
                        text_of(&graph["org"]),
                        graph["version"],
                        graph["nodes"],
                        text_of(&graph["stored_at"])
                    );
                }
            }
        }
        GraphCommand::Show { name, version, org } => {
            let mut query = Vec::new();
            if let Some(version) = version {
                query.push(format!("version={version}"));
            }
            if let Some(org) = org {
                query.push(format!(
                    "org={}",
                    utf8_percent_encode(&org, NON_ALPHANUMERIC)
                ));
            }
            let mut path = format!(
                "/v1/graphs/{}",
                utf8_percent_encode(&name, NON_ALPHANUMERIC)
            );
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let answer = client.send(Method::GET, &path, None, None).await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                let graph = &answer.body;
                say!(
                    "graph {} version {} of {} ({} nodes, {} edges, agents: {})",
                    text_of(&graph["name"]),
                    graph["version"],
                    text_of(&graph["org"]),
                    graph["nodes"],
                    graph["edges"],
                    list_of(&graph["agents"])
                );
                if let Some(source) = graph["source"].as_str() {
                    say!("{}", source.trim_end());
                }
            }
        }
        GraphCommand::Batch {
            file,
            stored,
            inputs,
            concurrency,
        } => {
            let text = std::fs::read_to_string(&inputs)
                .with_context(|| format!("reading {}", inputs.display()))?;
            let inputs = batch_inputs(&text)
                .with_context(|| format!("reading the inputs in {}", inputs.display()))?;
            let mut body = json!({"mode": "batch", "inputs": inputs});
            merge_graph(&mut body, graph_of(&file, stored)?);
            if let Some(concurrency) = concurrency {
                body["concurrency"] = json!(concurrency);
            }
            let answer = crate::client::with_spinner(
                &format!(
                    "running a batch of {}",
                    body["inputs"].as_array().map_or(0, Vec::len)
                ),
                client.send(Method::POST, "/v1/runs", Some(&body), None),
            )
            .await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                let outcome = &answer.body;
                for item in outcome["results"].as_array().into_iter().flatten() {
                    match item.get("run").filter(|run| !run.is_null()) {
                        Some(run) => say!(
                            "{:>4} run {} {}",
                            item["index"],
                            text_of(&run["run_id"]),
                            text_of(&run["status"])
                        ),
                        None => say!("{:>4} error {}", item["index"], text_of(&item["error"])),
                    }
                }
                say!(
                    "{} succeeded, {} failed",
                    outcome["succeeded"],
                    outcome["failed"]
                );
            }
        }
        GraphCommand::Events { run } => {
            let request = client.request(Method::GET, &run_path(&run, "/events"));
            let response = client
                .execute(request, &format!("following run {run}"))
                .await?;
            follow_stream(response, server.json).await?;
        }
        GraphCommand::List {
            status,
            graph,
            since,
            until,
            limit,
            page_token,
        } => {
            let mut query = vec![("page_size".to_owned(), limit.to_string())];
            for (name, value) in [
                ("status", status),
                ("graph", graph),
                ("since", since),
                ("until", until),
                ("page_token", page_token),
            ] {
                if let Some(value) = value {
                    query.push((name.to_owned(), value));
                }
            }
            let path = format!(
                "/v1/runs?{}",
                query
                    .iter()
                    .map(|(name, value)| format!(
                        "{name}={}",
                        utf8_percent_encode(value, NON_ALPHANUMERIC)
                    ))
                    .collect::<Vec<_>>()
                    .join("&")
            );
            let answer = client.send(Method::GET, &path, None, None).await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                say!("{}", runs_table(&answer.body).trim_end());
            }
        }
        GraphCommand::Status { run } => {
            let answer = client
                .send(Method::GET, &run_path(&run, ""), None, None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
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
                document!("{:#}", answer.body);
            } else {
                say!("{}", trace_table(&answer.body).trim_end());
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
                document!("{:#}", answer.body);
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
        GraphCommand::Publish {
            name,
            graph,
            graph_version,
            description,
            tags,
        } => {
            let mut body = json!({"graph": graph});
            if let Some(version) = graph_version {
                body["graph_version"] = json!(version);
            }
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if !tags.is_empty() {
                body["tags"] = json!(tags);
            }
            let answer = client
                .send(Method::PUT, &graph_agent_path(&name), Some(&body), None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                say!(
                    "graph {graph} published as the agent {} (version {}{})",
                    text_of(&answer.body["name"]),
                    answer.body["version"],
                    availability(&answer.body["status"])
                );
            }
        }
        GraphCommand::Agents => {
            let answer = client
                .send(Method::GET, "/v1/graph-agents", None, None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                say!("{:<28} {:<28} {:>7}  STATUS", "NAME", "GRAPH", "VERSION");
                for agent in answer.body["graph_agents"].as_array().into_iter().flatten() {
                    say!(
                        "{:<28} {:<28} {:>7}  {}",
                        text_of(&agent["name"]),
                        text_of(&agent["spec"]["graph"]),
                        agent["version"],
                        availability(&agent["status"]).trim_start_matches(", ")
                    );
                }
            }
        }
        GraphCommand::Agent { name } => {
            let answer = client
                .send(Method::GET, &graph_agent_path(&name), None, None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
            } else {
                let agent = &answer.body;
                say!(
                    "agent {} of {}: graph {} (version {}{})",
                    text_of(&agent["name"]),
                    text_of(&agent["org"]),
                    text_of(&agent["spec"]["graph"]),
                    agent["version"],
                    availability(&agent["status"])
                );
            }
        }
        GraphCommand::Unpublish { name } => {
            client
                .send(Method::DELETE, &graph_agent_path(&name), None, None)
                .await?;
            say!("agent {name} withdrawn");
        }
        GraphCommand::Cancel { run } => {
            let answer = client
                .send(Method::POST, &run_path(&run, ":cancel"), None, None)
                .await?;
            if server.json {
                document!("{:#}", answer.body);
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
pub(crate) fn parse_inputs(inputs: &[String]) -> anyhow::Result<Value> {
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

/// POSTs the graph document in `file` to `path` as YAML; the answer.
async fn post_document(
    client: &Client,
    path: &str,
    file: &std::path::Path,
    doing: &str,
) -> anyhow::Result<Value> {
    let request = client
        .request(Method::POST, path)
        .header("content-type", "application/yaml")
        .body(read_document(file)?);
    let response = client
        .execute(request, &format!("{doing} {}", file.display()))
        .await?;
    response.json().await.context("reading the answer")
}

/// Which graph a run names: a document's text or a stored graph's name.
enum GraphRef {
    Document(String),
    Stored(String),
}

fn graph_of(file: &std::path::Path, stored: bool) -> anyhow::Result<GraphRef> {
    if stored {
        Ok(GraphRef::Stored(file.to_string_lossy().into_owned()))
    } else {
        Ok(GraphRef::Document(read_document(file)?))
    }
}

/// Names `graph` in a `POST /v1/runs` body.
fn merge_graph(body: &mut Value, graph: GraphRef) {
    match graph {
        GraphRef::Document(text) => body["graph_yaml"] = Value::String(text),
        GraphRef::Stored(name) => body["graph"] = Value::String(name),
    }
}

/// Batch inputs: a JSON array of objects, or one JSON object per line.
fn batch_inputs(text: &str) -> anyhow::Result<Vec<Value>> {
    let inputs: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).context("not a JSON array")?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("line {} is not JSON", index + 1))
            })
            .collect::<anyhow::Result<_>>()?
    };
    if let Some(index) = inputs.iter().position(|input| !input.is_object()) {
        bail!("input {} is not a JSON object", index + 1);
    }
    if inputs.is_empty() {
        bail!("no inputs");
    }
    Ok(inputs)
}

async fn run_graph(
    client: &Client,
    json_output: bool,
    graph: GraphRef,
    input: Value,
    mode: &str,
) -> anyhow::Result<()> {
    if !matches!(mode, "stream" | "sync" | "async") {
        bail!("--mode must be stream, sync or async (many inputs: `convergio graph batch`)");
    }
    let mut body = json!({"mode": mode, "input": input});
    merge_graph(&mut body, graph);
    let request = client.request(Method::POST, "/v1/runs").json(&body);
    let response = client.execute(request, "starting the run").await?;
    match mode {
        "async" => {
            let accepted: Value = response.json().await.context("reading the answer")?;
            if json_output {
                document!("{:#}", accepted);
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
            // The id on stderr, so the run can be traced afterwards while
            // stdout stays the report.
            eprintln!(
                "run {} {}",
                text_of(&outcome["run_id"]),
                text_of(&outcome["status"])
            );
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
    crate::client::for_each_event(response, |event| {
        if run_id.is_none() {
            run_id = event["run_id"].as_str().map(str::to_owned);
        }
        print_event(&event, json_output);
        Ok(())
    })
    .await?;
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
pub(crate) fn print_result(outcome: &Value, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        document!("{:#}", outcome);
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

/// Lays out `rows` under `header` in columns as wide as their widest cell
/// (counted in characters); columns listed in `right` are right-aligned.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(column) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            let pad = widths[column].saturating_sub(cell.chars().count());
            if column > 0 {
                text.push_str("  ");
            }
            if right.contains(&column) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if column + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        text.push('\n');
        text
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// Milliseconds between two RFC 3339 times, if both parse.
fn millis_between(start: &Value, end: &Value) -> Option<i64> {
    let parse = |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok();
    Some((parse(end)? - parse(start)?).num_milliseconds())
}

/// A duration for people: `840 ms`, `12.3 s`, `4 min 05 s`.
fn human_duration(millis: i64) -> String {
    match millis {
        ..=999 => format!("{millis} ms"),
        1_000..=59_999 => format!("{:.1} s", millis as f64 / 1000.0),
        _ => format!("{} min {:02} s", millis / 60_000, (millis % 60_000) / 1000),
    }
}

/// The §8.1 trace as an aligned table, one row per node execution with its
/// duration, then the run's totals.
fn trace_table(trace: &Value) -> String {
    let rows: Vec<Vec<String>> = trace["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|node| {
            vec![
                text_of(&node["node_id"]),
                text_of(&node["agent"]),
                text_of(&node["status"]),
                millis_between(&node["start_time"], &node["end_time"])
                    .map(human_duration)
                    .unwrap_or_else(|| "-".to_owned()),
                text_of(&node["tokens_in"]),
                text_of(&node["tokens_out"]),
                text_of(&node["tool_calls"]),
            ]
        })
        .collect();
    let mut text = format!(
        "trace {}  graph {}\n",
        text_of(&trace["trace_id"]),
        text_of(&trace["graph_id"])
    );
    text.push_str(&table(
        &[
            "NODE",
            "AGENT",
            "STATUS",
            "DURATION",
            "TOKENS IN",
            "TOKENS OUT",
            "TOOLS",
        ],
        &rows,
        &[3, 4, 5, 6],
    ));
    let total = trace["duration_ms"]
        .as_i64()
        .map(human_duration)
        .unwrap_or_else(|| "-".to_owned());
    text.push_str(&format!(
        "total: {} tokens, cost {}, {total}\n",
        text_of(&trace["total_tokens"]),
        text_of(&trace["total_cost"])
    ));
    text
}

/// `GET /v1/runs` as a table, with the next page's command when there is one.
fn runs_table(list: &Value) -> String {
    let runs = list["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                text_of(&run["run_id"]),
                text_of(&run["graph_id"]),
                text_of(&run["status"]),
                text_of(&run["started_at"]),
                millis_between(&run["started_at"], &run["finished_at"])
                    .map(human_duration)
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut text = table(
        &["RUN", "GRAPH", "STATUS", "STARTED", "DURATION"],
        &rows,
        &[4],
    );
    if let Some(token) = list["next_page_token"].as_str() {
        text.push_str(&format!(
            "more: convergio graph list --page-token {token}\n"
        ));
    }
    text
}

pub(crate) fn text_of(value: &Value) -> String {
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

/// `/v1/graph-agents/{name}`, the name percent-encoded.
fn graph_agent_path(name: &str) -> String {
    format!(
        "/v1/graph-agents/{}",
        utf8_percent_encode(name, NON_ALPHANUMERIC)
    )
}

/// `, answering` or `, not answering: why` from a status object.
fn availability(status: &Value) -> String {
    if status["available"].as_bool() == Some(true) {
        ", answering".to_owned()
    } else {
        format!(", not answering: {}", text_of(&status["reason"]))
    }
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

    #[test]
    fn trace_table_aligns_columns_and_shows_durations() {
        let trace = json!({
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "graph_id": "code_review_pipeline",
            "nodes": [
                {"node_id": "analyzer", "agent": "code_analyzer", "status": "success",
                 "start_time": "2026-12-03T17:00:00.000Z", "end_time": "2026-12-03T17:00:00.042Z",
                 "tokens_in": 1200, "tokens_out": 35, "tool_calls": 0},
                {"node_id": "security_reviewer_with_a_long_name", "agent": "security_expert",
                 "status": "failed",
                 "start_time": "2026-12-03T17:00:00.042Z", "end_time": "2026-12-03T17:00:12.342Z",
                 "tokens_in": 7, "tokens_out": 123456, "tool_calls": 3}
            ],
            "total_tokens": 124698, "total_cost": 0.0, "duration_ms": 12342
        });
        let text = trace_table(&trace);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "trace 4bf92f3577b34da6a3ce929d0e0e4736  graph code_review_pipeline"
        );
        let expected = [
            "NODE                                AGENT            STATUS   DURATION  TOKENS IN  TOKENS OUT  TOOLS",
            "analyzer                            code_analyzer    success     42 ms       1200          35      0",
            "security_reviewer_with_a_long_name  security_expert  failed     12.3 s          7      123456      3",
        ];
        assert_eq!(&lines[1..4], &expected);
        // Every column starts at the same place on every line.
        for title in ["AGENT", "STATUS"] {
            let at = lines[1].find(title).expect("a header title");
            assert!(lines[2..4].iter().all(|line| line[at - 2..at] == *"  "));
        }
        assert_eq!(lines[4], "total: 124698 tokens, cost 0.0, 12.3 s");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0 ms"),
            (999, "999 ms"),
            (1_000, "1.0 s"),
            (61_500, "1 min 01 s"),
        ];
        for (millis, expected) in cases {
            assert_eq!(human_duration(millis), expected);
        }
    }

    #[test]
    fn runs_table_lists_runs_and_the_next_page() {
        let list = json!({
            "runs": [
                {"run_id": "0193a0c4-0000-7000-8000-000000000001", "graph_id": "g", "status": "succeeded",
                 "started_at": "2026-12-03T17:00:00Z", "finished_at": "2026-12-03T17:00:01.5Z"},
                {"run_id": "0193a0c4-0000-7000-8000-000000000000", "graph_id": "longer_graph", "status": "running",
                 "started_at": "2026-12-03T16:59:00Z", "finished_at": null}
            ],
            "next_page_token": "0193a0c4-0000-7000-8000-000000000000"
        });
        let text = runs_table(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "RUN                                   GRAPH         STATUS     STARTED               DURATION",
                "0193a0c4-0000-7000-8000-000000000001  g             succeeded  2026-12-03T17:00:00Z     1.5 s",
                "0193a0c4-0000-7000-8000-000000000000  longer_graph  running    2026-12-03T16:59:00Z         -",
                "more: convergio graph list --page-token 0193a0c4-0000-7000-8000-000000000000",
            ]
        );
        assert_eq!(runs_table(&json!({"runs": []})), "no runs\n");
    }
}
