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
    gateway.gateway.register("echo", fake.card());
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
