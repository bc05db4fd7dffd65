//! Properties of the 0.3 ↔ 1.0 translation (issue #15): every well-formed
//! 1.0 value — stream events, send results, tasks, send requests and the
//! push-notification shapes, with unknown fields and arbitrary metadata —
//! lowered to 0.3 and lifted again is the value it was, and the 0.3 forms
//! so produced survive lifting and lowering unchanged too. (Arbitrary,
//! malformed JSON has no round trip to keep; `gateway/fuzz` checks that it
//! never panics.)

use convergio_gateway::a2a::translate::{
    event_to_v03, event_to_v1, request_to_v03, request_to_v1, result_to_v03, result_to_v1,
};
use convergio_schemas::a2a::{Method, TaskState};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Map, Value};

/// Any JSON without floats (metadata, data parts), two levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-zA-Z]{1,6}", json_value(), 0..3)
        .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// Adds `key` to an object when `value` is present.
fn with(mut object: Value, key: &str, value: Option<Value>) -> Value {
    if let (Some(value), Value::Object(map)) = (value, &mut object) {
        map.insert(key.to_owned(), value);
    }
    object
}

fn text() -> impl Strategy<Value = String> {
    ".{0,8}"
}

fn id() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,12}"
}

/// A file part's optional name and media type.
fn file_fields() -> impl Strategy<Value = (Option<String>, Option<String>)> {
    (
        prop::option::of(text()),
        prop::option::of("[a-z]{1,5}/[a-z]{1,5}"),
    )
}

/// A 1.0 part: exactly one of `text`, `data`, `raw`, `url`.
fn part_v1() -> impl Strategy<Value = Value> {
    let member = prop_oneof![
        text().prop_map(|text| json!({ "text": text })),
        json_value().prop_map(|data| json!({ "data": data })),
        ("[A-Za-z0-9+/]{0,12}", file_fields()).prop_map(|(raw, (name, media))| {
            let part = json!({ "raw": raw });
            let part = with(part, "filename", name.map(Value::from));
            with(part, "mediaType", media.map(Value::from))
        }),
        ("https://[a-z]{1,8}/[a-z]{0,8}", file_fields()).prop_map(|(url, (name, media))| {
            let part = json!({ "url": url });
            let part = with(part, "filename", name.map(Value::from));
            with(part, "mediaType", media.map(Value::from))
        }),
    ];
    (member, prop::option::of(json_object()))
        .prop_map(|(part, metadata)| with(part, "metadata", metadata))
}

fn message_v1() -> impl Strategy<Value = Value> {
    (
        id(),
        prop_oneof![Just("ROLE_USER"), Just("ROLE_AGENT")],
        prop::collection::vec(part_v1(), 0..4),
        prop::option::of(id()),
        prop::option::of(id()),
        prop::option::of(json_object()),
        prop::option::of(json_value()),
    )
        .prop_map(
            |(message_id, role, parts, task, context, metadata, future)| {
                let message = json!({ "messageId": message_id, "role": role, "parts": parts });
                let message = with(message, "taskId", task.map(Value::from));
                let message = with(message, "contextId", context.map(Value::from));
                let message = with(message, "metadata", metadata);
                // A field a later A2A version may add: translation must keep it.
                with(message, "futureField", future)
            },
        )
}

fn state_v1() -> impl Strategy<Value = Value> {
    prop::sample::select(TaskState::ALL.to_vec()).prop_map(|state| Value::from(state.v1_name()))
}

fn status_v1() -> impl Strategy<Value = Value> {
    (
        state_v1(),
        prop::option::of(message_v1()),
        prop::option::of("2026-0[1-9]-1[0-9]T10:00:00Z"),
    )
        .prop_map(|(state, message, timestamp)| {
            let status = json!({ "state": state });
            let status = with(status, "message", message);
            with(status, "timestamp", timestamp.map(Value::from))
        })
}

fn artifact_v1() -> impl Strategy<Value = Value> {
    (
        id(),
        prop::option::of(text()),
        prop::collection::vec(part_v1(), 0..3),
    )
        .prop_map(|(artifact_id, name, parts)| {
            let artifact = json!({ "artifactId": artifact_id, "parts": parts });
            with(artifact, "name", name.map(Value::from))
        })
}

fn task_v1() -> impl Strategy<Value = Value> {
    (
        id(),
        id(),
        status_v1(),
        prop::collection::vec(message_v1(), 0..3),
        prop::collection::vec(artifact_v1(), 0..3),
        prop::option::of(json_object()),
    )
        .prop_map(|(task_id, context, status, history, artifacts, metadata)| {
            let task = json!({
                "id": task_id,
                "contextId": context,
                "status": status,
                "history": history,
                "artifacts": artifacts,
            });
            with(task, "metadata", metadata)
        })
}

/// A 1.0 `StreamResponse` / `SendMessageResponse`.
fn event_v1() -> impl Strategy<Value = Value> {
    prop_oneof![
        task_v1().prop_map(|task| json!({ "task": task })),
        message_v1().prop_map(|message| json!({ "message": message })),
        (id(), id(), status_v1(), prop::option::of(json_object())).prop_map(
            |(task, context, status, metadata)| {
                let update = json!({ "taskId": task, "contextId": context, "status": status });
                json!({ "statusUpdate": with(update, "metadata", metadata) })
            }
        ),
        (id(), id(), artifact_v1(), any::<bool>(), any::<bool>()).prop_map(
            |(task, context, artifact, append, last)| {
                json!({ "artifactUpdate": {
                    "taskId": task, "contextId": context, "artifact": artifact,
                    "append": append, "lastChunk": last,
                }})
            }
        ),
    ]
}

