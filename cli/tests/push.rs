//! Push notifications through the gateway (issue 24) end to end: the
//! a2a-sdk's own push sender (`interop/agent.py --push`) notifies the
//! gateway's webhook, and the gateway delivers to a caller-side receiver
//! on loopback — with the caller's token and the gateway's signature,
//! which verifies with the gateway's JWKS. A receiver that is down is
//! retried and dead-lettered, visibly; a delivery a killed replica left
//! pending is taken over by another; a receiver URL on a private address
//! is refused without the allow-list; configs are the caller's own.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use convergio_auth::card_signature::{verify_card, CardCheck, CardKey};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use support::{cli, issue_key, start_with, Server};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The SDK agent with push notifications; killed on drop.
struct SdkAgent {
    child: Child,
    base: String,
}

impl Drop for SdkAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdk_agent() -> SdkAgent {
    let root = repo_root();
    let status = Command::new("bash")
        .arg(root.join("scripts/interop-venv.sh"))
        .status()
        .expect("runs scripts/interop-venv.sh");
    assert!(status.success(), "scripts/interop-venv.sh failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(root.join(".venv-interop/bin/python"))
        .arg(root.join("interop/agent.py"))
        .arg(port.to_string())
        .arg("--push")
        .stdin(Stdio::null())
        .spawn()
        .expect("the SDK agent starts");
    SdkAgent {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// What the caller's receiver got: each post's headers and body.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    fn posts(&self) -> Vec<(HeaderMap, Value)> {
        self.posts.lock().expect("posts").clone()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if receiver.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    receiver.posts.lock().expect("posts").push((headers, body));
    StatusCode::OK
}

async fn spawn_receiver(receiver: Receiver) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

/// A JSON-RPC call through the gateway as `key`: the answer.
async fn rpc(server: &Server, key: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/agents/sdk-echo", server.base))
        .header("A2A-Version", "1.0")
        .header("X-API-Key", key)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// Starts a `slow` task (it works for 5 s) and returns its id.
async fn slow_task(server: &Server, key: &str, text: &str) -> String {
    let answer = rpc(
        server,
        key,
        "SendMessage",
        json!({"message": {"role": "ROLE_USER", "messageId": text, "parts": [{"text": text}]},
               "configuration": {"returnImmediately": true}}),
    )
    .await;
    answer["result"]["task"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {answer}"))
        .to_owned()
}

async fn deliveries(server: &Server, key: &str, task: &str) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/tasks/{task}/push-deliveries", server.base))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    page["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("no deliveries: {page}"))
        .clone()
}

/// Waits (20 s at most) until `ready` holds.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An SDK agent with push, a receiver, and `convergio serve` (with
/// `config` as its config file) where the agent is registered.
struct Fixture {
    _agent: SdkAgent,
    runtime: tokio::runtime::Runtime,
    receiver: Receiver,
    hook: String,
    data_dir: tempfile::TempDir,
    config: PathBuf,
    server: Server,
    ann: String,
    bob: String,
}

fn fixture(config: &str) -> Fixture {
    let agent = sdk_agent();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = Receiver::default();
    let hook = runtime.block_on(spawn_receiver(receiver.clone()));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config_file = data_dir.path().join("convergio.yaml");
    std::fs::write(&config_file, config).expect("config");
    // The SDK agent answers before `serve` starts: the port it was given
    // was free when picked but is bound only once Python is up, and the
    // example agents `serve` starts bind ephemeral ports too (one took it).
    let card: Value = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let fetched = reqwest::get(format!("{}/.well-known/agent-card.json", agent.base)).await;
            if let Ok(response) = fetched {
                if let Ok(card) = response.json().await {
                    break card;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the SDK agent did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(card["capabilities"]["pushNotifications"], true, "{card}");
    let server = serve(data_dir.path(), &config_file);
    let card_file = data_dir.path().join("sdk-echo.json");
    std::fs::write(&card_file, card.to_string()).expect("card written");
    let (ok, _, stderr) = cli(
        Some((&server, data_dir.path())),
        &[
            "agents",
            "register",
            card_file.to_str().expect("utf-8 path"),
        ],
    );
    assert!(ok, "register: {stderr}");
    let ann = issue_key(&server, data_dir.path(), "ann", "convergio.local", &[]);
    let bob = issue_key(&server, data_dir.path(), "bob", "convergio.local", &[]);
    Fixture {
        _agent: agent,
        runtime,
        receiver,
        hook,
        data_dir,
        config: config_file,
        server,
        ann,
        bob,
    }
}

fn serve(data_dir: &Path, config: &Path) -> Server {
    start_with(
        data_dir,
        &[("CONVERGIO_CONFIG", config.to_str().expect("utf-8 path"))],
    )
}

#[test]
fn an_sdk_agents_notifications_reach_the_caller_through_the_gateway_signed() {
    let Fixture {
        _agent,
        runtime,
        receiver,
        hook,
        data_dir,
        server,
        ann,
        bob,
        ..
    } = fixture("push:\n  max_attempts: 3\n  first_retry_ms: 100\n");
    let second_task = runtime.block_on(async {
        // A receiver on a private address that is not allow-listed is
        // refused before anything reaches the agent.
        let task = slow_task(&server, &ann, "slow one").await;
        let refused = rpc(
            &server,
            &ann,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "url": "http://10.20.30.40/hook", "token": "t"}),
        )
        .await;
        assert_eq!(refused["error"]["code"], -32602, "{refused}");

        // The caller registers its receiver; it gets its own config back.
        let created = rpc(
            &server,
            &ann,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "id": "mine", "url": hook, "token": "caller-token"}),
        )
        .await;
        let config = &created["result"];
        assert_eq!(config["url"], hook.as_str(), "{created}");
        assert_eq!(config["token"], "caller-token");
        assert_eq!(config["id"], "mine");
        let listed = rpc(
            &server,
            &ann,
            "ListTaskPushNotificationConfigs",
            json!({"taskId": task}),
        )
        .await;
        assert_eq!(
            listed["result"]["configs"][0]["url"],
            hook.as_str(),
            "{listed}"
        );
        let got = rpc(
            &server,
            &ann,
            "GetTaskPushNotificationConfig",
            json!({"taskId": task, "id": "mine"}),
        )
        .await;
        assert_eq!(got["result"]["token"], "caller-token", "{got}");
        // What the agent was given instead: the gateway's webhook, with a
        // token of the gateway's (asked of the agent directly).
        let at_agent: Value = reqwest::Client::new()
            .post(format!("{}/", _agent.base))
            .header("A2A-Version", "1.0")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "GetTaskPushNotificationConfig",
                          "params": {"taskId": task, "id": "mine"}}),
            )
            .send()
            .await
            .expect("the agent answers")
            .json()
            .await
            .expect("json");
        let webhook = at_agent["result"]["url"]
            .as_str()
            .expect("a url")
            .to_owned();
        assert!(
            webhook.starts_with(&format!("{}/push/", server.base)),
            "{at_agent}"
        );
        assert_ne!(at_agent["result"]["token"], "caller-token");
        let post = |token: &str, body: Value| {
            reqwest::Client::new()
                .post(&webhook)
                .header("X-A2A-Notification-Token", token)
                .json(&body)
                .send()
        };
        let forged = post("forged", json!({"statusUpdate": {"taskId": task}}))
            .await
            .expect("answers");
        assert_eq!(forged.status(), 401);
        let token = at_agent["result"]["token"].as_str().expect("token");
        let other = post(token, json!({"statusUpdate": {"taskId": "someone-elses"}}))
            .await
            .expect("answers");
        assert_eq!(other.status(), 403);
        assert!(other.headers()["content-type"]
            .to_str()
            .is_ok_and(|value| value.starts_with("application/problem+json")));
        let unknown = reqwest::Client::new()
            .post(format!("{}/push/nosuchhook", server.base))
            .json(&json!({}))
            .send()
            .await
            .expect("answers");
        assert_eq!(unknown.status(), 404);
        // Another caller sees no such task.
        let theirs = rpc(
            &server,
            &bob,
            "ListTaskPushNotificationConfigs",
            json!({"taskId": task}),
        )
        .await;
        assert_eq!(theirs["error"]["code"], -32001, "{theirs}");

        // The task completes; the SDK's sender posts to the gateway, and
        // the gateway to the receiver.
        let receiver_now = receiver.clone();
        eventually("the completion reaches the receiver", async || {
            receiver_now
                .posts()
                .iter()
                .any(|(_, body)| body.to_string().contains("TASK_STATE_COMPLETED"))
        })
        .await;
        let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", server.base))
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks json");
        let keys: Vec<CardKey> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|jwk| CardKey::from_jwk(jwk).expect("a key"))
            .collect();
        for (headers, body) in receiver.posts() {
            assert_eq!(headers["x-a2a-notification-token"], "caller-token");
            assert!(body.to_string().contains(&task), "{body}");
            let signature = headers["x-convergio-signature"].to_str().expect("ascii");
            let (protected, signed) = signature.split_once("..").expect("detached JWS");
            let mut card_like = body.clone();
            card_like["signatures"] = json!([{"protected": protected, "signature": signed}]);
            let check = verify_card(&card_like, &keys, u64::MAX / 4);
            assert!(matches!(check, CardCheck::Verified { .. }), "{check:?}");
            // A changed notification does not verify.
            card_like["tampered"] = json!(true);
            let check = verify_card(&card_like, &keys, u64::MAX / 4);
            assert!(matches!(check, CardCheck::Invalid { .. }), "{check:?}");
        }
        let shown = deliveries(&server, &ann, &task).await;
        assert!(
            shown
                .iter()
                .all(|delivery| delivery["status"] == "delivered"),
            "{shown:?}"
        );

        // A config given inline with the message: kept at the gateway,
        // bound to the new task by its first notification, delivered with
        // its own token.
        let answer = rpc(
            &server,
            &ann,
            "SendMessage",
            json!({"message": {"role": "ROLE_USER", "messageId": "inline",
                               "parts": [{"text": "slow inline"}]},
                   "configuration": {"returnImmediately": true,
                       "taskPushNotificationConfig": {"url": hook, "token": "inline-token"}}}),
        )
        .await;
        let inline_task = answer["result"]["task"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no task: {answer}"))
            .to_owned();
        let (receiver_now, inline_ref) = (receiver.clone(), inline_task.as_str());
        eventually("the inline config's completion is delivered", async || {
            receiver_now.posts().iter().any(|(headers, body)| {
                headers["x-a2a-notification-token"] == "inline-token"
                    && body.to_string().contains(inline_ref)
                    && body.to_string().contains("TASK_STATE_COMPLETED")
            })
        })
        .await;
        let listed = rpc(
            &server,
            &ann,
            "ListTaskPushNotificationConfigs",
            json!({"taskId": inline_task}),
        )
        .await;
        assert_eq!(
            listed["result"]["configs"][0]["token"], "inline-token",
            "{listed}"
        );

        // A receiver that is down: retried (3 attempts), then dead-lettered,
        // and the caller sees it.
        receiver.down.store(true, Ordering::SeqCst);
        let second = slow_task(&server, &ann, "slow two").await;
        let created = rpc(
            &server,
            &ann,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": second, "url": hook, "token": "caller-token"}),
        )
        .await;
        assert!(created.get("result").is_some(), "{created}");
        let (server_ref, ann_ref, second_ref) = (&server, ann.as_str(), second.as_str());
        eventually("a dead-lettered notification", async || {
            deliveries(server_ref, ann_ref, second_ref)
                .await
                .iter()
                .any(|delivery| delivery["status"] == "dead")
        })
        .await;
        let dead: Vec<Value> = deliveries(&server, &ann, &second)
            .await
            .into_iter()
            .filter(|delivery| delivery["status"] == "dead")
            .collect();
        assert_eq!(dead[0]["attempts"], 3, "{dead:?}");
        assert!(
            dead[0]["lastError"].as_str().unwrap_or("").contains("503"),
            "{dead:?}"
        );
        let theirs = reqwest::Client::new()
            .get(format!("{}/v1/tasks/{second}/push-deliveries", server.base))
            .header("X-API-Key", &bob)
            .send()
            .await
            .expect("answers");
        assert_eq!(theirs.status(), 404);
        second
    });
    // The CLI shows the caller its deliveries.
    let (ok, stdout, stderr) = cli(
        Some((&server, data_dir.path())),
        &["tasks", "deliveries", &second_task, "--api-key", &ann],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("dead") && stdout.contains("503"),
        "{stdout}"
    );
    // Both outcomes are audited (the audit queue writes in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, stdout, stderr) = cli(
            Some((&server, data_dir.path())),
            &["audit", "list", "--action", "push.deliver"],
        );
        assert!(ok, "{stderr}");
        if stdout.contains("delivered") && stdout.contains("dead") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not audited: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_delivery_left_pending_by_a_killed_replica_is_taken_over_and_delivered() {
    let mut fixture = fixture(
        "push:\n  max_attempts: 20\n  first_retry_ms: 2000\n  attempt_timeout_ms: 500\n  \
         sweep_interval_seconds: 1\n",
    );
    fixture.receiver.down.store(true, Ordering::SeqCst);
    let task = fixture.runtime.block_on(async {
        let (server, ann, hook) = (&fixture.server, fixture.ann.as_str(), fixture.hook.as_str());
        let task = slow_task(server, ann, "slow three").await;
        let created = rpc(
            server,
            ann,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "url": hook, "token": "caller-token"}),
        )
        .await;
        assert!(created.get("result").is_some(), "{created}");
        // The completion was tried once and waits for its retry.
        let task_ref = task.as_str();
        eventually("a failed attempt at the completion", async || {
            deliveries(server, ann, task_ref)
                .await
                .iter()
                .any(|delivery| {
                    delivery["notification"]
                        .to_string()
                        .contains("TASK_STATE_COMPLETED")
                        && delivery["attempts"].as_u64() >= Some(1)
                        && delivery["status"] == "pending"
                })
        })
        .await;
        task
    });
    // A second replica starts on the same database and the first dies
    // between attempts; the receiver comes back; the second finds the
    // overdue delivery, claims it and finishes it.
    let killed = std::mem::replace(
        &mut fixture.server,
        serve(fixture.data_dir.path(), &fixture.config),
    );
    killed.kill();
    fixture.receiver.down.store(false, Ordering::SeqCst);
    fixture.runtime.block_on(async {
        let (server, ann, task) = (&fixture.server, fixture.ann.as_str(), task.as_str());
        let receiver = fixture.receiver.clone();
        eventually(
            "the completion is delivered after the takeover",
            async || {
                receiver
                    .posts()
                    .iter()
                    .any(|(_, body)| body.to_string().contains("TASK_STATE_COMPLETED"))
            },
        )
        .await;
        eventually("every delivery of the task ends delivered", async || {
            deliveries(server, ann, task)
                .await
                .iter()
                .all(|delivery| delivery["status"] == "delivered")
        })
        .await;
    });
}
