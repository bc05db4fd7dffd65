//! `convergio send` and `convergio tasks …`: A2A calls to an agent through
//! the gateway, as any A2A client makes them, over JSON-RPC (default) or
//! HTTP+JSON (`--binding rest`). An agent is named as the gateway routes it:
//! `echo` or `convergio://agents/echo` (`/agents/echo`), or
//! `external://b.example/agents/echo` (`/external/b.example/agents/echo`).
//! Human output is one line per task, status or artifact; `--output json`
//! prints the A2A documents (one per line for a stream). `convergio
//! envelope FILE` posts a design-document envelope to `/v1/envelope`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{for_each_event, Client};
use crate::{env, ServerArgs};

/// Which A2A binding carries the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Binding {
    /// JSON-RPC 2.0 at the agent's URL.
    Jsonrpc,
    /// HTTP+JSON (REST) under the agent's URL.
    Rest,
}

/// Who the call is made as, and over which binding.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// The binding.
    #[arg(long, value_enum, default_value_t = Binding::Jsonrpc)]
    binding: Binding,
    /// Call with this API key (`x-api-key`) instead of the admin token.
    #[arg(long, env = env::API_KEY, hide_env_values = true)]
    api_key: Option<String>,
}

/// `convergio send`'s arguments.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The agent (`echo`, `convergio://agents/echo`, `external://org/agents/name`).
    agent: String,
    /// The message's text.
    text: String,
    /// Stream the task's events as they happen (`SendStreamingMessage`).
    #[arg(long)]
    stream: bool,
    /// Continue this task (a follow-up to one that asked for input).
    #[arg(long)]
    task: Option<String>,
    /// Send within this context.
    #[arg(long)]
    context: Option<String>,
    #[command(flatten)]
    call: CallArgs,
}

/// `convergio envelope`'s arguments.
#[derive(Debug, Args)]
pub struct EnvelopeArgs {
    /// The envelope (JSON: protocol, from, to, action, payload); `-` reads stdin.
    file: std::path::PathBuf,
    #[command(flatten)]
    call: CallArgs,
}

/// `convergio tasks` subcommands.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Show one of your tasks at an agent.
    Get {
        /// The agent.
        agent: String,
        /// The task id.
        id: String,
        /// How many history messages to include.
        #[arg(long)]
        history_length: Option<u32>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// List your tasks at an agent, newest first.
    List {
        /// The agent.
        agent: String,
        /// Only the tasks of this context.
        #[arg(long)]
        context: Option<String>,
        /// At most this many.
        #[arg(long)]
        page_size: Option<u32>,
        /// The page after this token.
        #[arg(long)]
        page_token: Option<String>,
        #[command(flatten)]
        call: CallArgs,
    },
    /// Cancel one of your tasks at an agent.
    Cancel {
        /// The agent.
        agent: String,
        /// The task id.
        id: String,
        #[command(flatten)]
        call: CallArgs,
    },
    /// The push notifications the gateway relayed for one of your tasks,
    /// with where each stands (delivered, pending, dead).
    Deliveries {
        /// The task id.
        id: String,
        /// Call with this API key (`x-api-key`) instead of the admin token.
        #[arg(long, env = env::API_KEY, hide_env_values = true)]
        api_key: Option<String>,
    },
}

/// What a path segment escapes: everything but RFC 3986's unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The gateway path of `agent`.
fn agent_path(agent: &str) -> anyhow::Result<String> {
    if let Some(name) = agent.strip_prefix("convergio://agents/") {
        return Ok(format!("/agents/{}", segment(name)));
    }
    if let Some(rest) = agent.strip_prefix("external://") {
        let Some((org, name)) = rest.split_once("/agents/") else {
            bail!("{agent:?} is not an agent id: expected external://<org>/agents/<name>");
        };
        return Ok(format!(
            "/external/{}/agents/{}",
            segment(org),
            segment(name)
        ));
    }
    if agent.is_empty() || agent.contains("://") || agent.contains('/') {
        bail!("{agent:?} is not an agent name or id");
    }
    Ok(format!("/agents/{}", segment(agent)))
}

/// One A2A operation, in the terms both bindings share.
struct Operation<'a> {
    /// The JSON-RPC method.
    method: &'a str,
    /// Its params (the JSON-RPC `params`, the REST body or query).
    params: Value,
    /// The REST method and path under the agent.
    rest: (Method, String),
    /// Whether the answer is an event stream.
    streams: bool,
}

/// A call's client, path and binding.
struct Caller {
    client: Client,
    call: CallArgs,
    path: String,
}

