//! The echo agent over the JSON-RPC binding, A2A 1.0: every method, the
//! streaming order, subscriptions, cancellation, follow-ups, and every error
//! code the server produces.

mod support;

use convergio_agents::ExampleAgent;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn blocking_send_returns_a_completed_task_with_the_echo_artifact_and_usage() {
    let agent = start(ExampleAgent::Echo).await;
    let result = send_text(&agent.base_url, &["hello world"]).await;
    let task = &result["task"];
    assert_eq!(state(task), "TASK_STATE_COMPLETED");
    assert_eq!(task["artifacts"][0]["name"], "echo");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"],
        "echo: hello world"
    );
    assert_eq!(task["status"]["message"]["role"], "ROLE_AGENT");
    assert_eq!(
        task["status"]["message"]["metadata"]["usage"],
        json!({"tokens_in": 2, "tokens_out": 3, "tool_calls": 0})
    );
    assert_eq!(task["metadata"]["usage"]["tokens_in"], 2);
    let history = task["history"].as_array().expect("history");
    assert_eq!(history[0]["role"], "ROLE_USER");
    assert_eq!(history[0]["taskId"], task["id"]);
    assert_eq!(history[0]["contextId"], task["contextId"]);
    assert!(task["status"]["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn message_hook_answers_with_a_direct_message() {
    let agent = start(ExampleAgent::Echo).await;
    let mut message = user_message(&["message hi"]);
    message["contextId"] = json!("ctx-1");
    let result = rpc_ok(&agent.base_url, "SendMessage", json!({"message": message})).await;
    let reply = &result["message"];
    assert!(result.get("task").is_none());
    assert_eq!(reply["role"], "ROLE_AGENT");
    assert_eq!(reply["contextId"], "ctx-1");
    assert_eq!(reply["parts"][0]["text"], "echo: message hi");
    assert_eq!(reply["metadata"]["usage"]["tokens_out"], 3);
}

#[tokio::test]
async fn fail_and_input_hooks_end_failed_and_input_required() {
    let agent = start(ExampleAgent::Echo).await;
    let failed = send_text(&agent.base_url, &["fail"]).await;
    assert_eq!(state(&failed["task"]), "TASK_STATE_FAILED");
    let input = send_text(&agent.base_url, &["input"]).await;
    assert_eq!(state(&input["task"]), "TASK_STATE_INPUT_REQUIRED");
}

#[tokio::test]
async fn follow_up_to_an_input_required_task_infers_the_context_and_completes_it() {
    let agent = start(ExampleAgent::Echo).await;
    let first = send_text(&agent.base_url, &["input"]).await["task"].clone();
    let mut follow_up = user_message(&["more"]);
    follow_up["taskId"] = first["id"].clone();
    let second = rpc_ok(
        &agent.base_url,
        "SendMessage",
        json!({"message": follow_up}),
    )
    .await;
    let task = &second["task"];
    assert_eq!(task["id"], first["id"]);
    assert_eq!(task["contextId"], first["contextId"]);
    assert_eq!(state(task), "TASK_STATE_COMPLETED");
    let history: Vec<&Value> = task["history"]
        .as_array()
        .expect("history")
        .iter()
        .collect();
    assert!(history
        .iter()
        .any(|m| m["parts"][0]["text"] == "more" && m["contextId"] == first["contextId"]));
}

#[tokio::test]
async fn follow_up_errors_unknown_terminal_and_mismatched_context() {
    let agent = start(ExampleAgent::Echo).await;
    let mut unknown = user_message(&["x"]);
    unknown["taskId"] = json!("no-such-task");
    assert_eq!(
        error_code(&rpc(&agent.base_url, "SendMessage", json!({"message": unknown})).await),
        -32001
    );

    let done = send_text(&agent.base_url, &["x"]).await["task"].clone();
    let mut to_terminal = user_message(&["x"]);
    to_terminal["taskId"] = done["id"].clone();
    assert_eq!(
        error_code(
            &rpc(
                &agent.base_url,
                "SendMessage",
                json!({"message": to_terminal})
            )
            .await
        ),
        -32004
    );

    let waiting = send_text(&agent.base_url, &["input"]).await["task"].clone();
    let mut mismatched = user_message(&["x"]);
    mismatched["taskId"] = waiting["id"].clone();
    mismatched["contextId"] = json!("another-context");
    let response = rpc(
        &agent.base_url,
        "SendMessage",
        json!({"message": mismatched}),
    )
    .await;
    assert_eq!(error_code(&response), -32602);
}

#[tokio::test]
async fn return_immediately_answers_before_the_task_finishes() {
    let agent = start(ExampleAgent::Echo).await;
    let task = send_immediately(&agent.base_url, &["sleep:60000 slow"]).await;
    let current = state(&task);
    assert!(
        current == "TASK_STATE_SUBMITTED" || current == "TASK_STATE_WORKING",
        "{current}"
    );
    let canceled = rpc_ok(&agent.base_url, "CancelTask", json!({"id": task["id"]})).await;
    assert_eq!(state(&canceled), "TASK_STATE_CANCELED");
}

#[tokio::test]
async fn streaming_send_emits_task_working_artifact_completed_in_order() {
    let agent = start(ExampleAgent::Echo).await;
    let reader = rpc_stream(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["hi"])}),
    )
    .await;
    assert!(
        reader.content_type.starts_with("text/event-stream"),
        "{}",
        reader.content_type
    );
    let events = reader.collect().await;
    for event in &events {
        assert_eq!(event["jsonrpc"], "2.0");
        assert_eq!(event["id"], 7);
    }
    let results = results(&events);
    let kinds: Vec<&str> = results.iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["task", "statusUpdate", "artifactUpdate", "statusUpdate"]
    );
    assert_eq!(state(&results[0]["task"]), "TASK_STATE_SUBMITTED");
    assert_eq!(
        results[1]["statusUpdate"]["status"]["state"],
        "TASK_STATE_WORKING"
    );
    assert_eq!(
        results[2]["artifactUpdate"]["artifact"]["parts"][0]["text"],
        "echo: hi"
    );
    assert_eq!(results[2]["artifactUpdate"]["lastChunk"], true);
    assert_eq!(
        results[3]["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    let task_id = &results[0]["task"]["id"];
    for result in &results[1..] {
        let update = result
            .get("statusUpdate")
            .or_else(|| result.get("artifactUpdate"))
            .expect("update");
        assert_eq!(&update["taskId"], task_id);
        assert_eq!(update["contextId"], results[0]["task"]["contextId"]);
    }
}

#[tokio::test]
async fn streaming_a_direct_reply_is_one_message_event() {
    let agent = start(ExampleAgent::Echo).await;
    let events = rpc_stream(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["message"])}),
    )
    .await
    .collect()
    .await;
    let results = results(&events);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["message"]["parts"][0]["text"], "echo: message");
}

