//! Model agents end to end (issue 17), with the real binary and the
//! project's fake OpenAI-compatible provider on loopback (the provider is
//! the outside internet; everything else is real):
//! - `secrets set` (stdin) then `agents apply FILE.yaml`, then a call
//!   through the gateway on JSON-RPC and HTTP+JSON answered by the fake,
//!   with the sealed secret as the bearer key; the key appears in no log
//!   line at TRACE, no audit record and no API answer;
//! - a daily token budget stops a call with 429 and `Retry-After` before
//!   the provider sees it;
//! - a conversation continued by `contextId` on a second `serve` on the
//!   same PostgreSQL database;
//! - a streamed answer relayed through the gateway chunk by chunk;
//! - a graph node's tool calls listed in the run's trace, each decided by
//!   policy, quotas and the SSRF guard and audited;
//! - the shipped reviewer set running `code_review_pipeline`;
//! - provider trouble (429, cut or malformed streams, a refused key, a
//!   hang) failing tasks quickly while the gateway stays healthy.

mod support;

use std::path::Path;
use std::process::Command;

use convergio_models::fake::{FakeOpenAi, FakeProvider, FakeReply};
use convergio_models::Usage;
use serde_json::{json, Value};
use support::{
    admin_token, issue_key, set_secret, start_logged, start_with, until_audited, Server,
};

const SECRET: &str = "sk-e2e-model-agent-key-4242424242";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `convergio agents apply` of a declaration calling `fake`.
fn apply(server: &Server, data_dir: &Path, name: &str, fake: &FakeProvider) -> String {
    apply_with(server, data_dir, name, fake, "")
}

/// [`apply`] with `extra` lines of YAML appended to the declaration.
fn apply_with(
    server: &Server,
    data_dir: &Path,
    name: &str,
    fake: &FakeProvider,
    extra: &str,
) -> String {
    let file = data_dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: {name}\n\
             description: Translates text\nprovider: openai\nmodel: fake-model\n\
             base_url: {}\napi_key: secret:openai\ninstructions: Translate into French.\n\
             max_tokens: 64\n{extra}",
            fake.base_url()
        ),
    )
    .expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((server, data_dir)),
        &["agents", "apply", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "{stdout}\n{stderr}");
    stdout
}

fn message(text: &str, context_id: Option<&str>) -> Value {
    let mut message = json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"text": text}],
    });
    if let Some(context_id) = context_id {
        message["contextId"] = json!(context_id);
    }
    message
}

/// A JSON-RPC `SendMessage` through the gateway: status, headers, body.
async fn send(
    base: &str,
    agent: &str,
    text: &str,
    context_id: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/agents/{agent}"))
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": message(text, context_id), "configuration": {"returnImmediately": false}},
        }))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get_text(base: &str, path: &str, token: &str) -> String {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body")
}

#[test]
fn a_model_agent_answers_through_the_gateway_and_never_shows_its_key() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.require_key(SECRET);
    fake.set_fallback(FakeReply::text(
        "Bonjour le monde",
        1,
        Usage {
            input_tokens: 12,
            output_tokens: 5,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        "models:\n  prices:\n    - { provider: openai, model: fake-model, input_per_million: 1000, output_per_million: 2000 }\n",
    )
    .expect("writes the config");
    let log = data_dir.path().join("server.log");
    let server = start_logged(
        data_dir.path(),
        &[],
        &[
            ("CONVERGIO_CONFIG", config.to_str().expect("utf-8")),
            ("CONVERGIO_LOG", "trace"),
        ],
        &log,
    );
    set_secret(&server, data_dir.path(), "openai", SECRET);
    let applied = apply(&server, data_dir.path(), "french", &fake);
    assert!(applied.contains("created model agent french"), "{applied}");
    assert!(applied.contains("available"), "{applied}");
    let token = admin_token(data_dir.path());
    runtime.block_on(async {
        // JSON-RPC, as an anonymous caller on this machine (the tour policy).
        let (status, _, body) = send(&server.base, "french", "Hello world", None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains("Bonjour le monde"), "{body}");
        // HTTP+JSON.
        let response = reqwest::Client::new()
            .post(format!("{}/agents/french/message:send", server.base))
            .header("A2A-Version", "1.0")
            .json(&json!({"message": message("Hello again", None), "configuration": {"returnImmediately": false}}))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.expect("json");
        assert!(body.to_string().contains("Bonjour le monde"), "{body}");
        // The provider saw the sealed secret as the key, and our instructions.
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
        // Usage and cost reach /metrics.
        let metrics = get_text(&server.base, "/metrics", &token).await;
        assert!(
            metrics.contains("convergio_model_tokens_total{org=\"convergio.local\",direction=\"in\"} 24"),
            "{metrics}"
        );
        assert!(metrics.contains("convergio_model_cost_total{org=\"convergio.local\"} 0.044"), "{metrics}");
        // No answer of the API holds the key.
        for path in ["/v1/model-agents", "/v1/model-agents/french", "/v1/secrets", "/v1/audit?limit=1000", "/v1/agents/french", "/metrics"] {
            let text = get_text(&server.base, path, &token).await;
            assert!(!text.contains(SECRET), "{path} shows the key");
        }
    });
    let (ok, listed, _) = support::cli(
        Some((&server, data_dir.path())),
        &["agents", "model", "list"],
    );
    assert!(
        ok && listed.contains("french") && listed.contains("available"),
        "{listed}"
    );
    drop(server);
    let logs = std::fs::read_to_string(&log).expect("the log");
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "logging ran at TRACE"
    );
    assert!(!logs.contains(SECRET), "a log line holds the key");
    let database = std::fs::read(data_dir.path().join("convergio.db")).expect("the database");
    assert!(
        !database
            .windows(SECRET.len())
            .any(|window| window == SECRET.as_bytes()),
        "the database file holds the key in clear"
    );
}