impl Caller {
    fn new(server: &ServerArgs, agent: &str, call: CallArgs) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::new(&server.server, server.token.clone(), &server.data_dir)?,
            path: agent_path(agent)?,
            call,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = match &self.call.api_key {
            Some(key) => self.client.request_with_key(method, path, key),
            None => self.client.request(method, path),
        };
        request.header("A2A-Version", "1.0")
    }

    /// Makes `operation`; a unary answer is returned, a stream's events are
    /// handed to `each` as they arrive (and `Null` returned).
    async fn make(
        &self,
        operation: Operation<'_>,
        each: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<Value> {
        let what = format!("{} {}", operation.method, self.path);
        let request = match self.call.binding {
            Binding::Jsonrpc => self.request(Method::POST, &self.path).json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": operation.method, "params": operation.params,
            })),
            Binding::Rest => {
                let (method, rest) = operation.rest;
                let request = self.request(method.clone(), &format!("{}/{rest}", self.path));
                if method == Method::GET {
                    request.query(&query_of(&operation.params))
                } else {
                    request.json(&operation.params)
                }
            }
        };
        let response = self.client.execute(request, &what).await?;
        if operation.streams {
            let mut each = each;
            for_each_event(response, |event| each(unwrap_rpc(event, &what)?)).await?;
            return Ok(Value::Null);
        }
        let body: Value = response.json().await.context("reading the answer")?;
        match self.call.binding {
            Binding::Jsonrpc => unwrap_rpc(body, &what),
            Binding::Rest => Ok(body),
        }
    }
}

/// A JSON-RPC response's `result`, or its `error` as an error. Anything
/// else (an HTTP+JSON event) is returned as it is.
fn unwrap_rpc(body: Value, what: &str) -> anyhow::Result<Value> {
    if let Some(error) = body.get("error") {
        bail!(
            "{what} failed: {} (code {})",
            error["message"].as_str().unwrap_or("no message"),
            error["code"]
        );
    }
    Ok(match body.get("result") {
        Some(result) if body.get("jsonrpc").is_some() => result.clone(),
        _ => body,
    })
}

/// `params` as query pairs (strings and numbers; nested values skipped).
fn query_of(params: &Value) -> Vec<(String, String)> {
    let Some(object) = params.as_object() else {
        return Vec::new();
    };
    object
        .iter()
        .filter_map(|(key, value)| match value {
            Value::String(text) => Some((key.clone(), text.clone())),
            Value::Number(number) => Some((key.clone(), number.to_string())),
            _ => None,
        })
        .collect()
}

/// Runs `convergio send`.
pub async fn send(server: &ServerArgs, args: SendArgs) -> anyhow::Result<()> {
    let caller = Caller::new(server, &args.agent, args.call)?;
    let mut message = json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"text": args.text}],
    });
    if let Some(task) = &args.task {
        message["taskId"] = json!(task);
    }
    if let Some(context) = &args.context {
        message["contextId"] = json!(context);
    }
    let (method, rest) = if args.stream {
        ("SendStreamingMessage", "message:stream")
    } else {
        ("SendMessage", "message:send")
    };
    let operation = Operation {
        method,
        params: json!({"message": message}),
        rest: (Method::POST, rest.to_owned()),
        streams: args.stream,
    };
    let json_output = server.json;
    let answer = caller
        .make(operation, |event| {
            print_event(&event, json_output);
            Ok(())
        })
        .await?;
    if !args.stream {
        print_event(&answer, json_output);
    }
    Ok(())
}

/// Runs `convergio envelope`: the answer envelope's payload is printed like
/// `send`'s answer.
pub async fn envelope(server: &ServerArgs, args: EnvelopeArgs) -> anyhow::Result<()> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the envelope from stdin")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let envelope: Value = serde_json::from_str(&text).context("the envelope is not JSON")?;
    let caller = Caller {
        client: Client::new(&server.server, server.token.clone(), &server.data_dir)?,
        call: args.call,
        path: "/v1/envelope".to_owned(),
    };
    let request = caller.request(Method::POST, "/v1/envelope").json(&envelope);
    let response = caller.client.execute(request, "POST /v1/envelope").await?;
    let answer: Value = response.json().await.context("reading the answer")?;
    if server.json {
        document!("{}", answer);
    } else {
        say!(
            "{} from {}",
            answer["action"].as_str().unwrap_or("-"),
            answer["from"].as_str().unwrap_or("-")
        );
        print_event(&answer["payload"], false);
    }
    Ok(())
}