#[tokio::test]
async fn streaming_stops_at_input_required() {
    let agent = start(ExampleAgent::Echo).await;
    let events = rpc_stream(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["input"])}),
    )
    .await
    .collect()
    .await;
    let results = results(&events);
    let last = results.last().expect("events");
    assert_eq!(
        last["statusUpdate"]["status"]["state"],
        "TASK_STATE_INPUT_REQUIRED"
    );
}

#[tokio::test]
async fn get_task_honours_history_length() {
    let agent = start(ExampleAgent::Echo).await;
    let task = send_text(&agent.base_url, &["hi"]).await["task"].clone();
    let full = rpc_ok(&agent.base_url, "GetTask", json!({"id": task["id"]})).await;
    assert_eq!(full["history"].as_array().map(Vec::len), Some(2));
    let none = rpc_ok(
        &agent.base_url,
        "GetTask",
        json!({"id": task["id"], "historyLength": 0}),
    )
    .await;
    assert!(none.get("history").is_none(), "{none}");
    let one = rpc_ok(
        &agent.base_url,
        "GetTask",
        json!({"id": task["id"], "historyLength": 1}),
    )
    .await;
    assert_eq!(one["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["history"][0]["role"], "ROLE_AGENT");
    assert_eq!(
        error_code(&rpc(&agent.base_url, "GetTask", json!({"id": "nope"})).await),
        -32001
    );
    assert_eq!(
        error_code(&rpc(&agent.base_url, "GetTask", json!({})).await),
        -32602
    );
}

#[tokio::test]
async fn list_tasks_filters_pages_and_omits_artifacts_by_default() {
    let agent = start(ExampleAgent::Echo).await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let mut message = user_message(&[&format!("n{index}")]);
        message["contextId"] = json!(if index < 3 { "ctx-a" } else { "ctx-b" });
        let result = rpc_ok(&agent.base_url, "SendMessage", json!({"message": message})).await;
        ids.push(result["task"]["id"].as_str().expect("id").to_owned());
    }
    let all = rpc_ok(&agent.base_url, "ListTasks", json!({})).await;
    assert_eq!(all["totalSize"], 5);
    assert_eq!(all["nextPageToken"], "");
    assert_eq!(all["pageSize"], 50);
    let listed: Vec<&str> = all["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);
    assert!(all["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .all(|t| t.get("artifacts").is_none()));

    let with_artifacts = rpc_ok(
        &agent.base_url,
        "ListTasks",
        json!({"includeArtifacts": true, "pageSize": 1}),
    )
    .await;
    assert!(with_artifacts["tasks"][0].get("artifacts").is_some());

    let context_a = rpc_ok(&agent.base_url, "ListTasks", json!({"contextId": "ctx-a"})).await;
    assert_eq!(context_a["totalSize"], 3);

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = rpc_ok(
            &agent.base_url,
            "ListTasks",
            json!({"pageSize": 2, "pageToken": token}),
        )
        .await;
        seen.extend(
            page["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .filter_map(|t| t["id"].as_str().map(str::to_owned)),
        );
        token = page["nextPageToken"].as_str().expect("token").to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, newest_first);

    let completed = rpc_ok(
        &agent.base_url,
        "ListTasks",
        json!({"status": "TASK_STATE_COMPLETED"}),
    )
    .await;
    assert_eq!(completed["totalSize"], 5);
    let working = rpc_ok(
        &agent.base_url,
        "ListTasks",
        json!({"status": "TASK_STATE_WORKING"}),
    )
    .await;
    assert_eq!(working["totalSize"], 0);
    let future = rpc_ok(
        &agent.base_url,
        "ListTasks",
        json!({"statusTimestampAfter": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(future["totalSize"], 0);
    let past = rpc_ok(
        &agent.base_url,
        "ListTasks",
        json!({"statusTimestampAfter": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(past["totalSize"], 5);
    let bad_time = rpc(
        &agent.base_url,
        "ListTasks",
        json!({"statusTimestampAfter": "yesterday"}),
    )
    .await;
    assert_eq!(error_code(&bad_time), -32602);
    let one_history = rpc_ok(&agent.base_url, "ListTasks", json!({"historyLength": 1})).await;
    assert!(one_history["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .all(|t| t["history"].as_array().map(Vec::len) == Some(1)));
    assert_eq!(
        error_code(&rpc(&agent.base_url, "ListTasks", json!({"pageSize": 101})).await),
        -32602
    );
    assert_eq!(
        error_code(
            &rpc(
                &agent.base_url,
                "ListTasks",
                json!({"pageToken": "garbage"})
            )
            .await
        ),
        -32602
    );
}

#[tokio::test]
async fn cancel_mid_task_ends_canceled_and_closes_the_stream() {
    let agent = start(ExampleAgent::Echo).await;
    let mut reader = rpc_stream(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["sleep:60000"])}),
    )
    .await;
    let first = reader.next().await.expect("task event");
    let task_id = first["result"]["task"]["id"].clone();
    let working = reader.next().await.expect("working event");
    assert_eq!(
        working["result"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_WORKING"
    );
    let canceled = rpc_ok(&agent.base_url, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(state(&canceled), "TASK_STATE_CANCELED");
    let rest = results(&reader.collect().await);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(
        rest[0]["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED"
    );
    let again = rpc(&agent.base_url, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(error_code(&again), -32002);
    assert_eq!(
        error_code(&rpc(&agent.base_url, "CancelTask", json!({"id": "nope"})).await),
        -32001
    );
}

#[tokio::test]
async fn two_subscribers_see_the_same_sequence() {
    let agent = start(ExampleAgent::Echo).await;
    let task = send_immediately(&agent.base_url, &["sleep:60000"]).await;
    let mut first = rpc_stream(
        &agent.base_url,
        "SubscribeToTask",
        json!({"id": task["id"]}),
    )
    .await;
    let mut second = rpc_stream(
        &agent.base_url,
        "SubscribeToTask",
        json!({"id": task["id"]}),
    )
    .await;
    let first_head = first.next().await.expect("snapshot");
    let second_head = second.next().await.expect("snapshot");
    assert_eq!(first_head["result"]["task"]["id"], task["id"]);
    assert_eq!(second_head["result"]["task"]["id"], task["id"]);
    rpc_ok(&agent.base_url, "CancelTask", json!({"id": task["id"]})).await;
    let first_rest = results(&first.collect().await);
    let second_rest = results(&second.collect().await);
    // The WORKING update may land before or after a snapshot, so compare
    // what follows the later of the two snapshots: the final CANCELED event.
    assert_eq!(first_rest.last(), second_rest.last());
    assert_eq!(
        first_rest.last().expect("events")["statusUpdate"]["status"]["state"],
        "TASK_STATE_CANCELED"
    );
    let terminal = rpc(
        &agent.base_url,
        "SubscribeToTask",
        json!({"id": task["id"]}),
    )
    .await;
    assert_eq!(error_code(&terminal), -32004);
    assert_eq!(
        error_code(&rpc(&agent.base_url, "SubscribeToTask", json!({"id": "nope"})).await),
        -32001
    );
}

#[tokio::test]
async fn subscribers_attached_while_working_get_identical_event_sequences() {
    let agent = start(ExampleAgent::Echo).await;
    let mut reader = rpc_stream(
        &agent.base_url,
        "SendStreamingMessage",
        json!({"message": user_message(&["sleep:60000"])}),
    )
    .await;
    let task_id = reader.next().await.expect("task")["result"]["task"]["id"].clone();
    reader.next().await.expect("working");
    // The task is WORKING and stays so until canceled: both snapshots agree.
    let mut first = rpc_stream(&agent.base_url, "SubscribeToTask", json!({"id": task_id})).await;
    let mut second = rpc_stream(&agent.base_url, "SubscribeToTask", json!({"id": task_id})).await;
    let a = first.next().await.expect("snapshot");
    let b = second.next().await.expect("snapshot");
    assert_eq!(a["result"], b["result"]);
    assert_eq!(state(&a["result"]["task"]), "TASK_STATE_WORKING");
    rpc_ok(&agent.base_url, "CancelTask", json!({"id": task_id})).await;
    assert_eq!(
        results(&first.collect().await),
        results(&second.collect().await)
    );
    assert_eq!(results(&reader.collect().await).len(), 1);
}

#[tokio::test]
async fn push_config_methods_are_not_supported() {
    let agent = start(ExampleAgent::Echo).await;
    for method in [
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
    ] {
        let response = rpc(&agent.base_url, method, json!({"taskId": "t", "id": "c"})).await;
        assert_eq!(error_code(&response), -32003, "{method}");
        assert_eq!(
            response["error"]["data"][0]["reason"],
            "PUSH_NOTIFICATION_NOT_SUPPORTED"
        );
        assert_eq!(response["error"]["data"][0]["domain"], "a2a-protocol.org");
    }
    let card = rpc(&agent.base_url, "GetExtendedAgentCard", json!({})).await;
    assert_eq!(error_code(&card), -32004);
}

#[tokio::test]
async fn envelope_errors_follow_the_sdk() {
    let agent = start(ExampleAgent::Echo).await;
    let url = &agent.base_url;
    let (status, parse) = rpc_raw(url, Some("1.0"), "{not json".into()).await;
    assert_eq!(status, 200);
    assert_eq!(error_code(&parse), -32700);
    assert_eq!(parse["id"], Value::Null);

    let (_, batch) = rpc_raw(url, Some("1.0"), "[]".into()).await;
    assert_eq!(error_code(&batch), -32600);
    assert_eq!(
        batch["error"]["message"],
        "Batch requests are not supported"
    );

    let (_, scalar) = rpc_raw(url, Some("1.0"), "42".into()).await;
    assert_eq!(error_code(&scalar), -32600);

    let (_, missing) = rpc_raw(
        url,
        Some("1.0"),
        json!({"id": "x", "method": "GetTask"}).to_string(),
    )
    .await;
    assert_eq!(error_code(&missing), -32600);
    assert_eq!(missing["id"], "x");

    let (_, unknown) = rpc_raw(
        url,
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": "abc", "method": "Nope", "params": {}}).to_string(),
    )
    .await;
    assert_eq!(error_code(&unknown), -32601);
    assert_eq!(unknown["id"], "abc");

    let (_, bad_params) =
        rpc_raw(url, Some("1.0"), json!({"jsonrpc": "2.0", "id": 9, "method": "SendMessage", "params": {"message": {"role": "ROLE_USER"}}}).to_string()).await;
    assert_eq!(error_code(&bad_params), -32602);
    assert_eq!(bad_params["id"], 9);
    assert_eq!(bad_params["error"]["data"][0]["reason"], "INVALID_PARAMS");
    let fields: Vec<&str> = bad_params["error"]["data"][1]["fieldViolations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"message.messageId") && fields.contains(&"message.parts"),
        "{fields:?}"
    );

    let (_, array_params) = rpc_raw(
        url,
        Some("1.0"),
        json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": [1]}).to_string(),
    )
    .await;
    assert_eq!(error_code(&array_params), -32602);

    let (_, version) = rpc_raw(
        url,
        Some("0.5"),
        json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}}).to_string(),
    )
    .await;
    assert_eq!(error_code(&version), -32009);
    assert_eq!(
        version["error"]["data"][0]["reason"],
        "VERSION_NOT_SUPPORTED"
    );

    let (_, no_header) = rpc_raw(
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "x"}}).to_string(),
    )
    .await;
    assert_eq!(error_code(&no_header), -32009);

    let get = client()
        .get(url)
        .header("A2A-Version", "1.0")
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 405);
}

#[tokio::test]
async fn unknown_request_fields_are_ignored() {
    let agent = start(ExampleAgent::Echo).await;
    let mut message = user_message(&["hi"]);
    message["futureField"] = json!({"x": 1});
    message["parts"][0]["mediaType"] = json!("text/plain");
    message["parts"][0]["filename"] = json!("");
    let result = rpc_ok(
        &agent.base_url,
        "SendMessage",
        json!({"message": message, "tenant": "", "configuration": {"acceptedOutputModes": ["text/plain"], "generation": "3"}, "extra": true}),
    )
    .await;
    assert_eq!(state(&result["task"]), "TASK_STATE_COMPLETED");
}

#[tokio::test]
async fn send_configuration_history_length_limits_the_returned_history() {
    let agent = start(ExampleAgent::Echo).await;
    let result = rpc_ok(
        &agent.base_url,
        "SendMessage",
        json!({"message": user_message(&["hi"]), "configuration": {"historyLength": 0}}),
    )
    .await;
    assert!(result["task"].get("history").is_none());
}