#[test]
fn a_spent_daily_budget_stops_calls_before_the_provider() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "ok",
        1,
        Usage {
            input_tokens: 30,
            output_tokens: 10,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        "models:\n  budgets:\n    default: { daily_tokens: 20 }\n",
    )
    .expect("writes the config");
    let server = start_with(
        data_dir.path(),
        &[("CONVERGIO_CONFIG", config.to_str().expect("utf-8"))],
    );
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply(&server, data_dir.path(), "budgeted", &fake);
    runtime.block_on(async {
        let (status, _, body) = send(&server.base, "budgeted", "first", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(fake.requests().len(), 1);
        // The provider reported 40 tokens against a budget of 20: spent.
        let (status, headers, body) = send(&server.base, "budgeted", "second", None).await;
        assert_eq!(status, 429, "{body}");
        let retry_after: u64 = headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .expect("a Retry-After");
        assert!((1..=86_400).contains(&retry_after), "{retry_after}");
        assert!(body.to_string().contains("RATE_LIMITED"), "{body}");
        assert_eq!(
            fake.requests().len(),
            1,
            "the provider saw the refused call"
        );
    });
}

#[test]
fn a_conversation_continues_on_another_replica_on_postgres() {
    let database = convergio_tests::postgres::TestDatabase::create_blocking("convergio_m");
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "Noted: the password is swordfish",
        1,
        Usage {
            input_tokens: 3,
            output_tokens: 3,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let replica = || {
        start_with(
            data_dir.path(),
            &[("CONVERGIO_DATABASE_URL", database.url())],
        )
    };
    let first = replica();
    set_secret(&first, data_dir.path(), "openai", SECRET);
    apply(&first, data_dir.path(), "memory", &fake);
    // Started after the declaration: it serves it from the shared store,
    // and the shared card now names the second replica's loopback socket;
    // each replica must still route the agent to its own copy.
    let second = replica();
    runtime.block_on(async {
        let (status, _, body) = send(
            &first.base,
            "memory",
            "Remember: swordfish",
            Some("ctx-pg-1"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = send(
            &second.base,
            "memory",
            "What is the password?",
            Some("ctx-pg-1"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("result").is_some(), "{body}");
    });
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let second_prompt = requests[1].body.to_string();
    assert!(
        second_prompt.contains("Remember: swordfish")
            && second_prompt.contains("Noted: the password is swordfish"),
        "the second replica did not send the first turn: {second_prompt}"
    );
}

#[test]
fn the_python_sdk_talks_to_a_model_agent_through_the_gateway() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new("bash")
        .arg(root.join("scripts/interop-venv.sh"))
        .status()
        .expect("runs scripts/interop-venv.sh");
    assert!(status.success(), "scripts/interop-venv.sh failed");
    let python = root.join(".venv-interop/bin/python");
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "Hallo Welt aus dem Modell",
        4,
        Usage {
            input_tokens: 2,
            output_tokens: 4,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply(&server, data_dir.path(), "german", &fake);
    for binding in ["JSONRPC", "HTTP+JSON"] {
        let output = Command::new(&python)
            .arg(root.join("interop/model_client.py"))
            .arg(format!("{}/agents/german", server.base))
            .arg(binding)
            .arg("Hallo Welt aus dem Modell")
            .output()
            .expect("the SDK client runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{binding}: {stdout}\n{stderr}");
        for check in ["ok card", "ok blocking", "ok streaming"] {
            assert!(
                stdout.contains(check),
                "{binding}: {check} missing from {stdout}"
            );
        }
    }
}

#[test]
fn a_tool_call_goes_through_the_gateway_and_policy_can_refuse_it() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let usage = Usage {
        input_tokens: 1,
        output_tokens: 1,
    };
    let turn = || {
        [
            FakeReply::tool_call("call-1", "echo", json!({"text": "ping"}), usage),
            FakeReply::text("done", 1, usage),
        ]
    };
    fake.push(turn());
    fake.push(turn());
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply_with(
        &server,
        data_dir.path(),
        "tooluser",
        &fake,
        "tools: [echo]\n",
    );
    let token = admin_token(data_dir.path());
    runtime.block_on(async {
        let (status, _, body) = send(&server.base, "tooluser", "use the tool", None).await;
        assert_eq!(status, 200, "{body}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let tools = requests[0].body["tools"].to_string();
        assert!(tools.contains("echo"), "{tools}");
        let answered = requests[1].body.to_string();
        assert!(answered.contains("echo: ping"), "the tool's answer: {answered}");

        // Policy now forbids model agents' calls: the tool call is refused
        // and the model is told so.
        let example = include_str!("../../policies/example.cedar");
        let policies = format!(
            "{example}\n@id(\"no-agent-tools\")\nforbid (principal, action == Action::\"send_message\", resource is Agent)\nwhen {{ principal.subject like \"agent:*\" }};\n"
        );
        let response = reqwest::Client::new()
            .put(format!("{}/v1/policies", server.base))
            .bearer_auth(&token)
            .json(&json!({"policies": policies, "reason": "no tools for model agents"}))
            .send()
            .await
            .expect("answers");
        assert!(response.status().is_success(), "{:?}", response.text().await);
        let (status, _, body) = send(&server.base, "tooluser", "use the tool again", None).await;
        assert_eq!(status, 200, "{body}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 4);
        let refused = requests[3].body.to_string();
        assert!(refused.contains("refused"), "the refusal reached the model: {refused}");
    });
}

#[test]
fn the_declarations_directory_loads_valid_files_and_lists_missing_keys() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let agents_dir = data_dir.path().join("agents");
    std::fs::create_dir(&agents_dir).expect("creates the directory");
    std::fs::write(
        agents_dir.join("offline.yaml"),
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: offline\nprovider: openai\n\
             model: fake-model\nbase_url: {}\napi_key: env:CONVERGIO_TEST_UNSET_MODEL_KEY\n",
            fake.base_url()
        ),
    )
    .expect("writes a declaration");
    std::fs::write(
        agents_dir.join("broken.yaml"),
        "apiVersion: convergio/v1\nkind: ModelAgent\nname: broken\nprovider: gemini\nmodel: m\n",
    )
    .expect("writes a bad declaration");
    let server = start_with(
        data_dir.path(),
        &[(
            "CONVERGIO_MODEL_AGENTS_DIR",
            agents_dir.to_str().expect("utf-8"),
        )],
    );
    let token = admin_token(data_dir.path());
    runtime.block_on(async {
        let listed = get_text(&server.base, "/v1/model-agents", &token).await;
        let listed: Value = serde_json::from_str(&listed).expect("json");
        let agents = listed["model_agents"].as_array().expect("a list");
        assert_eq!(agents.len(), 1, "{listed}");
        assert_eq!(agents[0]["name"], json!("offline"));
        assert_eq!(agents[0]["status"]["available"], json!(false));
        let reason = agents[0]["status"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("env:CONVERGIO_TEST_UNSET_MODEL_KEY"),
            "{reason}"
        );
        // Still serving: the example agents answer.
        let (status, _, body) = send(&server.base, "echo", "still here", None).await;
        assert_eq!(status, 200, "{body}");

        // The directory is watched: a new file declares an agent, a changed
        // one makes a new version, a removed one deletes its agent.
        let declaration = |name: &str, model: &str| {
            format!(
                "apiVersion: convergio/v1\nkind: ModelAgent\nname: {name}\nprovider: openai\n\
                 model: {model}\nbase_url: {}\napi_key: env:CONVERGIO_TEST_UNSET_MODEL_KEY\n",
                fake.base_url()
            )
        };
        let listing = || async {
            let listed = get_text(&server.base, "/v1/model-agents", &token).await;
            let listed: Value = serde_json::from_str(&listed).expect("json");
            listed["model_agents"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|agent| {
                    (
                        agent["name"].as_str().unwrap_or_default().to_owned(),
                        agent["version"].as_i64().unwrap_or_default(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let until = |wanted: Vec<(&'static str, i64)>| async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let now: Vec<(String, i64)> = listing().await;
                let matches = now.len() == wanted.len()
                    && wanted
                        .iter()
                        .all(|(name, version)| now.contains(&((*name).to_owned(), *version)));
                if matches {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "never {wanted:?}: {now:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        std::fs::write(
            agents_dir.join("added.yaml"),
            declaration("added", "fake-model"),
        )
        .expect("adds a declaration");
        until(vec![("offline", 1), ("added", 1)]).await;
        std::fs::write(
            agents_dir.join("offline.yaml"),
            declaration("offline", "other-model"),
        )
        .expect("changes a declaration");
        until(vec![("offline", 2), ("added", 1)]).await;
        std::fs::remove_file(agents_dir.join("added.yaml")).expect("removes a declaration");
        until(vec![("offline", 2)]).await;
    });
}

/// Streaming through the gateway relays each provider chunk as its own
/// artifact update as it comes, not once the answer is whole: with the
/// provider pausing 700 ms between chunks, the first update reaches the
/// client well before the last (the margin is several pauses, so a slow
/// machine does not decide it).
#[test]
fn a_streamed_answer_reaches_the_client_chunk_by_chunk_through_the_gateway() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "un deux trois quatre",
        4,
        Usage {
            input_tokens: 3,
            output_tokens: 4,
        },
    ));
    fake.set_chunk_delay(std::time::Duration::from_millis(700));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply(&server, data_dir.path(), "counter", &fake);
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/agents/counter/message:stream", server.base))
            .header("A2A-Version", "1.0")
            .json(&json!({"message": message("Count to four", None)}))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 200);
        let started = std::time::Instant::now();
        let mut stream = convergio_tests::sse::EventStream::new(response);
        let mut chunks = Vec::new();
        while let Some(event) = stream.next().await {
            if let Some(update) = event.get("artifactUpdate") {
                let text: String = update["artifact"]["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|part| part["text"].as_str())
                    .collect();
                let appended = update["append"] == json!(true);
                chunks.push((started.elapsed(), appended, text));
            }
        }
        // Four chunks (the first starts the artifact, the others append to
        // it), then the whole answer as the last chunk.
        let texts: Vec<&str> = chunks.iter().map(|(_, _, text)| text.as_str()).collect();
        let appending: Vec<bool> = chunks.iter().map(|(_, appended, _)| *appended).collect();
        assert_eq!(
            appending,
            [false, true, true, true, false],
            "one update per chunk: {texts:?}"
        );
        let appended: Vec<_> = chunks[..4]
            .iter()
            .map(|(at, _, text)| (*at, text.as_str()))
            .collect();
        let joined: String = appended.iter().map(|(_, text)| *text).collect();
        assert_eq!(joined, "un deux trois quatre", "{texts:?}");
        assert_eq!(texts.last(), Some(&"un deux trois quatre"), "{texts:?}");
        let chunks = appended;
        let (first, _) = chunks[0];
        let (last, _) = chunks[chunks.len() - 1];
        // Three pauses of 700 ms lie between the first chunk and the last.
        assert!(
            last.saturating_sub(first) >= std::time::Duration::from_millis(1400),
            "the first chunk waited for the others: {chunks:?}"
        );
    });
}

#[test]
fn a_slow_model_agent_outlives_the_default_bound_and_its_cost_reaches_the_trace() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "un deux trois",
        3,
        Usage {
            input_tokens: 100,
            output_tokens: 50,
        },
    ));
    // About two seconds per answer: past the one-second request and
    // default upstream bounds below, within the agent's own twenty.
    fake.set_chunk_delay(std::time::Duration::from_millis(700));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        "limits: {request_timeout_seconds: 1}\nupstream: {timeout_seconds: 1}\nmodels:\n  prices:\n    - {provider: openai, model: fake-model, input_per_million: 1000, output_per_million: 2000}\n",
    )
    .expect("writes the config");
    let server = start_with(
        data_dir.path(),
        &[("CONVERGIO_CONFIG", config.to_str().expect("utf-8"))],
    );
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply_with(
        &server,
        data_dir.path(),
        "slowpoke",
        &fake,
        "timeout_seconds: 20\n",
    );
    let token = admin_token(data_dir.path());
    runtime.block_on(async {
        let (status, _, body) = send(&server.base, "slowpoke", "Count", None).await;
        assert_eq!(status, 200, "{body}");
        let task = &body["result"]["task"];
        assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{body}");
        // 100 × 1000 + 50 × 2000 per million tokens: 0.2 per call.
        let cost = task["metadata"]["usage"]["cost"].as_f64().expect("a cost");
        assert!((cost - 0.2).abs() < 1e-9, "{body}");

        // The same agent as a graph node: its reported cost is the trace's.
        let run = support::run_to_end(
            &server,
            &token,
            json!({
                "graph_yaml": "name: priced\nnodes:\n  - {id: count, agent: slowpoke, inputs: [text]}\n",
                "mode": "async",
                "input": {"text": "Count"},
            }),
        )
        .await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let run_id = run["run_id"].as_str().expect("a run id");
        let trace: Value = reqwest::Client::new()
            .get(format!("{}/v1/runs/{run_id}/trace", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("reads")
            .json()
            .await
            .expect("json");
        let total = trace["total_cost"].as_f64().expect("total_cost");
        assert!((total - 0.2).abs() < 1e-9, "{trace}");
        assert_eq!(trace["nodes"][0]["tokens_in"], 100, "{trace}");
    });
}

/// A JSON-RPC `SendMessage` with an API key: the A2A answer.
async fn send_as(base: &str, key: &str, agent: &str, text: &str) -> Value {
    call_as(
        base,
        Some(key),
        agent,
        "SendMessage",
        json!({"message": message(text, None), "configuration": {"returnImmediately": false}}),
    )
    .await
}

#[test]
fn a_caller_pays_agent_uses_the_callers_own_key_and_only_the_gateway_reaches_it() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "bonjour",
        1,
        Usage {
            input_tokens: 5,
            output_tokens: 2,
        },
    ));
    const B_KEY: &str = "sk-b-example-own-provider-key-777";
    fake.require_key(B_KEY);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    // The deployment's agent, offered to other organisations (the
    // `external` tag) and paid for by whoever calls it.
    let file = data_dir.path().join("shared.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: shared\nprovider: openai\n\
             model: fake-model\nbase_url: {}\napi_key: caller\ninstructions: Translate.\n\
             skills:\n  - {{id: translate, name: Translate, description: Translates, tags: [external]}}\n",
            fake.base_url()
        ),
    )
    .expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((&server, data_dir.path())),
        &["agents", "apply", file.to_str().expect("utf-8")],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let b_admin = issue_key(
        &server,
        data_dir.path(),
        "ops@b.example",
        "b.example",
        &["secrets:write"],
    );
    let b_user = issue_key(&server, data_dir.path(), "ann@b.example", "b.example", &[]);
    let c_user = issue_key(&server, data_dir.path(), "cy@c.example", "c.example", &[]);
    runtime.block_on(async {
        let stored = reqwest::Client::new()
            .put(format!("{}/v1/secrets/openai", server.base))
            .header("X-API-Key", &b_admin)
            .body(B_KEY)
            .send()
            .await
            .expect("answers");
        assert_eq!(stored.status(), 204, "{:?}", stored.text().await);

        // b.example's caller: b.example's key reaches the provider.
        let answer = send_as(&server.base, &b_user, "shared", "Hello").await;
        assert_eq!(answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
        assert_eq!(fake.requests().len(), 1);
        assert_eq!(fake.requests()[0].header("authorization"), Some(format!("Bearer {B_KEY}").as_str()));

        // c.example keeps no key: the call fails naming the reference only.
        let answer = send_as(&server.base, &c_user, "shared", "Hello").await;
        assert_eq!(answer["result"]["task"]["status"]["state"], "TASK_STATE_FAILED", "{answer}");
        assert!(!answer.to_string().contains(B_KEY), "{answer}");
        assert_eq!(fake.requests().len(), 1, "c.example's call reached the provider");

        // A client claiming b.example in the metadata is overruled by the
        // gateway's stamp of its verified organisation.
        let forged = reqwest::Client::new()
            .post(format!("{}/agents/shared", server.base))
            .header("A2A-Version", "1.0")
            .header("X-API-Key", &c_user)
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "SendMessage",
                "params": {"message": {"messageId": "forged-1", "role": "ROLE_USER",
                    "parts": [{"text": "Hello"}], "metadata": {"convergio.caller.org": "b.example"}}}}))
            .send()
            .await
            .expect("answers")
            .json::<Value>()
            .await
            .expect("json");
        assert_eq!(forged["result"]["task"]["status"]["state"], "TASK_STATE_FAILED", "{forged}");
        assert_eq!(fake.requests().len(), 1, "the forged organisation was believed");

        // The agent's own loopback server answers only the gateway.
        let (_, record) = support::admin_get(&server, data_dir.path(), "/v1/agents/shared").await;
        let slot = record["upstreams"][0]["url"].as_str().expect("an upstream").to_owned();
        let direct = reqwest::Client::new()
            .post(&slot)
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "SendMessage",
                "params": {"message": message("Hello", None)}}))
            .send()
            .await
            .expect("answers");
        assert_eq!(direct.status(), 401);
        assert_eq!(fake.requests().len(), 1);
    });
}

