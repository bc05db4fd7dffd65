//! Stored plugins through the real binary (issue 21): two `convergio serve`
//! replicas on one PostgreSQL database, a guardrail rule naming a stored
//! plugin. Uploading v1 (denies "foo") makes both replicas deny "foo";
//! uploading v2 (denies "bar") switches both without a restart; a module
//! that imports what the sandbox does not provide and a signed module
//! changed after signing are refused with a clear error, nothing stored.
//! Capability grants are declared at upload, allowed by the config, and
//! enforced again when a replica loads a stored version.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{admin_get, cli, issue_key, start_logged, until_audited, Server};

/// A guardrail plugin (ABI v1) refusing payloads that contain `needle`
/// (lowercase ASCII letters, compared without case) with `reason`.
fn keyword_guardrail(needle: &str, reason: &str) -> Vec<u8> {
    let allow = r#"{"verdict":"allow"}"#;
    let deny = format!(
        r#"{{"verdict":"deny","reason":"{reason}","message":"the payload says {needle}"}}"#
    );
    let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let n = needle.len();
    let text = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 0) "{allow}")
  (data (i32.const 256) "{deny}")
  (data (i32.const 2048) "{needle}")
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16)) (i32.const 1))) (i32.const 0))
        (then unreachable))))
    (global.set $next (local.get $end))
    (local.get $ptr))
  (func (export "guard") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $j i32) (local $last i32)
    (if (i32.lt_u (local.get $len) (i32.const {n})) (then (return (i64.const {allow_len}))))
    (local.set $last (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const {n})))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $outer
        (br_if $done (i32.gt_u (local.get $i) (local.get $last)))
        (local.set $j (i32.const 0))
        (block $mismatch
          (loop $inner
            (br_if $mismatch (i32.ne
              (i32.or (i32.load8_u (i32.add (local.get $i) (local.get $j))) (i32.const 32))
              (i32.load8_u (i32.add (i32.const 2048) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (if (i32.eq (local.get $j) (i32.const {n}))
              (then (return (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const {deny_len})))))
            (br $inner)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (i64.const {allow_len})))"#,
        allow = escape(allow),
        deny = escape(&deny),
        allow_len = allow.len(),
        deny_len = deny.len(),
    );
    wat::parse_str(text).expect("the WAT compiles")
}

/// A JSON-RPC `SendMessage` of `text` to the example `echo` agent.
async fn send(server: &Server, text: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/agents/echo", server.base))
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": {
                "messageId": uuid::Uuid::new_v4().to_string(),
                "role": "ROLE_USER",
                "parts": [{"text": text}],
            }},
        }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON-RPC answer")
}

/// The guardrail reason `answer` was refused with, if it was.
fn refused_reason(answer: &Value) -> Option<String> {
    answer["error"]["data"]
        .as_array()?
        .iter()
        .find(|detail| detail["metadata"].get("guardrail").is_some())
        .and_then(|detail| detail["reason"].as_str())
        .map(str::to_owned)
}

/// Waits (up to 15 s) until `server` refuses `denied` with `reason` and
/// passes `allowed`.
async fn until_guarded(server: &Server, denied: &str, reason: &str, allowed: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let refusal = send(server, denied).await;
        let pass = send(server, allowed).await;
        if refused_reason(&refusal).as_deref() == Some(reason) && pass.get("result").is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never switched: {refusal}\n{pass}",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn add(
    server: &Server,
    data_dir: &Path,
    file: &Path,
    signature: Option<&Path>,
) -> (bool, String, String) {
    let mut args = vec![
        "plugins",
        "add",
        file.to_str().expect("utf-8"),
        "--name",
        "words",
        "--kind",
        "guardrail",
    ];
    if let Some(signature) = signature {
        args.extend(["--signature", signature.to_str().expect("utf-8")]);
    }
    cli(Some((server, data_dir)), &args)
}