/// Runs a `convergio tasks` subcommand.
pub async fn tasks(server: &ServerArgs, command: TasksCommand) -> anyhow::Result<()> {
    let (agent, call, operation) = match command {
        TasksCommand::Deliveries { id, api_key } => {
            return deliveries(server, &id, api_key.as_deref()).await;
        }
        TasksCommand::Get {
            agent,
            id,
            history_length,
            call,
        } => {
            let mut params = json!({"id": id});
            if let Some(length) = history_length {
                params["historyLength"] = json!(length);
            }
            let path = format!("tasks/{}", segment(&id));
            let operation = Operation {
                method: "GetTask",
                params,
                rest: (Method::GET, path),
                streams: false,
            };
            (agent, call, operation)
        }
        TasksCommand::List {
            agent,
            context,
            page_size,
            page_token,
            call,
        } => {
            let mut params = json!({});
            for (key, value) in [("contextId", context), ("pageToken", page_token)] {
                if let Some(value) = value {
                    params[key] = json!(value);
                }
            }
            if let Some(size) = page_size {
                params["pageSize"] = json!(size);
            }
            let operation = Operation {
                method: "ListTasks",
                params,
                rest: (Method::GET, "tasks".to_owned()),
                streams: false,
            };
            (agent, call, operation)
        }
        TasksCommand::Cancel { agent, id, call } => {
            let path = format!("tasks/{}:cancel", segment(&id));
            let operation = Operation {
                method: "CancelTask",
                params: json!({"id": id}),
                rest: (Method::POST, path),
                streams: false,
            };
            (agent, call, operation)
        }
    };
    let listing = operation.method == "ListTasks";
    let answer = Caller::new(server, &agent, call)?
        .make(operation, |_| Ok(()))
        .await?;
    if server.json {
        document!("{}", answer);
    } else if listing {
        let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
        say!("{:<38} {:<38} STATE", "TASK", "CONTEXT");
        for task in &tasks {
            say!(
                "{:<38} {:<38} {}",
                task["id"].as_str().unwrap_or("-"),
                task["contextId"].as_str().unwrap_or("-"),
                state_of(&task["status"])
            );
        }
        if let Some(next) = answer["nextPageToken"]
            .as_str()
            .filter(|next| !next.is_empty())
        {
            say!("next page: --page-token {next}");
        }
    } else {
        print_task(&answer);
    }
    Ok(())
}

/// `convergio tasks deliveries`: `GET /v1/tasks/{id}/push-deliveries`.
async fn deliveries(server: &ServerArgs, id: &str, api_key: Option<&str>) -> anyhow::Result<()> {
    let client = Client::new(&server.server, server.token.clone(), &server.data_dir)?;
    let path = format!("/v1/tasks/{}/push-deliveries", segment(id));
    let request = match api_key {
        Some(key) => client.request_with_key(Method::GET, &path, key),
        None => client.request(Method::GET, &path),
    };
    let answer: Value = client
        .execute(request, &format!("GET {path}"))
        .await?
        .json()
        .await
        .context("reading the deliveries")?;
    if server.json {
        document!("{}", answer);
        return Ok(());
    }
    say!(
        "{:<38} {:<10} {:>8}  LAST ERROR",
        "DELIVERY",
        "STATUS",
        "ATTEMPTS"
    );
    for delivery in answer["deliveries"].as_array().into_iter().flatten() {
        say!(
            "{:<38} {:<10} {:>8}  {}",
            delivery["id"].as_str().unwrap_or("-"),
            delivery["status"].as_str().unwrap_or("-"),
            delivery["attempts"],
            delivery["lastError"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// A status's state without the `TASK_STATE_` prefix.
fn state_of(status: &Value) -> &str {
    let state = status["state"].as_str().unwrap_or("-");
    state.strip_prefix("TASK_STATE_").unwrap_or(state)
}

/// The text of a message's or artifact's parts (data parts as JSON).
fn text_of(parts: &Value) -> String {
    parts
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|part| match (part.get("text"), part.get("data")) {
                    (Some(Value::String(text)), _) => text.clone(),
                    (_, Some(data)) => data.to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn print_task(task: &Value) {
    say!(
        "task {} {}",
        task["id"].as_str().unwrap_or("-"),
        state_of(&task["status"])
    );
    if let Some(message) = task["status"].get("message") {
        say!("  message: {}", text_of(&message["parts"]));
    }
    for artifact in task["artifacts"].as_array().into_iter().flatten() {
        say!(
            "  artifact {}: {}",
            artifact["name"]
                .as_str()
                .or(artifact["artifactId"].as_str())
                .unwrap_or("-"),
            text_of(&artifact["parts"])
        );
    }
}

/// One A2A `SendMessageResponse` or `StreamResponse`, as a line or a few.
fn print_event(event: &Value, json_output: bool) {
    if json_output {
        document!("{}", event);
        return;
    }
    if let Some(task) = event.get("task") {
        print_task(task);
    } else if let Some(message) = event.get("message") {
        say!("message: {}", text_of(&message["parts"]));
    } else if let Some(update) = event.get("statusUpdate") {
        say!("status {}", state_of(&update["status"]));
        if let Some(message) = update["status"].get("message") {
            say!("  message: {}", text_of(&message["parts"]));
        }
    } else if let Some(update) = event.get("artifactUpdate") {
        let artifact = &update["artifact"];
        say!(
            "artifact {}: {}",
            artifact["name"]
                .as_str()
                .or(artifact["artifactId"].as_str())
                .unwrap_or("-"),
            text_of(&artifact["parts"])
        );
    } else {
        say!("{event}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_named_as_the_gateway_routes_them() {
        assert_eq!(agent_path("echo").expect("name"), "/agents/echo");
        assert_eq!(
            agent_path("convergio://agents/weather-bot").expect("id"),
            "/agents/weather-bot"
        );
        assert_eq!(
            agent_path("external://b.example/agents/echo").expect("external"),
            "/external/b.example/agents/echo"
        );
        for bad in ["", "a/b", "http://x", "external://b.example/echo"] {
            assert!(agent_path(bad).is_err(), "{bad}");
        }
    }
}