/// A JSON-RPC call to `agent` through the gateway (anonymous, from
/// loopback): the answer.
async fn call(base: &str, agent: &str, method: &str, params: Value) -> Value {
    call_as(base, None, agent, method, params).await
}

/// [`call`] as the holder of `key`, when given.
async fn call_as(base: &str, key: Option<&str>, agent: &str, method: &str, params: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/agents/{agent}"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    request
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("json")
}

/// A model agent through the gateway beyond sending: it answers a gRPC
/// client; a task started without waiting is listed, cancelled while the
/// provider is still answering, and read back cancelled; discovery finds
/// the agent.
#[test]
fn a_model_agents_task_is_listed_cancelled_and_found_through_the_gateway() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "one two three four five six seven eight",
        8,
        Usage {
            input_tokens: 3,
            output_tokens: 8,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply(&server, data_dir.path(), "slowpoke", &fake);
    runtime.block_on(async {
        use convergio_gateway::a2a::grpc::proto::{self as pb, part, Message, Part, Role};
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http();
        let mut grpc = pb::a2a_service_client::A2aServiceClient::with_origin(
            http,
            server.base.parse().expect("uri"),
        );
        let answer = grpc
            .send_message(tonic::Request::new(pb::SendMessageRequest {
                tenant: "slowpoke".into(),
                message: Some(Message {
                    message_id: "grpc-1".into(),
                    role: Role::User.into(),
                    parts: vec![Part {
                        content: Some(part::Content::Text("count".into())),
                        ..Part::default()
                    }],
                    ..Message::default()
                }),
                ..pb::SendMessageRequest::default()
            }))
            .await
            .expect("a gRPC answer")
            .into_inner();
        let text = serde_json::to_string(&answer).expect("json");
        assert!(text.contains("one two three"), "{text}");
    });
    fake.set_chunk_delay(std::time::Duration::from_millis(500));
    runtime.block_on(async {
        let started = call(
            &server.base,
            "slowpoke",
            "SendMessage",
            json!({"message": message("count slowly", None),
                   "configuration": {"returnImmediately": true}}),
        )
        .await;
        let task = started["result"]["task"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no task: {started}"))
            .to_owned();
        let listed = call(&server.base, "slowpoke", "ListTasks", json!({})).await;
        let ids: Vec<&str> = listed["result"]["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("no tasks: {listed}"))
            .iter()
            .filter_map(|task| task["id"].as_str())
            .collect();
        assert!(ids.contains(&task.as_str()), "{listed}");
        let cancelled = call(&server.base, "slowpoke", "CancelTask", json!({"id": task})).await;
        assert_eq!(
            cancelled["result"]["status"]["state"], "TASK_STATE_CANCELED",
            "{cancelled}"
        );
        let read = call(&server.base, "slowpoke", "GetTask", json!({"id": task})).await;
        assert_eq!(
            read["result"]["status"]["state"], "TASK_STATE_CANCELED",
            "{read}"
        );
        let found: Value = reqwest::get(format!("{}/v1/agents?q=slowpoke", server.base))
            .await
            .expect("discovery answers")
            .json()
            .await
            .expect("json");
        let items = found["agents"]
            .as_array()
            .unwrap_or_else(|| panic!("{found}"));
        assert!(
            items
                .iter()
                .any(|item| item.to_string().contains("convergio://agents/slowpoke")),
            "{found}"
        );
    });
}

/// Key rotation without a restart: the provider starts accepting only a
/// new key, the old one is refused (a clear error naming the reference,
/// never a key), and once `secrets set` stores the new key the very next
/// call uses it.
#[test]
fn a_rotated_secret_is_used_by_the_next_call_without_a_restart() {
    const ROTATED: &str = "sk-e2e-rotated-key-7373737373";
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.require_key(SECRET);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply(&server, data_dir.path(), "rotating", &fake);
    runtime.block_on(async {
        let answer = call(
            &server.base,
            "rotating",
            "SendMessage",
            json!({"message": message("before", None)}),
        )
        .await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
        // The provider rotates first: the stored key is refused now.
        fake.require_key(ROTATED);
        let refused = call(
            &server.base,
            "rotating",
            "SendMessage",
            json!({"message": message("between", None)}),
        )
        .await;
        let shown = refused.to_string();
        assert!(
            !shown.contains(SECRET) && !shown.contains(ROTATED),
            "{shown}"
        );
        assert!(
            refused.get("error").is_some()
                || refused["result"]["task"]["status"]["state"] == "TASK_STATE_FAILED",
            "{refused}"
        );
    });
    set_secret(&server, data_dir.path(), "openai", ROTATED);
    runtime.block_on(async {
        let answer = call(
            &server.base,
            "rotating",
            "SendMessage",
            json!({"message": message("after", None)}),
        )
        .await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
    });
    let last = fake.requests().pop().expect("the provider was called");
    assert_eq!(
        last.headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str()),
        Some(format!("Bearer {ROTATED}").as_str())
    );
}

/// An Anthropic-backed model agent answers through the gateway too (the
/// other tests use the OpenAI fake): the Messages API is called with the
/// organisation's key in `x-api-key`, and the answer is the task's artifact.
#[test]
fn an_anthropic_model_agent_answers_through_the_gateway() {
    const ANTHROPIC: &str = "sk-ant-e2e-0000000000000000";
    let runtime = runtime();
    let fake = runtime
        .block_on(convergio_models::fake::FakeAnthropic::start())
        .expect("the fake starts");
    fake.require_key(ANTHROPIC);
    fake.set_fallback(FakeReply::text(
        "Bonjour le monde",
        2,
        Usage {
            input_tokens: 4,
            output_tokens: 3,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "anthropic", ANTHROPIC);
    let file = data_dir.path().join("claude.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: convergio/v1\nkind: ModelAgent\nname: claude\nprovider: anthropic\n\
             model: fake-model\nbase_url: {}\napi_key: secret:anthropic\nmax_tokens: 64\n",
            fake.base_url()
        ),
    )
    .expect("writes the declaration");
    let (ok, stdout, stderr) = support::cli(
        Some((&server, data_dir.path())),
        &["agents", "apply", file.to_str().expect("utf-8 path")],
    );
    assert!(ok, "{stdout}\n{stderr}");
    runtime.block_on(async {
        let answer = call(
            &server.base,
            "claude",
            "SendMessage",
            json!({"message": message("Hello world", None)}),
        )
        .await;
        let task = &answer["result"]["task"];
        assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
        assert!(task.to_string().contains("Bonjour le monde"), "{answer}");
        assert!(!answer.to_string().contains(ANTHROPIC));
    });
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/messages");
    assert!(requests[0]
        .headers
        .iter()
        .any(|(name, value)| name == "x-api-key" && value == ANTHROPIC));
}

/// A model agent as a graph node whose tool calls meet the gateway's
/// pipeline: the first call to `echo` is allowed and audited under the
/// model agent's principal; the second is refused by the per-agent quota;
/// the call to `vault`, whose address the SSRF allow-list no longer admits,
/// is stopped by the guard (callers read it as unreachable, the log says
/// why). The run's trace lists all three on the node,
/// each with its outcome, and the allowed one with the request id its
/// audit record carries.
#[test]
fn a_graph_nodes_tool_calls_are_in_its_trace_under_quota_ssrf_and_audit() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let usage = Usage {
        input_tokens: 1,
        output_tokens: 1,
    };
    fake.push([
        FakeReply::tool_call("call-1", "echo", json!({"text": "ping"}), usage),
        FakeReply::tool_call("call-2", "echo", json!({"text": "again"}), usage),
        FakeReply::tool_call("call-3", "vault", json!({"text": "open"}), usage),
        FakeReply::text("done", 1, usage),
    ]);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    let settings = "reload: {watch_interval_seconds: 0}\nquotas:\n  per_agent: {per_second: 0.001, burst: 1}\n";
    std::fs::write(
        &config,
        format!("{settings}network: {{allow_cidrs: [127.0.0.0/8]}}\n"),
    )
    .expect("writes the config");
    let server = support::start_logged(
        data_dir.path(),
        &["--config", config.to_str().expect("utf-8")],
        &[("CONVERGIO_NETWORK_ALLOW_CIDRS", "")],
        &data_dir.path().join("stderr.log"),
    );
    set_secret(&server, data_dir.path(), "openai", SECRET);
    let token = admin_token(data_dir.path());
    runtime.block_on(async {
        // `vault` runs on loopback, admitted by the allow-list at first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let vault = convergio_agents::spawn(
            convergio_agents::ExampleAgent::Echo,
            listener,
            convergio_agents::ServeOptions::default(),
        )
        .await
        .expect("the vault agent starts");
        let mut card = vault.card();
        card["name"] = json!("vault");
        let response = reqwest::Client::new()
            .post(format!("{}/v1/agents", server.base))
            .bearer_auth(&token)
            .json(&card)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        // A model agent's tools must exist when it is declared.
        apply_with(
            &server,
            data_dir.path(),
            "tooluser",
            &fake,
            "tools: [echo, vault]\n",
        );
        // Then loopback leaves the allow-list (the example agents' own
        // sockets stay admitted).
        std::fs::write(
            &config,
            format!("{settings}network: {{allow_cidrs: [10.0.0.0/8]}}\n"),
        )
        .expect("rewrites the config");
        server.hangup();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !get_text(&server.base, "/metrics", &token)
            .await
            .contains("convergio_config_reloads_total{result=\"ok\"} 1")
        {
            assert!(std::time::Instant::now() < deadline, "the reload never applied");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        let run = support::run_to_end(
            &server,
            &token,
            json!({
                "graph_yaml": "name: tooled\nnodes:\n  - {id: ask, agent: tooluser, inputs: [text]}\n",
                "mode": "async",
                "input": {"text": "use your tools"},
            }),
        )
        .await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let run_id = run["run_id"].as_str().expect("a run id");
        let trace: Value = serde_json::from_str(
            &get_text(&server.base, &format!("/v1/runs/{run_id}/trace"), &token).await,
        )
        .expect("json");
        let node = &trace["nodes"][0];
        assert_eq!(node["tool_calls"], 3, "{trace}");
        let tools = node["tools"].as_array().expect("the node's tool calls");
        let outcomes: Vec<(&str, &str)> = tools
            .iter()
            .map(|call| {
                (
                    call["tool"].as_str().unwrap_or(""),
                    call["outcome"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [("echo", "completed"), ("echo", "refused"), ("vault", "failed")],
            "{trace}"
        );
        assert!(tools[0]["task_id"].is_string(), "{trace}");
        let request_id = tools[0]["request_id"].as_str().expect("a request id");

        // What the model was told of each refusal.
        let requests = fake.requests();
        assert_eq!(requests.len(), 4);
        let told = |index: usize| requests[index].body["messages"].to_string();
        assert!(told(1).contains("echo: ping"), "{}", told(1));
        assert!(told(2).to_lowercase().contains("rate"), "{}", told(2));
        // The guard's refusal reads as unreachable to callers; its reason
        // is in the gateway's log only.
        assert!(told(3).contains("unreachable"), "{}", told(3));
        let log = std::fs::read_to_string(data_dir.path().join("stderr.log")).expect("the log");
        assert!(log.contains("not allow-listed"), "{log}");

        // The allowed call is audited under the model agent's principal,
        // with the request id the trace names.
        let allowed = until_audited(&server, data_dir.path(), "agent:tooluser", |record| {
            record["request_id"] == request_id
        })
        .await;
        assert_eq!(allowed["action"], "send_message", "{allowed}");
        assert_eq!(allowed["decision"], "allow", "{allowed}");
        vault.shutdown().await;
    });
}

/// The reviewer set shipped in `examples/agents/review/` (the files as they
/// are, only `base_url` pointed from a local Ollama at the fake) loaded from
/// `models.agents_dir`, and `examples/graphs/code_review_pipeline.yaml` run
/// on them: six model agents, each answered by the provider with the
/// model its file names, the run's trace carrying their usage.
#[test]
fn the_example_reviewer_set_runs_code_review_pipeline_on_model_agents() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    fake.set_fallback(FakeReply::text(
        "reviewed: no findings",
        2,
        Usage {
            input_tokens: 20,
            output_tokens: 5,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let agents_dir = data_dir.path().join("review");
    std::fs::create_dir(&agents_dir).expect("creates the agents dir");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = 0;
    for entry in std::fs::read_dir(examples.join("agents/review")).expect("the examples") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("reads a declaration");
        let text = text.replace("http://127.0.0.1:11434/v1", fake.base_url());
        assert!(text.contains(fake.base_url()), "{}", path.display());
        std::fs::write(agents_dir.join(path.file_name().expect("a name")), text)
            .expect("copies a declaration");
        files += 1;
    }
    assert_eq!(files, 6, "the reviewer set is six agents");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        format!("models:\n  agents_dir: {}\n", agents_dir.display()),
    )
    .expect("writes the config");
    let server = support::start_logged(
        data_dir.path(),
        &["--no-examples", "--config", config.to_str().expect("utf-8")],
        &[],
        &data_dir.path().join("stderr.log"),
    );
    let token = admin_token(data_dir.path());
    let graph = std::fs::read_to_string(examples.join("graphs/code_review_pipeline.yaml"))
        .expect("the example graph");
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let listed: Value =
                serde_json::from_str(&get_text(&server.base, "/v1/model-agents", &token).await)
                    .expect("json");
            let available = listed["model_agents"]
                .as_array()
                .or_else(|| listed.as_array())
                .map_or(0, |agents| {
                    agents
                        .iter()
                        .filter(|agent| agent["status"]["available"] == true)
                        .count()
                });
            if available == 6 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{listed}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let run = support::run_to_end(
            &server,
            &token,
            json!({
                "graph_yaml": graph,
                "mode": "async",
                "input": {"source_code": "fn main() { let password = \"hunter2\"; }"},
            }),
        )
        .await;
        let run_id = run["run_id"].as_str().expect("a run id");
        let trace: Value = serde_json::from_str(
            &get_text(&server.base, &format!("/v1/runs/{run_id}/trace"), &token).await,
        )
        .expect("json");
        let result = get_text(&server.base, &format!("/v1/runs/{run_id}/result"), &token).await;
        assert_eq!(run["status"], "succeeded", "{run}\n{trace}\n{result}");
        let nodes = trace["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 6, "{trace}");
        for node in nodes {
            assert_eq!(node["status"], "success", "{node}");
            assert_eq!(node["tokens_in"], 20, "{node}");
        }
        assert_eq!(trace["total_tokens"], 150, "{trace}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 6);
        for request in &requests {
            assert_eq!(
                request.body["model"], "qwen2.5-coder:7b",
                "{}",
                request.body
            );
            // The files name no key: a local server gets none.
            assert_eq!(request.header("authorization"), None);
        }
        // Each specialist spoke with its own instructions.
        let prompts: String = requests
            .iter()
            .map(|request| request.body.to_string())
            .collect();
        assert!(prompts.contains("security flaws"), "{prompts}");
    });
}

/// A provider in trouble, seen through the gateway: a 429 is retried after
/// its `Retry-After` and answered; a cut stream, a malformed event and a
/// refused key each end the task FAILED at once with an error naming the
/// trouble (the key by its reference, never its value); a provider that
/// hangs ends it FAILED at the agent's timeout, while the gateway answers
/// health checks and other calls throughout.
#[test]
fn provider_trouble_fails_tasks_quickly_through_a_gateway_that_stays_healthy() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    let usage = Usage {
        input_tokens: 3,
        output_tokens: 2,
    };
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(data_dir.path(), &[]);
    set_secret(&server, data_dir.path(), "openai", SECRET);
    apply_with(
        &server,
        data_dir.path(),
        "fragile",
        &fake,
        "timeout_seconds: 3\n",
    );
    let failed_with = |body: &Value| -> String {
        let task = &body["result"]["task"];
        assert_eq!(task["status"]["state"], "TASK_STATE_FAILED", "{body}");
        task["status"]["message"].to_string()
    };
    runtime.block_on(async {
        // 429 with Retry-After: 1, then an answer.
        fake.push([
            FakeReply::Status {
                status: 429,
                retry_after: Some("1".to_owned()),
            },
            FakeReply::text("bonjour", 1, usage),
        ]);
        let started = std::time::Instant::now();
        let (status, _, body) = send(&server.base, "fragile", "hello", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{body}"
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(900));
        assert_eq!(fake.requests().len(), 2, "one retry");

        // A cut stream, a malformed event, a refused key: FAILED at once.
        for (reply, says) in [
            (
                FakeReply::Cut {
                    chunks: vec!["bon".to_owned()],
                },
                "cut",
            ),
            (FakeReply::Malformed, "malformed"),
            (
                FakeReply::Status {
                    status: 401,
                    retry_after: None,
                },
                "secret:openai",
            ),
        ] {
            fake.push([reply]);
            let started = std::time::Instant::now();
            let (status, _, body) = send(&server.base, "fragile", "hello", None).await;
            assert_eq!(status, 200, "{body}");
            let message = failed_with(&body);
            assert!(message.contains(says), "{says}: {message}");
            assert!(!body.to_string().contains(SECRET), "{body}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{says}"
            );
        }

        // A provider that hangs: FAILED at the agent's three seconds, the
        // gateway healthy and answering others meanwhile.
        fake.push([FakeReply::Hang {
            chunks: vec!["bo".to_owned()],
        }]);
        let dropped_before = fake.disconnects();
        let started = std::time::Instant::now();
        let hanging = tokio::spawn({
            let base = server.base.clone();
            async move { send(&base, "fragile", "hello", None).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for _ in 0..5 {
            let asked = std::time::Instant::now();
            let health = reqwest::get(format!("{}/healthz", server.base))
                .await
                .expect("health answers");
            assert_eq!(health.status(), 200);
            let (status, _, body) = send(&server.base, "echo", "still here", None).await;
            assert_eq!(status, 200, "{body}");
            assert!(asked.elapsed() < std::time::Duration::from_secs(1));
        }
        let (status, _, body) = hanging.await.expect("the hanging call ends");
        assert_eq!(status, 200, "{body}");
        let message = failed_with(&body);
        assert!(
            message.contains("3.0 s") || message.contains("3 s"),
            "{message}"
        );
        let took = started.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(2900)
                && took < std::time::Duration::from_secs(8),
            "{took:?}"
        );
        // The provider's connection was dropped, not left hanging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fake.disconnects() == dropped_before {
            assert!(
                std::time::Instant::now() < deadline,
                "the hung call was never closed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
}

/// A model agent declared by another organisation than the deployment's
/// (b.example, through its own caller) is served at `/agents/{name}` as
/// b.example's: registered under it at `registered` (never `internal`,
/// which only the deployment's own agents may be), called by its callers
/// with its own key, and the same version after a restart.
#[test]
fn a_model_agent_of_another_organisation_is_served_as_its_own() {
    let runtime = runtime();
    let fake = runtime
        .block_on(FakeOpenAi::start())
        .expect("the fake starts");
    const B_KEY: &str = "sk-b-example-hosted-agent-key-555";
    fake.require_key(B_KEY);
    fake.set_fallback(FakeReply::text(
        "bonjour",
        1,
        Usage {
            input_tokens: 5,
            output_tokens: 2,
        },
    ));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log = data_dir.path().join("server.log");
    let server = start_logged(data_dir.path(), &[], &[], &log);
    let admin = admin_token(data_dir.path());
    let b_admin = issue_key(
        &server,
        data_dir.path(),
        "ops@b.example",
        "b.example",
        &["agents:write", "secrets:write"],
    );
    let b_user = issue_key(&server, data_dir.path(), "ann@b.example", "b.example", &[]);
    let served = |server: &Server| {
        let base = server.base.clone();
        let admin = admin.clone();
        let log = log.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let status = reqwest::Client::new()
                    .get(format!("{base}/agents/bonjour/.well-known/agent-card.json"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("answers")
                    .status();
                if status == 200 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "bonjour is never served: {}\n{}",
                    get_text(&base, "/v1/model-agents/bonjour", &admin).await,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let record: Value =
                serde_json::from_str(&get_text(&base, "/v1/agents/bonjour", &admin).await)
                    .expect("json");
            record
        }
    };
    let first = runtime.block_on(async {
        let client = reqwest::Client::new();
        let stored = client
            .put(format!("{}/v1/secrets/openai", server.base))
            .header("X-API-Key", &b_admin)
            .body(B_KEY)
            .send()
            .await
            .expect("answers");
        assert_eq!(stored.status(), 204, "{:?}", stored.text().await);
        let declared = client
            .put(format!("{}/v1/model-agents/bonjour", server.base))
            .header("X-API-Key", &b_admin)
            .json(&json!({
                "apiVersion": "convergio/v1",
                "kind": "ModelAgent",
                "name": "bonjour",
                "description": "Greets in French",
                "provider": "openai",
                "model": "fake-model",
                "base_url": fake.base_url(),
                "api_key": "secret:openai",
                "instructions": "Greet in French.",
            }))
            .send()
            .await
            .expect("answers");
        assert_eq!(declared.status(), 201, "{:?}", declared.text().await);
        let record = served(&server).await;
        assert_eq!(record["id"], "convergio://agents/bonjour", "{record}");
        assert_eq!(record["org"], "b.example", "{record}");
        assert_eq!(record["trust"], "registered", "{record}");
        let answer = send_as(&server.base, &b_user, "bonjour", "Hello").await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
        assert!(answer.to_string().contains("bonjour"), "{answer}");
        assert_eq!(fake.requests().len(), 1);
        record
    });
    server.kill();
    let server = start_logged(data_dir.path(), &[], &[], &log);
    runtime.block_on(async {
        let record = served(&server).await;
        assert_eq!(record["version"], first["version"], "{record}");
        assert_eq!(record["trust"], "registered", "{record}");
        let answer = send_as(&server.base, &b_user, "bonjour", "Hello again").await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
    });
}