#[test]
fn a_new_guardrail_version_replaces_the_old_on_two_replicas_without_restart() {
    let database = convergio_tests::postgres::TestDatabase::create_blocking("convergio_p");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        "guardrails:\n  rules:\n    - name: words\n      check: { plugin: { name: words } }\n      agents: [echo]\n",
    )
    .expect("writes the config");
    let config_flag = config.to_str().expect("utf-8").to_owned();
    let replica = |log: &str| {
        start_logged(
            data_dir.path(),
            &["--config", &config_flag],
            &[("CONVERGIO_DATABASE_URL", database.url())],
            &data_dir.path().join(log),
        )
    };
    let first = replica("first.log");
    let second = replica("second.log");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let modules = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, bytes: &[u8]| {
        let path = modules.path().join(name);
        std::fs::write(&path, bytes).expect("writes the module");
        path
    };
    runtime.block_on(async {
        // No version yet: the rule fails closed.
        let answer = send(&first, "hello").await;
        assert_eq!(
            refused_reason(&answer).as_deref(),
            Some("GUARDRAIL_UNAVAILABLE"),
            "{answer}"
        );

        let v1 = write("v1.wasm", &keyword_guardrail("foo", "SAYS_FOO"));
        let (ok, stdout, stderr) = add(&first, data_dir.path(), &v1, None);
        assert!(ok, "{stdout}\n{stderr}");
        assert!(stdout.contains("version 1"), "{stdout}");
        until_guarded(&first, "say foo", "SAYS_FOO", "say bar").await;
        until_guarded(&second, "say foo", "SAYS_FOO", "say bar").await;

        // v2, uploaded through the second replica, signed with the
        // organisation's key: both replicas switch without a restart.
        let v2 = write("v2.wasm", &keyword_guardrail("bar", "SAYS_BAR"));
        let (ok, signature, stderr) = cli(
            Some((&second, data_dir.path())),
            &["plugins", "sign", v2.to_str().expect("utf-8")],
        );
        assert!(ok, "{stderr}");
        let signature_file = write("v2.sig", signature.as_bytes());
        let (ok, stdout, stderr) = add(&second, data_dir.path(), &v2, Some(&signature_file));
        assert!(ok, "{stdout}\n{stderr}");
        assert!(
            stdout.contains("version 2") && stdout.contains("signed"),
            "{stdout}"
        );
        until_guarded(&first, "say bar", "SAYS_BAR", "say foo").await;
        until_guarded(&second, "say bar", "SAYS_BAR", "say foo").await;

        // The same signature on a module changed after signing: refused.
        let tampered = write("tampered.wasm", &keyword_guardrail("baz", "SAYS_BAZ"));
        let (ok, stdout, stderr) = add(&first, data_dir.path(), &tampered, Some(&signature_file));
        assert!(!ok, "{stdout}");
        assert!(
            stderr.contains("422") && stderr.contains("does not verify"),
            "{stderr}"
        );
        // A module importing a file system call: refused at upload.
        let forbidden = write(
            "forbidden.wasm",
            &wat::parse_str(
                r#"(module
                  (import "wasi_snapshot_preview1" "path_open" (func (param i32) (result i32)))
                  (memory (export "memory") 1)
                  (func (export "alloc") (param i32) (result i32) (i32.const 0))
                  (func (export "guard") (param i32 i32) (result i64) (i64.const 0)))"#,
            )
            .expect("the WAT compiles"),
        );
        let (ok, _, stderr) = add(&first, data_dir.path(), &forbidden, None);
        assert!(!ok);
        assert!(stderr.contains("wasi_snapshot_preview1"), "{stderr}");

        let (status, shown) = admin_get(&first, data_dir.path(), "/v1/plugins/words").await;
        assert_eq!(status, 200, "{shown}");
        let versions = shown["versions"].as_array().expect("versions");
        assert_eq!(versions.len(), 2, "nothing refused was stored: {shown}");
        assert_eq!(shown["kind"], "guardrail");
        assert_eq!(versions[0]["signed"], false);
        assert_eq!(versions[1]["signed"], true);
        assert_eq!(
            versions[1]["sha256"].as_str().map(str::len),
            Some(64),
            "{shown}"
        );

        // The stored module downloads as uploaded.
        let token = support::admin_token(data_dir.path());
        let downloaded = reqwest::Client::new()
            .get(format!("{}/v1/plugins/words/versions/2", second.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers")
            .bytes()
            .await
            .expect("the module");
        assert_eq!(&downloaded[..], &std::fs::read(&v2).expect("reads")[..]);
        // And through the CLI, checked against its SHA-256.
        let out = data_dir.path().join("downloaded-v1.wasm");
        let out_arg = out.to_str().expect("a UTF-8 path");
        let (ok, stdout, stderr) = cli(
            Some((&second, data_dir.path())),
            &[
                "plugins",
                "download",
                "words",
                "--version",
                "1",
                "--out",
                out_arg,
            ],
        );
        assert!(ok, "{stdout}\n{stderr}");
        assert!(stdout.contains("version 1"), "{stdout}");
        assert_eq!(
            std::fs::read(&out).expect("written"),
            std::fs::read(&v1).expect("reads")
        );

        // Removed: both replicas' rule fails closed again.
        let (ok, stdout, stderr) = cli(
            Some((&first, data_dir.path())),
            &["plugins", "remove", "words"],
        );
        assert!(ok, "{stdout}\n{stderr}");
        for server in [&first, &second] {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let answer = send(server, "hello").await;
                if refused_reason(&answer).as_deref() == Some("GUARDRAIL_UNAVAILABLE") {
                    break;
                }
                assert!(Instant::now() < deadline, "still installed: {answer}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

#[test]
fn uploads_are_bounded_and_listed() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(&config, "plugins:\n  max_module_bytes: 4096\n").expect("writes the config");
    let server = start_logged(
        data_dir.path(),
        &["--no-examples", "--config", config.to_str().expect("utf-8")],
        &[],
        &data_dir.path().join("server.log"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let token = support::admin_token(data_dir.path());
        let client = reqwest::Client::new();
        let big = vec![0_u8; 8192];
        let response = client
            .post(format!("{}/v1/plugins/big?kind=guardrail", server.base))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(big)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 413);
        let response = client
            .post(format!("{}/v1/plugins/junk?kind=agent", server.base))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(b"not a module".to_vec())
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 422);
        let problem: Value = response.json().await.expect("a problem");
        assert_eq!(problem["status"], 422, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("INVALID_MODULE")),
            "{problem}"
        );
        let (status, listed) = admin_get(&server, data_dir.path(), "/v1/plugins").await;
        assert_eq!(status, 200);
        assert_eq!(listed["plugins"], json!([]), "{listed}");
    });
}

/// A plugin agent (agent ABI v1) answering "hello from wasm"; a message
/// saying "trap" makes it trap, one saying "spin" makes it loop forever.
/// It declares itself through `describe`.
fn hello_agent() -> Vec<u8> {
    let answer = r#"{"parts":[{"text":"hello from wasm"}]}"#;
    let declaration = r#"{"description":"Says hello from WebAssembly.","skills":[{"id":"hello","name":"hello","description":"Answers hello","tags":["plugin","demo"]}]}"#;
    let escape = |text: &str| text.replace('"', "\\\"");
    let text = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 0) "{answer}")
  (data (i32.const 512) "{declaration}")
  (data (i32.const 2048) "trap")
  (data (i32.const 2064) "spin")
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16)) (i32.const 1))) (i32.const 0))
        (then unreachable))))
    (global.set $next (local.get $end))
    (local.get $ptr))
  ;; Whether the 4 bytes at $needle occur in [$ptr, $ptr + $len).
  (func $contains (param $ptr i32) (param $len i32) (param $needle i32) (result i32)
    (local $i i32) (local $last i32)
    (if (i32.lt_u (local.get $len) (i32.const 4)) (then (return (i32.const 0))))
    (local.set $last (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 4)))
    (local.set $i (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_u (local.get $i) (local.get $last)))
        (if (i32.eq (i32.load (local.get $i)) (i32.load (local.get $needle)))
          (then (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.const 0))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (if (call $contains (local.get $ptr) (local.get $len) (i32.const 2048)) (then unreachable))
    (if (call $contains (local.get $ptr) (local.get $len) (i32.const 2064))
      (then (loop $forever (br $forever))))
    (i64.const {answer_len}))
  (func (export "describe") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const {declaration_len}))))"#,
        answer = escape(answer),
        declaration = escape(declaration),
        answer_len = answer.len(),
        declaration_len = declaration.len(),
    );
    wat::parse_str(text).expect("the WAT compiles")
}