/// A 1.0 push-notification config (without its task).
fn push_config_v1() -> impl Strategy<Value = Value> {
    (
        "https://[a-z]{1,8}/hook",
        prop::option::of(id()),
        prop::option::of(text()),
        prop::option::of((
            prop_oneof![Just("Bearer"), Just("Basic")],
            prop::option::of(text()),
        )),
    )
        .prop_map(|(url, config_id, token, authentication)| {
            let config = json!({ "url": url });
            let config = with(config, "id", config_id.map(Value::from));
            let config = with(config, "token", token.map(Value::from));
            let authentication = authentication.map(|(scheme, credentials)| {
                with(
                    json!({ "scheme": scheme }),
                    "credentials",
                    credentials.map(Value::from),
                )
            });
            with(config, "authentication", authentication)
        })
}

/// A 1.0 `SendMessageRequest` (no `tenant`: 0.3 has none to carry it).
fn send_request_v1() -> impl Strategy<Value = Value> {
    (
        message_v1(),
        prop::option::of((
            prop::option::of(any::<bool>()),
            prop::option::of(push_config_v1()),
            prop::option::of(prop::collection::vec("[a-z]{1,5}/[a-z]{1,5}", 0..3)),
        )),
        prop::option::of(json_object()),
    )
        .prop_map(|(message, configuration, metadata)| {
            let configuration = configuration.map(|(immediately, push, modes)| {
                let configuration =
                    with(json!({}), "returnImmediately", immediately.map(Value::from));
                let configuration = with(configuration, "taskPushNotificationConfig", push);
                with(configuration, "acceptedOutputModes", modes.map(Value::from))
            });
            let request = with(
                json!({ "message": message }),
                "configuration",
                configuration,
            );
            with(request, "metadata", metadata)
        })
}

fn object_with(mut object: Value, pairs: &[(&str, Value)]) -> Value {
    if let Value::Object(map) = &mut object {
        for (key, value) in pairs {
            map.insert((*key).to_owned(), value.clone());
        }
    }
    object
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stream_events_survive_lowering_and_lifting(event in event_v1()) {
        let old = event_to_v03(event.clone());
        prop_assert_eq!(&event_to_v1(old.clone()), &event);
        // The 0.3 form is a fixed point of lifting and lowering too.
        prop_assert_eq!(event_to_v03(event_to_v1(old.clone())), old);
        for method in [Method::SendMessage, Method::SendStreamingMessage, Method::SubscribeToTask] {
            prop_assert_eq!(&result_to_v1(method, result_to_v03(method, event.clone())), &event);
        }
    }

    #[test]
    fn tasks_survive_lowering_and_lifting(task in task_v1()) {
        for method in [Method::GetTask, Method::CancelTask] {
            let old = result_to_v03(method, task.clone());
            prop_assert_eq!(old.get("kind"), Some(&Value::from("task")));
            prop_assert_eq!(&result_to_v1(method, old), &task);
        }
    }

    #[test]
    fn send_requests_survive_lowering_and_lifting(request in send_request_v1()) {
        for method in [Method::SendMessage, Method::SendStreamingMessage] {
            let old = request_to_v03(method, request.clone()).expect("0.3 has SendMessage");
            let lifted = request_to_v1(method, old.clone()).expect("lifting never fails");
            prop_assert_eq!(&lifted, &request);
            prop_assert_eq!(request_to_v03(method, lifted).expect("lowers again"), old);
        }
    }

    #[test]
    fn push_configs_survive_lowering_and_lifting(
        config in push_config_v1(),
        task_id in id(),
        config_id in id(),
    ) {
        // Create: the flat 1.0 config with its task, nested in 0.3.
        let create = object_with(config.clone(), &[("taskId", Value::from(task_id.clone()))]);
        let method = Method::CreateTaskPushNotificationConfig;
        let old = request_to_v03(method, create.clone()).expect("lowers");
        prop_assert!(old.get("pushNotificationConfig").is_some());
        prop_assert_eq!(&request_to_v1(method, old).expect("lifts"), &create);
        // Its answer comes back the same way.
        prop_assert_eq!(&result_to_v1(method, result_to_v03(method, create.clone())), &create);

        // Get, delete and list name the task and the config.
        let by_id = json!({ "taskId": task_id, "id": config_id });
        for method in [
            Method::GetTaskPushNotificationConfig,
            Method::DeleteTaskPushNotificationConfig,
            Method::ListTaskPushNotificationConfigs,
        ] {
            let old = request_to_v03(method, by_id.clone()).expect("lowers");
            prop_assert_eq!(&request_to_v1(method, old).expect("lifts"), &by_id);
        }

        // A list result: configs with their task, and an empty page token.
        let list = json!({ "configs": [create], "nextPageToken": "" });
        let method = Method::ListTaskPushNotificationConfigs;
        prop_assert_eq!(result_to_v1(method, result_to_v03(method, list.clone())), list);
    }
}

#[test]
fn generated_parts_lower_to_every_kind() {
    // The generators must reach every 0.3 part kind, or the properties above
    // would prove less than they say.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut kinds = Map::new();
    for _ in 0..200 {
        let part = part_v1()
            .new_tree(&mut runner)
            .expect("the strategy generates")
            .current();
        let message =
            json!({ "message": { "messageId": "m", "role": "ROLE_USER", "parts": [part] } });
        let old = event_to_v03(message);
        if let Some(kind) = old["parts"][0]["kind"].as_str() {
            kinds.insert(kind.to_owned(), Value::Bool(true));
        }
    }
    let mut found: Vec<&String> = kinds.keys().collect();
    found.sort();
    assert_eq!(found, ["data", "file", "text"]);
}
