//! Task isolation with real authentication, on both bindings (issue 4):
//! Alice creates a task; every other principal — another subject of her
//! organisation, and her own subject name in another organisation — gets
//! byte for byte (modulo ids and request ids) the answer an unknown id gets
//! for GetTask, CancelTask, SubscribeToTask and every push-config call, and
//! ListTasks shows each caller only their own tasks.

mod support;

use serde_json::{json, Value};
use support::security::{normalise, spawn_secure_gateway, Issuer, SecureGateway, SecureOptions};
use support::{send_params, spawn_fake, FakeMode};

const UNKNOWN: &str = "00000000-0000-0000-0000-00000000dead";

struct Caller {
    token: String,
}

async fn rpc(
    gateway: &SecureGateway,
    caller: &Caller,
    method: &str,
    params: Value,
) -> (u16, String) {
    let response = gateway
        .gateway
        .http
        .post(gateway.gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .bearer_auth(&caller.token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("rpc");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn rest(
    gateway: &SecureGateway,
    caller: &Caller,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = gateway
        .gateway
        .http
        .request(method, gateway.gateway.url(&format!("/agents/echo{path}")))
        .header("A2A-Version", "1.0")
        .bearer_auth(&caller.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("rest");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn task_id(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("json");
    value["result"]["task"]["id"]
        .as_str()
        .expect("task id")
        .to_owned()
}

fn listed_ids(value: &Value) -> Vec<String> {
    value["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|task| task["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn another_principal_gets_the_unknown_task_answer_on_both_bindings() {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    // An agent that takes push configs: one without them answers every
    // push-config call PushNotificationNotSupported whatever the task, which
    // is no answer about tasks (tests/a2a_completeness.rs).
    let mut card = fake.card();
    card["capabilities"]["pushNotifications"] = json!(true);
    gateway.gateway.register("echo", card);
    let alice = Caller {
        token: issuer.token("alice", "acme.example"),
    };
    let others = [
        (
            "bob of acme",
            Caller {
                token: issuer.token("bob", "acme.example"),
            },
        ),
        (
            "alice of evil",
            Caller {
                token: issuer.token("alice", "evil.example"),
            },
        ),
    ];
    let (status, created) = rpc(&gateway, &alice, "SendMessage", send_params("wait")).await;
    assert_eq!(status, 200, "{created}");
    let task = task_id(&created);
    let ids = [task.as_str(), UNKNOWN];

    for (who, other) in &others {
        let rpc_calls: Vec<(&str, Value, Value)> = vec![
            ("GetTask", json!({"id": task}), json!({"id": UNKNOWN})),
            ("CancelTask", json!({"id": task}), json!({"id": UNKNOWN})),
            (
                "SubscribeToTask",
                json!({"id": task}),
                json!({"id": UNKNOWN}),
            ),
            (
                "CreateTaskPushNotificationConfig",
                json!({"taskId": task, "url": "https://hooks.example/cb"}),
                json!({"taskId": UNKNOWN, "url": "https://hooks.example/cb"}),
            ),
            (
                "GetTaskPushNotificationConfig",
                json!({"taskId": task, "id": "cfg-1"}),
                json!({"taskId": UNKNOWN, "id": "cfg-1"}),
            ),
            (
                "ListTaskPushNotificationConfigs",
                json!({"taskId": task}),
                json!({"taskId": UNKNOWN}),
            ),
            (
                "DeleteTaskPushNotificationConfig",
                json!({"taskId": task, "id": "cfg-1"}),
                json!({"taskId": UNKNOWN, "id": "cfg-1"}),
            ),
        ];
        for (method, theirs, unknown) in rpc_calls {
            let (status, body) = rpc(&gateway, other, method, theirs).await;
            let (unknown_status, unknown_body) = rpc(&gateway, other, method, unknown).await;
            let value: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(value["error"]["code"], -32001, "{who} {method}: {body}");
            assert_eq!(status, unknown_status, "{who} {method}");
            assert_eq!(
                normalise(&body, &ids),
                normalise(&unknown_body, &ids),
                "{who} {method}: another's task must look unknown"
            );
        }

        let rest_calls: Vec<(reqwest::Method, String, Option<Value>)> = vec![
            (reqwest::Method::GET, "/tasks/{}".to_owned(), None),
            (
                reqwest::Method::POST,
                "/tasks/{}:cancel".to_owned(),
                Some(json!({})),
            ),
            (reqwest::Method::GET, "/tasks/{}:subscribe".to_owned(), None),
            (
                reqwest::Method::POST,
                "/tasks/{}/pushNotificationConfigs".to_owned(),
                Some(json!({"url": "https://hooks.example/cb"})),
            ),
            (
                reqwest::Method::GET,
                "/tasks/{}/pushNotificationConfigs".to_owned(),
                None,
            ),
            (
                reqwest::Method::GET,
                "/tasks/{}/pushNotificationConfigs/cfg-1".to_owned(),
                None,
            ),
            (
                reqwest::Method::DELETE,
                "/tasks/{}/pushNotificationConfigs/cfg-1".to_owned(),
                None,
            ),
        ];
        for (method, template, body) in rest_calls {
            let theirs = template.replace("{}", &task);
            let unknown = template.replace("{}", UNKNOWN);
            let (status, answer) =
                rest(&gateway, other, method.clone(), &theirs, body.clone()).await;
            let (unknown_status, unknown_answer) =
                rest(&gateway, other, method.clone(), &unknown, body).await;
            assert_eq!(status, 404, "{who} {method} {template}: {answer}");
            assert_eq!(status, unknown_status, "{who} {method} {template}");
            assert_eq!(
                normalise(&answer, &ids),
                normalise(&unknown_answer, &ids),
                "{who} {method} {template}: another's task must look unknown"
            );
        }
    }

    // Alice still owns her task, on both bindings.
    let (status, fetched) = rpc(&gateway, &alice, "GetTask", json!({"id": task})).await;
    assert_eq!(status, 200);
    let fetched: Value = serde_json::from_str(&fetched).expect("json");
    assert_eq!(fetched["result"]["id"], json!(task));
    let (status, _) = rest(
        &gateway,
        &alice,
        reqwest::Method::GET,
        &format!("/tasks/{task}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn list_tasks_shows_only_the_callers_own_on_both_bindings() {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("echo", fake.card());
    let alice = Caller {
        token: issuer.token("alice", "acme.example"),
    };
    let bob = Caller {
        token: issuer.token("bob", "acme.example"),
    };
    let (_, created) = rpc(&gateway, &alice, "SendMessage", send_params("wait")).await;
    let alice_task = task_id(&created);
    let (_, created) = rpc(&gateway, &bob, "SendMessage", send_params("wait")).await;
    let bob_task = task_id(&created);

    for (caller, own) in [(&alice, &alice_task), (&bob, &bob_task)] {
        let (status, body) = rpc(&gateway, caller, "ListTasks", json!({})).await;
        assert_eq!(status, 200, "{body}");
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(listed_ids(&value["result"]), std::slice::from_ref(own));
        let (status, body) = rest(&gateway, caller, reqwest::Method::GET, "/tasks", None).await;
        assert_eq!(status, 200, "{body}");
        let value: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(listed_ids(&value), std::slice::from_ref(own));
    }
}

fn listed_page(value: &Value) -> (Vec<String>, u64, String) {
    (
        listed_ids(value),
        value["totalSize"].as_u64().expect("totalSize"),
        value["nextPageToken"].as_str().unwrap_or("").to_owned(),
    )
}

// Regression: issue #15, defects 2 and 3: every ListTasks page loaded all of
// the caller's task routes, and when nothing on a page was filtered out the
// upstream's totalSize over every caller was passed through (bob, owning 3
// tasks, saw 18).
#[tokio::test]
async fn list_tasks_pages_the_callers_tasks_and_counts_only_theirs() {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("echo", fake.card());
    let alice = Caller {
        token: issuer.token("alice", "acme.example"),
    };
    let bob = Caller {
        token: issuer.token("bob", "acme.example"),
    };
    let mut alice_tasks = Vec::new();
    for _ in 0..5 {
        let (_, created) = rpc(&gateway, &alice, "SendMessage", send_params("wait")).await;
        alice_tasks.push(task_id(&created));
    }
    let mut bob_tasks = Vec::new();
    for _ in 0..3 {
        let (_, created) = rpc(&gateway, &bob, "SendMessage", send_params("wait")).await;
        bob_tasks.push(task_id(&created));
    }

    // Bob's newest three fill the upstream's first page: nothing is filtered
    // out, and the count is still his own, on both bindings.
    let (status, body) = rpc(&gateway, &bob, "ListTasks", json!({"pageSize": 3})).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).expect("json");
    let (ids, total, next) = listed_page(&value["result"]);
    assert_eq!(ids.len(), 3, "{body}");
    assert_eq!(total, 3, "bob's own count, not every caller's: {body}");
    assert!(!next.is_empty());
    let (status, body) = rest(
        &gateway,
        &bob,
        reqwest::Method::GET,
        "/tasks?pageSize=3",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(listed_page(&value).1, 3, "{body}");

    // Paging through everything gives Alice each of her tasks exactly once,
    // and every page counts only hers.
    for binding in ["jsonrpc", "rest"] {
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..10 {
            let value = if binding == "jsonrpc" {
                let (status, body) = rpc(
                    &gateway,
                    &alice,
                    "ListTasks",
                    json!({"pageSize": 2, "pageToken": token}),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                let value: Value = serde_json::from_str(&body).expect("json");
                value["result"].clone()
            } else {
                let path = format!("/tasks?pageSize=2&pageToken={token}");
                let (status, body) =
                    rest(&gateway, &alice, reqwest::Method::GET, &path, None).await;
                assert_eq!(status, 200, "{body}");
                serde_json::from_str(&body).expect("json")
            };
            let (ids, total, next) = listed_page(&value);
            assert_eq!(total, 5, "{binding}: {value}");
            seen.extend(ids);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let mut expected = alice_tasks.clone();
        expected.sort();
        let mut listed = seen.clone();
        listed.sort();
        assert_eq!(listed, expected, "{binding}: each of hers once, no others");
    }
}

/// The context of a JSON-RPC SendMessage result.
fn context_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).expect("json");
    value["result"]["task"]["contextId"]
        .as_str()
        .expect("context id")
        .to_owned()
}

fn in_context(text: &str, context_id: &str) -> Value {
    let mut params = send_params(text);
    params["message"]["contextId"] = json!(context_id);
    params
}

// Regression: issue #15, defect 4: a contextId owned by another principal
// was accepted on SendMessage; only task ids were checked.
#[tokio::test]
async fn another_principals_context_gets_the_unknown_task_answer_on_every_binding() {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("echo", fake.card());
    let alice = Caller {
        token: issuer.token("alice", "acme.example"),
    };
    let bob = Caller {
        token: issuer.token("bob", "acme.example"),
    };
    // One context the agent made for Alice, one she chose herself.
    let (status, created) = rpc(&gateway, &alice, "SendMessage", send_params("wait")).await;
    assert_eq!(status, 200, "{created}");
    let made = context_of(&created);
    let (status, created) = rpc(
        &gateway,
        &alice,
        "SendMessage",
        in_context("wait", "alice-chosen"),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(context_of(&created), "alice-chosen");

    for context_id in [made.as_str(), "alice-chosen"] {
        let upstream_calls = fake
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);
        // The unknown-task answer, as JSON-RPC gives it.
        let (unknown_status, _) = rpc(&gateway, &bob, "GetTask", json!({"id": UNKNOWN})).await;
        for method in ["SendMessage", "SendStreamingMessage"] {
            let (status, body) = rpc(&gateway, &bob, method, in_context("hi", context_id)).await;
            let value: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(value["error"]["code"], -32001, "{method}: {body}");
            assert_eq!(status, unknown_status, "{method}: {body}");
        }
        for path in ["/message:send", "/message:stream"] {
            let (status, body) = rest(
                &gateway,
                &bob,
                reqwest::Method::POST,
                path,
                Some(in_context("hi", context_id)),
            )
            .await;
            assert_eq!(status, 404, "{path}: {body}");
            let value: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(value["error"]["status"], "NOT_FOUND", "{path}: {body}");
        }
        let envelope = json!({"protocol": "a2a/1.0", "from": "convergio://agents/planner",
            "to": "convergio://agents/echo", "action": "review", "payload": {"code": "x"},
            "context_id": context_id});
        let response = gateway
            .gateway
            .http
            .post(gateway.gateway.url("/v1/envelope"))
            .bearer_auth(&bob.token)
            .json(&envelope)
            .send()
            .await
            .expect("envelope");
        assert_eq!(response.status(), 404, "envelope");
        assert_eq!(
            fake.state
                .requests
                .load(std::sync::atomic::Ordering::SeqCst),
            upstream_calls,
            "nothing of Bob's reached the agent in {context_id}"
        );
    }

    // Alice goes on in both of her contexts; Bob's own context is his.
    for context_id in [made.as_str(), "alice-chosen"] {
        let (status, body) = rpc(
            &gateway,
            &alice,
            "SendMessage",
            in_context("hi", context_id),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = rpc(
        &gateway,
        &bob,
        "SendMessage",
        in_context("hi", "bob-chosen"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = rpc(
        &gateway,
        &alice,
        "SendMessage",
        in_context("hi", "bob-chosen"),
    )
    .await;
    let value: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(value["error"]["code"], -32001, "{body}");
}