/// A JSON-RPC `SendMessage` of `text` to `agent`, as the administrator.
async fn send_to(server: &Server, token: &str, agent: &str, text: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/agents/{agent}", server.base))
        .bearer_auth(token)
        .header("A2A-Version", "1.0")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": {
                "messageId": uuid::Uuid::new_v4().to_string(),
                "role": "ROLE_USER",
                "parts": [{"text": text}],
            }, "configuration": {"returnImmediately": false}},
        }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON-RPC answer")
}

/// Uploads the hello agent and waits (up to 15 s) until the gateway
/// serves its card.
async fn serve_hello(server: &Server, data_dir: &Path, modules: &Path) {
    let file = modules.join("hello.wasm");
    std::fs::write(&file, hello_agent()).expect("writes the module");
    let (ok, stdout, stderr) = cli(
        Some((server, data_dir)),
        &[
            "plugins",
            "add",
            file.to_str().expect("utf-8"),
            "--name",
            "hello",
            "--kind",
            "agent",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = reqwest::get(format!(
            "{}/agents/hello/.well-known/agent-card.json",
            server.base
        ))
        .await
        .expect("answers");
        if response.status() == 200 {
            let card: Value = response.json().await.expect("a card");
            assert_eq!(
                card["description"], "Says hello from WebAssembly.",
                "{card}"
            );
            assert_eq!(card["skills"][0]["id"], "hello", "{card}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the plugin agent is never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_plugin_agent_answers_the_python_sdk_and_runs_as_a_graph_node() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/interop-venv.sh"))
        .status()
        .expect("runs scripts/interop-venv.sh");
    assert!(status.success(), "scripts/interop-venv.sh failed");
    let python = root.join(".venv-interop/bin/python");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let modules = tempfile::tempdir().expect("temp dir");
    let server = support::start(data_dir.path());
    let token = support::admin_token(data_dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(serve_hello(&server, data_dir.path(), modules.path()));
    // The same SDK client as the model agents' (interop/model_client.py):
    // card, blocking and streaming sends, on both HTTP bindings.
    for binding in ["JSONRPC", "HTTP+JSON"] {
        let output = std::process::Command::new(&python)
            .arg(root.join("interop/model_client.py"))
            .arg(format!("{}/agents/hello", server.base))
            .arg(binding)
            .arg("hello from wasm")
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
    runtime.block_on(async {
        // Discoverable like any agent.
        let (status, listed) = admin_get(&server, data_dir.path(), "/v1/agents?q=hello").await;
        assert_eq!(status, 200);
        assert!(listed.to_string().contains("\"hello\""), "{listed}");
        // A node of a graph.
        let run = support::run_to_end(
            &server,
            &token,
            json!({
                "graph_yaml": "name: greet\nnodes:\n  - {id: greet, agent: hello, inputs: [text]}\n",
                "mode": "async",
                "input": {"text": "hi"},
            }),
        )
        .await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let run_id = run["run_id"].as_str().expect("a run id");
        let (status, result) =
            admin_get(&server, data_dir.path(), &format!("/v1/runs/{run_id}/result")).await;
        assert_eq!(status, 200, "{result}");
        assert!(result.to_string().contains("hello from wasm"), "{result}");
    });
}

#[test]
fn a_trapping_or_spinning_plugin_agent_fails_its_task_and_the_gateway_keeps_serving() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let modules = tempfile::tempdir().expect("temp dir");
    let server = support::start(data_dir.path());
    let token = support::admin_token(data_dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        serve_hello(&server, data_dir.path(), modules.path()).await;
        for (text, code) in [("please trap", "TRAP"), ("please spin", "")] {
            let answer = send_to(&server, &token, "hello", text).await;
            let task = &answer["result"]["task"];
            assert_eq!(task["status"]["state"], "TASK_STATE_FAILED", "{answer}");
            let said = task["status"]["message"]["parts"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(said.contains("the plugin agent hello failed"), "{answer}");
            let failure = task["status"]["message"]["metadata"]["convergio.plugin_error"]
                .as_str()
                .unwrap_or_default();
            if code.is_empty() {
                assert!(
                    failure == "OUT_OF_FUEL" || failure == "DEADLINE_EXCEEDED",
                    "{answer}"
                );
            } else {
                assert_eq!(failure, code, "{answer}");
            }
        }
        // The gateway, the agent and the other agents go on.
        let answer = send_to(&server, &token, "hello", "hi").await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
        let echoed = send_to(&server, &token, "echo", "still here").await;
        assert!(echoed.to_string().contains("still here"), "{echoed}");
    });
}

/// The calling agent of the plugins crate's tests
/// (`plugins/tests/fixtures/calling-agent.wat`) making the call `request`
/// once and answering `{"parts":[{"data": <what call_agent answered>}]}`.
fn calling_agent(request: &str) -> Vec<u8> {
    let text = include_str!("../../plugins/tests/fixtures/calling-agent.wat")
        .replace("REQUEST", &request.replace('"', "\\\""))
        .replace("REQ_PTR", "0")
        .replace("REQ_LEN", &request.len().to_string())
        .replace("TIMES", "1");
    wat::parse_str(text).expect("the WAT compiles")
}

/// Uploads `module` as the plugin agent `name` with `token` (into that
/// caller's organisation) and waits (up to 15 s) until the gateway serves it
/// (`log`: the server's, shown if it never does).
async fn serve_agent(
    server: &Server,
    log: &Path,
    (token, admin): (&str, &str),
    name: &str,
    module: Vec<u8>,
) {
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/v1/plugins/{name}?kind=agent", server.base))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(module)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    until_card(server, log, admin, name, 200).await;
}

/// Waits (up to 15 s) until reading `name`'s card through the gateway as
/// `admin` answers `status` (200: served; 404: not served).
async fn until_card(server: &Server, log: &Path, admin: &str, name: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/agents/{name}/.well-known/agent-card.json",
                server.base
            ))
            .bearer_auth(admin)
            .send()
            .await
            .expect("answers");
        if response.status() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s card never answered {status}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the calling agent's task answered: its data part (the answer
/// `call_agent` gave it).
fn called(answer: &Value) -> Value {
    let task = &answer["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
    task["status"]["message"]["parts"][0]["data"].clone()
}

/// Issue 21: "a plugin can call agents only through a host function that
/// goes through the gateway's pipeline (policy, SSRF guard, audit) as the
/// plugin's principal"; "a module that calls an agent it may not — gives
/// a clear error within its bounds, is audited, and the gateway keeps
/// serving other traffic".

#[test]
fn a_plugin_agent_calls_agents_through_the_gateway_as_its_own_principal() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let modules = tempfile::tempdir().expect("temp dir");
    let config = data_dir.path().join("convergio.yaml");
    // Plugins may run 5 s (the callee spinning below does), and a message's
    // calls share 1.5 s.
    std::fs::write(
        &config,
        "guardrails:\n  sandbox: { fuel: 100000000000, deadline_ms: 5000 }\nplugins:\n  agent_calls: { timeout_ms: 1500 }\n",
    )
    .expect("writes the config");
    let log = data_dir.path().join("server.log");
    let server = start_logged(
        data_dir.path(),
        &["--config", config.to_str().expect("utf-8")],
        &[],
        &log,
    );
    let token = support::admin_token(data_dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        // `relay` (this deployment's organisation) calls echo and answers
        // what it got.
        serve_agent(
            &server,
            &log,
            (&token, &token),
            "relay",
            calling_agent(r#"{"agent":"echo","text":"ping from wasm"}"#),
        )
        .await;
        let answer = send_to(&server, &token, "relay", "go").await;
        let reply = called(&answer);
        assert!(
            reply["result"].to_string().contains("ping from wasm"),
            "echo's reply reaches the plugin: {answer}"
        );
        // The inner call is audited as the plugin's principal (written in
        // the background: polled).
        until_audited(&server, data_dir.path(), "agent:relay", |record| {
            record["action"] == "send_message"
                && record["decision"] == "allow"
                && record["resource"].to_string().contains("echo")
                && record["org"] == "convergio.local"
        })
        .await;

        // `prober` calls echo, which a policy forbids `agent:prober` (an
        // administrator keeping a plugin agent away from an agent). The
        // plugin reads REFUSED, the refusal is audited as a deny, and the
        // gateway answers others meanwhile.
        let policy = data_dir.path().join("no-probing.cedar");
        std::fs::write(
            &policy,
            format!(
                "{}\n@id(\"no-probing\")\nforbid (principal, action in [Action::\"send_message\", Action::\"stream\"], resource == Agent::\"convergio://agents/echo\")\nwhen {{ principal.subject == \"agent:prober\" }};\n",
                include_str!("../../policies/example.cedar")
            ),
        )
        .expect("writes the policy");
        let (ok, stdout, stderr) = cli(
            Some((&server, data_dir.path())),
            &[
                "policy",
                "apply",
                policy.to_str().expect("utf-8"),
                "--reason",
                "prober may not call echo",
            ],
        );
        assert!(ok, "{stdout}\n{stderr}");
        serve_agent(
            &server,
            &log,
            (&token, &token),
            "prober",
            calling_agent(r#"{"agent":"echo","text":"let me in"}"#),
        )
        .await;
        let started = Instant::now();
        let answer = send_to(&server, &token, "prober", "go").await;
        let refused_in = started.elapsed();
        let reply = called(&answer);
        assert_eq!(reply["error"]["code"], "REFUSED", "{answer}");
        assert!(refused_in < Duration::from_secs(5), "{refused_in:?}");
        let echoed = send_to(&server, &token, "echo", "after the refusal").await;
        assert!(echoed.to_string().contains("after the refusal"), "{echoed}");
        // The refusal is audited.
        until_audited(&server, data_dir.path(), "agent:prober", |record| {
            record["decision"] == "deny"
                && record["action"] == "send_message"
                && record["resource"].to_string().contains("echo")
                && record["determining"].to_string().contains("no-probing")
        })
        .await;

        // `waiter` calls the hello agent asking it to spin (it would for
        // 5 s): the call times out at the 1.5 s budget, while echo keeps
        // answering promptly.
        serve_hello(&server, data_dir.path(), modules.path()).await;
        serve_agent(
            &server,
            &log,
            (&token, &token),
            "waiter",
            calling_agent(r#"{"agent":"hello","text":"please spin"}"#),
        )
        .await;
        let waiting = {
            let base = server.base.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let answer: Value = reqwest::Client::new()
                    .post(format!("{base}/agents/waiter"))
                    .bearer_auth(&token)
                    .header("A2A-Version", "1.0")
                    .json(&json!({
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "SendMessage",
                        "params": {"message": {
                            "messageId": uuid::Uuid::new_v4().to_string(),
                            "role": "ROLE_USER",
                            "parts": [{"text": "go"}],
                        }, "configuration": {"returnImmediately": false}},
                    }))
                    .send()
                    .await
                    .expect("the gateway answers")
                    .json()
                    .await
                    .expect("a JSON-RPC answer");
                (answer, started.elapsed())
            })
        };
        let mut slowest = Duration::ZERO;
        for round in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let started = Instant::now();
            let echoed = send_to(&server, &token, "echo", &format!("round {round}")).await;
            slowest = slowest.max(started.elapsed());
            assert!(echoed.to_string().contains("round"), "{echoed}");
        }
        let (answer, took) = waiting.await.expect("the waiting call ends");
        let reply = called(&answer);
        assert_eq!(reply["error"]["code"], "TIMEOUT", "{answer}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
            "bounded by the 1.5 s budget, not the callee's 5 s: {took:?}"
        );
        assert!(
            slowest < Duration::from_secs(1),
            "echo answered within {slowest:?} while the plugin waited"
        );
        println!("call_agent: refused in {refused_in:?}, timed out in {took:?}, slowest echo meanwhile {slowest:?}");
    });
}

/// A guardrail may not call agents: a module importing `call_agent` is
/// refused at upload as a guardrail (it is allowed as an agent).
#[test]
fn a_guardrail_importing_call_agent_is_refused_at_upload() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start_logged(
        data_dir.path(),
        &["--no-examples"],
        &[],
        &data_dir.path().join("server.log"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let token = support::admin_token(data_dir.path());
        let module = wat::parse_str(
            r#"(module
              (import "convergio" "call_agent" (func (param i32 i32) (result i64)))
              (memory (export "memory") 1)
              (func (export "alloc") (param i32) (result i32) (i32.const 0))
              (func (export "guard") (param i32 i32) (result i64) (i64.const 0)))"#,
        )
        .expect("the WAT compiles");
        let response = reqwest::Client::new()
            .post(format!("{}/v1/plugins/nosy?kind=guardrail", server.base))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(module)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 422);
        let problem: Value = response.json().await.expect("a problem");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("FORBIDDEN_IMPORT") && detail.contains("convergio::call_agent"),
            "{problem}"
        );
    });
}

/// A GET of `path` with `token`: status and JSON body.
async fn get_as(server: &Server, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A plugin agent uploaded by another organisation than the deployment's
/// (b.example, through its own caller) is served at `/agents/{name}` as
/// b.example's: registered under it at the trust b.example's own
/// registration gets (`registered`, never `internal`), discovered under
/// it, called by its callers, refused by the shipped policy to the
/// deployment's own callers (another organisation's agent that did not
/// opt in), its `call_agent` calls made as `agent:<plugin>` of b.example,
/// and the same version after a restart.
#[test]
fn a_plugin_agent_of_another_organisation_is_served_as_its_own() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log = data_dir.path().join("server.log");
    let server = start_logged(data_dir.path(), &[], &[], &log);
    let admin = support::admin_token(data_dir.path());
    let b_admin = issue_key(
        &server,
        data_dir.path(),
        "ops@b.example",
        "b.example",
        &["agents:write"],
    );
    let b_user = issue_key(&server, data_dir.path(), "ann@b.example", "b.example", &[]);
    let own_user = issue_key(
        &server,
        data_dir.path(),
        "al@convergio.local",
        "convergio.local",
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let version = runtime.block_on(async {
        serve_agent(&server, &log, (&b_admin, &admin), "hello", hello_agent()).await;
        let answer = send_to(&server, &b_user, "hello", "hi").await;
        let task = &answer["result"]["task"];
        assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{answer}");
        assert!(answer.to_string().contains("hello from wasm"), "{answer}");

        // Registered under b.example at `registered`.
        let (status, record) = get_as(&server, &admin, "/v1/agents/hello").await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["id"], "convergio://agents/hello", "{record}");
        assert_eq!(record["org"], "b.example", "{record}");
        assert_eq!(record["trust"], "registered", "{record}");
        // Discovered by b.example's callers under b.example.
        let (status, listed) = get_as(&server, &b_user, "/v1/agents?org=b.example").await;
        assert_eq!(status, 200, "{listed}");
        let found = listed["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|agent| agent["name"] == "hello")
            .cloned()
            .unwrap_or_else(|| panic!("hello is not discovered: {listed}"));
        assert_eq!(found["org"], "b.example", "{found}");
        assert_eq!(found["trust"], "registered", "{found}");

        // The deployment's own caller: another organisation's agent that
        // did not opt in (`external-opt-in` needs the `external` tag and
        // `verified`), so neither discovered nor callable.
        let (status, listed) = get_as(&server, &own_user, "/v1/agents?org=b.example").await;
        assert_eq!(status, 200, "{listed}");
        assert!(!listed.to_string().contains("\"hello\""), "{listed}");
        let refused = send_to(&server, &own_user, "hello", "hi").await;
        assert!(refused.get("result").is_none(), "{refused}");
        assert!(
            refused["error"]
                .to_string()
                .to_lowercase()
                .contains("forbidden")
                || refused["error"].to_string().contains("not found"),
            "{refused}"
        );
        until_audited(&server, data_dir.path(), "al@convergio.local", |record| {
            record["decision"] == "deny"
                && record["action"] == "send_message"
                && record["resource"].to_string().contains("hello")
        })
        .await;

        // b.example's relay calls b.example's hello as `agent:relay` of
        // b.example.
        serve_agent(
            &server,
            &log,
            (&b_admin, &admin),
            "relay",
            calling_agent(r#"{"agent":"hello","text":"hi from relay"}"#),
        )
        .await;
        let answer = send_to(&server, &b_user, "relay", "go").await;
        let reply = called(&answer);
        assert!(
            reply["result"].to_string().contains("hello from wasm"),
            "{answer}"
        );
        until_audited(&server, data_dir.path(), "agent:relay", |record| {
            record["action"] == "send_message"
                && record["decision"] == "allow"
                && record["resource"].to_string().contains("hello")
                && record["org"] == "b.example"
        })
        .await;
        record["version"].as_i64().expect("a version")
    });

    // A restart serves it again, as the same version.
    server.kill();
    let server = start_logged(data_dir.path(), &[], &[], &log);
    runtime.block_on(async {
        until_card(&server, &log, &admin, "hello", 200).await;
        let answer = send_to(&server, &b_user, "hello", "again").await;
        assert_eq!(
            answer["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "{answer}"
        );
        let (_, record) = get_as(&server, &admin, "/v1/agents/hello").await;
        assert_eq!(record["version"].as_i64(), Some(version), "{record}");
        assert_eq!(record["trust"], "registered", "{record}");
    });
}

/// Uploads `module` as `name` of `kind` with the admin token, optionally
/// signed with the deployment's key (`convergio plugins sign`): the status
/// and the answer.
async fn upload_as_admin(
    server: &Server,
    data_dir: &Path,
    name: &str,
    kind: &str,
    module: &[u8],
    signed: bool,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/plugins/{name}?kind={kind}", server.base))
        .bearer_auth(support::admin_token(data_dir))
        .header("content-type", "application/wasm");
    if signed {
        let file = data_dir.join(format!("{name}-to-sign.wasm"));
        std::fs::write(&file, module).expect("writes the module");
        let (ok, signature, stderr) = cli(
            Some((server, data_dir)),
            &["plugins", "sign", file.to_str().expect("utf-8")],
        );
        assert!(ok, "{stderr}");
        request = request.header("convergio-plugin-signature", signature.trim());
    }
    let response = request.body(module.to_vec()).send().await.expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `plugins.require_signed`: an unsigned upload is refused (422,
/// `SIGNATURE_REQUIRED`, nothing stored) and a signed one accepted; after
/// a restart with the switch on, versions stored unsigned before it are
/// not run (the guardrail rule fails closed, the plugin agent is not
/// served and its stale registration is removed), each logged once, and a
/// signed version uploaded later is picked up as usual.
#[test]
fn with_require_signed_unsigned_plugins_are_refused_and_not_run() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log = data_dir.path().join("server.log");
    let rules = "guardrails:\n  rules:\n    - name: words\n      check: { plugin: { name: words } }\n      agents: [echo]\n";
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(&config, rules).expect("writes the config");
    let config_flag = config.to_str().expect("utf-8").to_owned();
    let server = start_logged(data_dir.path(), &["--config", &config_flag], &[], &log);
    let admin = support::admin_token(data_dir.path());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    // Before the switch: both stored unsigned, and run.
    runtime.block_on(async {
        let (status, answer) = upload_as_admin(
            &server,
            data_dir.path(),
            "words",
            "guardrail",
            &keyword_guardrail("foo", "SAYS_FOO"),
            false,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        let (status, answer) = upload_as_admin(
            &server,
            data_dir.path(),
            "hello",
            "agent",
            &hello_agent(),
            false,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        until_guarded(&server, "say foo", "SAYS_FOO", "say bar").await;
        until_card(&server, &log, &admin, "hello", 200).await;
    });

    server.kill();
    std::fs::write(
        &config,
        format!("{rules}plugins:\n  require_signed: true\n"),
    )
    .expect("writes the config");
    let server = start_logged(data_dir.path(), &["--config", &config_flag], &[], &log);
    runtime.block_on(async {
        // The unsigned versions stored before are not run: the rule fails
        // closed, the agent is neither served nor registered.
        let answer = send(&server, "say bar").await;
        assert_eq!(
            refused_reason(&answer).as_deref(),
            Some("GUARDRAIL_UNAVAILABLE"),
            "{answer}"
        );
        until_card(&server, &log, &admin, "hello", 404).await;
        let (status, record) = get_as(&server, &admin, "/v1/agents/hello").await;
        assert_eq!(status, 404, "{record}");

        // An unsigned upload is refused, nothing stored.
        let (status, problem) = upload_as_admin(
            &server,
            data_dir.path(),
            "words",
            "guardrail",
            &keyword_guardrail("bar", "SAYS_BAR"),
            false,
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.starts_with("plugin refused (SIGNATURE_REQUIRED): ")),
            "{problem}"
        );
        let (status, shown) = get_as(&server, &admin, "/v1/plugins/words").await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["latest"], 1, "nothing refused was stored: {shown}");

        // Signed versions are accepted and picked up as usual.
        let (status, answer) = upload_as_admin(
            &server,
            data_dir.path(),
            "words",
            "guardrail",
            &keyword_guardrail("bar", "SAYS_BAR"),
            true,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["versions"][1]["signed"], true, "{answer}");
        until_guarded(&server, "say bar", "SAYS_BAR", "say foo").await;
        let (status, answer) = upload_as_admin(
            &server,
            data_dir.path(),
            "hello",
            "agent",
            &hello_agent(),
            true,
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        until_card(&server, &log, &admin, "hello", 200).await;
        let answer = send_to(&server, &admin, "hello", "hi").await;
        assert!(answer.to_string().contains("hello from wasm"), "{answer}");

        // Each unsigned version was reported once, with the reason.
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        for line in [
            "a guardrail plugin version is unsigned",
            "plugin agent version not served: it is unsigned",
        ] {
            assert_eq!(logged.matches(line).count(), 1, "{line}: {logged}");
        }
    });
}

/// A guardrail plugin importing `convergio.clock_ms`, refusing every
/// payload with `CLOCK_READ` once the clock reads past the epoch.
fn clock_guardrail() -> Vec<u8> {
    let allow = r#"{"verdict":"allow"}"#;
    let deny = r#"{"verdict":"deny","reason":"CLOCK_READ","message":"the clock was read"}"#;
    let text = format!(
        r#"(module
  (import "convergio" "clock_ms" (func $clock (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{allow}")
  (data (i32.const 256) "{deny}")
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "guard") (param i32 i32) (result i64)
    (if (result i64) (i64.gt_s (call $clock) (i64.const 0))
      (then (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const {deny_len})))
      (else (i64.const {allow_len})))))"#,
        allow = allow.replace('"', "\\\""),
        deny = deny.replace('"', "\\\""),
        allow_len = allow.len(),
        deny_len = deny.len(),
    );
    wat::parse_str(text).expect("the WAT compiles")
}

/// An upload of `module` as the guardrail `name` declaring `grants`
/// (`?grants=`): the status and the answer.
async fn upload_granted(
    server: &Server,
    token: &str,
    name: &str,
    grants: &str,
    module: &[u8],
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/plugins/{name}?kind=guardrail&grants={grants}",
            server.base
        ))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(module.to_vec())
        .send()
        .await
        .expect("answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Capability grants (issue 21): a grant the config does not allow is a
/// 422 `GRANT_NOT_ALLOWED`, a module importing `clock_ms` without the
/// `clock` grant a 422 `FORBIDDEN_IMPORT` naming it, nothing stored; with
/// `plugins.allow_grants: [clock]` and `--grant clock` the version is
/// stored with its grant, shown, and runs (the guardrail reads the clock).
/// After a restart whose config no longer allows `clock`, the stored
/// version is not installed: the rule fails closed, logged once.
#[test]
fn capability_grants_are_declared_at_upload_allowed_by_config_and_enforced_on_load() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log = data_dir.path().join("server.log");
    let rules = "guardrails:\n  rules:\n    - name: timer\n      check: { plugin: { name: timer } }\n      agents: [echo]\n";
    let config = data_dir.path().join("convergio.yaml");
    std::fs::write(
        &config,
        format!("{rules}plugins:\n  allow_grants: [clock]\n"),
    )
    .expect("writes the config");
    let config_flag = config.to_str().expect("utf-8").to_owned();
    let server = start_logged(data_dir.path(), &["--config", &config_flag], &[], &log);
    let admin = support::admin_token(data_dir.path());
    let module = clock_guardrail();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        // A grant the config does not allow: refused before compiling.
        let (status, problem) =
            upload_granted(&server, &admin, "timer", "clock,random", &module).await;
        assert_eq!(status, 422, "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("plugin refused (GRANT_NOT_ALLOWED): ") && detail.contains("random"),
            "{problem}"
        );
        // Not a grant at all.
        let (status, problem) = upload_granted(&server, &admin, "timer", "network", &module).await;
        assert_eq!(status, 422, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.starts_with("plugin refused (UNKNOWN_GRANT): ")),
            "{problem}"
        );
        // The module reads the clock, the upload does not declare it.
        let (status, problem) = upload_granted(&server, &admin, "timer", "", &module).await;
        assert_eq!(status, 422, "{problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("plugin refused (FORBIDDEN_IMPORT): ")
                && detail.contains("convergio::clock_ms")
                && detail.contains("needs the grant clock"),
            "{problem}"
        );
        let (status, _) = get_as(&server, &admin, "/v1/plugins/timer").await;
        assert_eq!(status, 404, "nothing refused was stored");

        // Allowed and declared: stored with its grant, shown, and run.
        let file = data_dir.path().join("timer.wasm");
        std::fs::write(&file, &module).expect("writes the module");
        let (ok, stdout, stderr) = cli(
            Some((&server, data_dir.path())),
            &[
                "plugins",
                "add",
                file.to_str().expect("utf-8"),
                "--name",
                "timer",
                "--kind",
                "guardrail",
                "--grant",
                "clock",
            ],
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("grants clock"), "{stdout}");
        let (ok, stdout, stderr) = cli(
            Some((&server, data_dir.path())),
            &["plugins", "show", "timer"],
        );
        assert!(ok, "{stderr}");
        assert!(stdout.contains("grants clock"), "{stdout}");
        let (status, shown) = get_as(&server, &admin, "/v1/plugins/timer").await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!(shown["versions"][0]["grants"], json!(["clock"]), "{shown}");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let answer = send(&server, "what time is it").await;
            if refused_reason(&answer).as_deref() == Some("CLOCK_READ") {
                break;
            }
            assert!(Instant::now() < deadline, "never ran: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // The same stored version on a replica whose config no longer allows
    // the grant: not installed, the rule fails closed, logged once.
    server.kill();
    std::fs::write(&config, rules).expect("writes the config");
    let server = start_logged(data_dir.path(), &["--config", &config_flag], &[], &log);
    runtime.block_on(async {
        let answer = send(&server, "what time is it").await;
        assert_eq!(
            refused_reason(&answer).as_deref(),
            Some("GUARDRAIL_UNAVAILABLE"),
            "{answer}"
        );
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            logged
                .matches("a guardrail plugin version declares a grant this replica does not allow")
                .count(),
            1,
            "{logged}"
        );
    });
}
