//! A model agent served on loopback (`spawn_logic`) against both fake
//! providers: blocking and streamed answers, the tool loop, budgets,
//! provider trouble, cancel, and conversations continued by `contextId`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use convergio_models::fake::FakeReply;
use convergio_models::{InMemoryConversations, InMemoryMeter, ProviderKind, ToolSpec, Usage};
use serde_json::{json, Value};
use support::*;

fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    Usage {
        input_tokens,
        output_tokens,
    }
}

/// The texts of a provider request's messages, in order, whatever the wire.
fn request_texts(kind: ProviderKind, body: &Value) -> Vec<String> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let mut texts = Vec::new();
    for message in messages {
        match kind {
            ProviderKind::OpenAi => {
                if let Some(text) = message["content"].as_str() {
                    texts.push(text.to_owned());
                }
            }
            ProviderKind::Anthropic => {
                for block in message["content"].as_array().cloned().unwrap_or_default() {
                    if let Some(text) = block["text"].as_str() {
                        texts.push(text.to_owned());
                    }
                    if let Some(text) = block["content"].as_str() {
                        texts.push(text.to_owned());
                    }
                }
            }
        }
    }
    texts
}

#[tokio::test]
async fn answers_a_blocking_message_with_the_providers_usage() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([FakeReply::text("Hello there, friend.", 3, usage(11, 5))]);
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let task = send(&agent.base_url, "Say hello", None).await;
        assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{kind}: {task}");
        assert_eq!(
            task["artifacts"][0]["parts"],
            json!([{"text": "Hello there, friend."}]),
            "{kind}: the stored artifact is the whole answer"
        );
        assert_eq!(
            task["metadata"]["usage"],
            json!({"tokens_in": 11, "tokens_out": 5, "tool_calls": 0, "cost": 0.0})
        );
        assert_eq!(task["metadata"]["model"], "fake-model");
        assert_eq!(task["metadata"]["provider"], kind.name());
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(presented_key(kind, &requests[0]).as_deref(), Some(KEY));
        assert_eq!(requests[0].body["max_tokens"], 1024);
        assert_eq!(requests[0].body["stream"], true);
        let system = match kind {
            ProviderKind::OpenAi => requests[0].body["messages"][0]["content"].clone(),
            ProviderKind::Anthropic => requests[0].body["system"].clone(),
        };
        assert_eq!(system, "You are a helpful test assistant.");
        if kind == ProviderKind::Anthropic {
            assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
        } else {
            assert_eq!(
                requests[0].body["stream_options"],
                json!({"include_usage": true})
            );
        }
    }
}

#[tokio::test]
async fn streams_each_chunk_as_its_own_artifact_update() {
    for kind in KINDS {
        let fake = fake(kind).await;
        let chunks: Vec<String> = ["One ", "two ", "three ", "four ", "five."]
            .map(str::to_owned)
            .to_vec();
        fake.push([FakeReply::Text {
            chunks: chunks.clone(),
            usage: usage(4, 5),
        }]);
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let events = send_streaming(&agent.base_url, "Count to five").await;
        let updates: Vec<&Value> = events
            .iter()
            .filter_map(|event| event.get("artifactUpdate"))
            .collect();
        let streamed: Vec<String> = updates
            .iter()
            .filter(|update| update.get("lastChunk").is_none())
            .map(|update| {
                update["artifact"]["parts"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(streamed, chunks, "{kind}: one artifact update per chunk");
        assert!(
            updates[0].get("append").is_none(),
            "the first chunk opens the artifact"
        );
        assert!(updates[1..].iter().all(|update| {
            update["artifact"]["artifactId"] == updates[0]["artifact"]["artifactId"]
        }));
        let last = updates.last().expect("a last chunk");
        assert_eq!(last["lastChunk"], true);
        assert_eq!(
            last["artifact"]["parts"],
            json!([{"text": "One two three four five."}])
        );
        let final_status = events
            .iter()
            .rev()
            .find_map(|event| event.get("statusUpdate"))
            .expect("a final status");
        assert_eq!(final_status["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(final_status["metadata"]["usage"]["tokens_out"], 5);
    }
}

#[tokio::test]
async fn calls_a_tool_agent_and_answers_with_its_result() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([
            FakeReply::tool_call("call_1", "weather", json!({"text": "Paris"}), usage(20, 8)),
            FakeReply::text("It is sunny in Paris.", 2, usage(40, 6)),
        ]);
        let tools = Arc::new(ScriptedTools::answering("sunny, 21 C"));
        let mut config = config(&fake, kind);
        config.tools = vec![ToolSpec {
            name: "weather".into(),
            description: "Current weather for a city".into(),
            input_schema: ToolSpec::agent_input_schema(),
        }];
        let parts = Parts {
            tools: tools.clone(),
            ..Parts::default()
        };
        let agent = serve(config, parts).await;
        let task = send(&agent.base_url, "Weather in Paris?", None).await;
        assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{kind}: {task}");
        assert_eq!(
            task["artifacts"][0]["parts"][0]["text"],
            "It is sunny in Paris."
        );
        assert_eq!(
            task["metadata"]["usage"],
            json!({"tokens_in": 60, "tokens_out": 14, "tool_calls": 1, "cost": 0.0})
        );
        let invocations = tools.invocations();
        assert_eq!(invocations.len(), 1);
        assert_eq!(invocations[0].tool, "weather");
        assert_eq!(invocations[0].agent, "assistant");
        assert_eq!(invocations[0].message["parts"], json!([{"text": "Paris"}]));
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let tool_name = match kind {
            ProviderKind::OpenAi => &requests[0].body["tools"][0]["function"]["name"],
            ProviderKind::Anthropic => &requests[0].body["tools"][0]["name"],
        };
        assert_eq!(tool_name, "weather");
        let second = &requests[1].body["messages"];
        match kind {
            ProviderKind::OpenAi => {
                let last = second.as_array().and_then(|m| m.last()).expect("messages");
                assert_eq!(last["role"], "tool");
                assert_eq!(last["tool_call_id"], "call_1");
                assert_eq!(last["content"], "sunny, 21 C");
            }
            ProviderKind::Anthropic => {
                let last = second.as_array().and_then(|m| m.last()).expect("messages");
                assert_eq!(last["role"], "user");
                assert_eq!(last["content"][0]["type"], "tool_result");
                assert_eq!(last["content"][0]["tool_use_id"], "call_1");
                assert_eq!(last["content"][0]["content"], "sunny, 21 C");
            }
        }
    }
}

#[tokio::test]
async fn a_refused_tool_call_reaches_the_model_as_an_error_result() {
    let kind = ProviderKind::Anthropic;
    let fake = fake(kind).await;
    fake.push([
        FakeReply::tool_call("toolu_1", "weather", json!({"text": "Rome"}), usage(5, 5)),
        FakeReply::text("I may not check the weather.", 1, usage(5, 5)),
    ]);
    let mut config = config(&fake, kind);
    config.tools = vec![ToolSpec::from_card(
        &json!({"name": "weather", "description": "Weather"}),
    )];
    let tools = Arc::new(ScriptedTools {
        refuse: true,
        ..ScriptedTools::default()
    });
    let parts = Parts {
        tools,
        ..Parts::default()
    };
    let agent = serve(config, parts).await;
    let task = send(&agent.base_url, "Weather in Rome?", None).await;
    assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{task}");
    let requests = fake.requests();
    let result = &requests[1].body["messages"][2]["content"][0];
    assert_eq!(result["is_error"], true);
    assert!(
        result["content"].as_str().unwrap_or("").contains("refused"),
        "{result}"
    );
}

#[tokio::test]
async fn stops_a_model_that_keeps_calling_tools() {
    let kind = ProviderKind::OpenAi;
    let fake = fake(kind).await;
    fake.set_fallback(FakeReply::tool_call(
        "call_n",
        "weather",
        json!({"text": "x"}),
        usage(1, 1),
    ));
    let mut config = config(&fake, kind);
    config.max_tool_calls = 2;
    config.tools = vec![ToolSpec::from_card(
        &json!({"name": "weather", "description": "Weather"}),
    )];
    let agent = serve(config, Parts::default()).await;
    let task = send(&agent.base_url, "Loop", None).await;
    assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
    assert!(
        status_text(&task).contains("more than 2 tool calls"),
        "{task}"
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(task["metadata"]["usage"]["tool_calls"], 2);
}

#[tokio::test]
async fn caps_max_tokens_at_the_budget_and_refuses_before_the_call_when_spent() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([
            FakeReply::text("First answer.", 1, usage(60, 30)),
            FakeReply::text("Second answer.", 1, usage(5, 5)),
        ]);
        let meter = Arc::new(InMemoryMeter::default().with_budget("acme", 100));
        let parts = Parts {
            meter: meter.clone(),
            ..Parts::default()
        };
        let agent = serve(config(&fake, kind), parts).await;
        let first = send(&agent.base_url, "One", None).await;
        assert_eq!(state(&first), "TASK_STATE_COMPLETED", "{first}");
        let second = send(&agent.base_url, "Two", None).await;
        assert_eq!(state(&second), "TASK_STATE_COMPLETED", "{second}");
        let third = send(&agent.base_url, "Three", None).await;
        assert_eq!(state(&third), "TASK_STATE_FAILED", "{kind}: {third}");
        assert!(status_text(&third).contains("budget"), "{third}");
        let requests = fake.requests();
        assert_eq!(
            requests.len(),
            2,
            "{kind}: the third call never reached the provider"
        );
        assert_eq!(requests[0].body["max_tokens"], 100);
        assert_eq!(requests[1].body["max_tokens"], 10);
        let records = meter.records();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].usage, usage(60, 30));
        assert_eq!(records[0].provider, kind);
        assert_eq!(records[0].model, "fake-model");
    }
}

/// The caller's cap in `convergio.maxTokens` (what a graph run's budget
/// has left) bounds the provider call below the agent's own `max_tokens`,
/// and at 0 the agent refuses before calling its provider.
#[tokio::test]
async fn the_callers_token_cap_bounds_the_call_and_zero_refuses_it() {
    for kind in KINDS {
        let fake = fake(kind).await;
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let capped = |text: &str, cap: u64| {
            let mut message = user_message(text, None);
            message["metadata"] = json!({"convergio.maxTokens": cap});
            json!({ "message": message })
        };
        let answer = rpc(&agent.base_url, "SendMessage", capped("Short", 7)).await;
        assert_eq!(
            state(&answer["result"]["task"]),
            "TASK_STATE_COMPLETED",
            "{answer}"
        );
        let refused = rpc(&agent.base_url, "SendMessage", capped("Nothing left", 0)).await;
        let task = &refused["result"]["task"];
        assert_eq!(state(task), "TASK_STATE_FAILED", "{kind}: {refused}");
        assert!(status_text(task).contains("budget"), "{refused}");
        let requests = fake.requests();
        assert_eq!(
            requests.len(),
            1,
            "{kind}: a spent cap never reaches the provider"
        );
        assert_eq!(requests[0].body["max_tokens"], 7);
    }
}

#[tokio::test]
async fn a_refused_key_fails_the_task_naming_the_reference_never_the_key() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.require_key("sk-the-right-one");
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let task = send(&agent.base_url, "Hello", None).await;
        assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
        let message = status_text(&task);
        assert!(message.contains(KEY_REFERENCE), "{message}");
        assert!(message.contains("401"), "{message}");
        let everything = rpc(&agent.base_url, "GetTask", json!({"id": task["id"]})).await;
        assert!(
            !everything.to_string().contains(KEY),
            "the key leaked: {everything}"
        );
        assert_eq!(fake.requests().len(), 1, "a refused key is not retried");
    }
}

#[tokio::test]
async fn a_cut_or_malformed_stream_fails_the_task() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([
            FakeReply::Cut {
                chunks: vec!["Half an ans".into()],
            },
            FakeReply::Malformed,
        ]);
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let cut = send(&agent.base_url, "Hello", None).await;
        assert_eq!(state(&cut), "TASK_STATE_FAILED", "{cut}");
        assert!(status_text(&cut).contains("cut before its end"), "{cut}");
        let malformed = send(&agent.base_url, "Hello", None).await;
        assert_eq!(state(&malformed), "TASK_STATE_FAILED", "{malformed}");
        assert!(status_text(&malformed).contains("malformed"), "{malformed}");
    }
}

#[tokio::test]
async fn a_silent_provider_fails_the_task_at_the_idle_timeout() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([FakeReply::Hang {
            chunks: vec!["Thinking".into()],
        }]);
        let mut settings = settings();
        settings.idle_timeout = Duration::from_millis(300);
        let parts = Parts {
            settings,
            ..Parts::default()
        };
        let agent = serve(config(&fake, kind), parts).await;
        let task = send(&agent.base_url, "Hello", None).await;
        assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
        assert!(
            status_text(&task).contains("sent nothing for 0.3 s"),
            "{task}"
        );
    }
}

#[tokio::test]
async fn a_turn_longer_than_the_agent_timeout_fails() {
    let kind = ProviderKind::OpenAi;
    let fake = fake(kind).await;
    fake.push([FakeReply::Hang { chunks: Vec::new() }]);
    let mut config = config(&fake, kind);
    config.timeout = Duration::from_millis(300);
    let agent = serve(config, Parts::default()).await;
    let task = send(&agent.base_url, "Hello", None).await;
    assert_eq!(state(&task), "TASK_STATE_FAILED", "{task}");
    assert!(
        status_text(&task).contains("took longer than 0.3 s"),
        "{task}"
    );
    tokio::time::timeout(TIMEOUT, fake.wait_for_disconnects(1))
        .await
        .expect("the provider request was dropped");
}

#[tokio::test]
async fn cancel_aborts_the_provider_request() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([FakeReply::Hang {
            chunks: vec!["Let me think".into()],
        }]);
        let agent = serve(config(&fake, kind), Parts::default()).await;
        let response = rpc(
            &agent.base_url,
            "SendMessage",
            json!({"message": user_message("Think hard", None), "configuration": {"returnImmediately": true}}),
        )
        .await;
        let task_id = response["result"]["task"]["id"].clone();
        wait_for_requests(&fake, 1).await;
        let canceled = rpc(&agent.base_url, "CancelTask", json!({"id": task_id})).await;
        assert_eq!(
            canceled["result"]["status"]["state"], "TASK_STATE_CANCELED",
            "{canceled}"
        );
        tokio::time::timeout(TIMEOUT, fake.wait_for_disconnects(1))
            .await
            .expect("the provider saw the connection close");
    }
}

#[tokio::test]
async fn continues_a_conversation_by_context_id_on_another_instance() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([
            FakeReply::text("Nice to meet you, Ada.", 2, usage(10, 6)),
            FakeReply::text("Your name is Ada.", 2, usage(20, 5)),
        ]);
        let conversations = Arc::new(InMemoryConversations::default());
        let first = serve(
            config(&fake, kind),
            Parts {
                conversations: conversations.clone(),
                ..Parts::default()
            },
        )
        .await;
        let second = serve(
            config(&fake, kind),
            Parts {
                conversations: conversations.clone(),
                ..Parts::default()
            },
        )
        .await;
        let context_id = format!("ctx-{}", uuid::Uuid::new_v4());
        let one = send(&first.base_url, "My name is Ada.", Some(&context_id)).await;
        assert_eq!(state(&one), "TASK_STATE_COMPLETED", "{one}");
        let two = send(&second.base_url, "What is my name?", Some(&context_id)).await;
        assert_eq!(state(&two), "TASK_STATE_COMPLETED", "{two}");
        assert_eq!(two["contextId"], context_id.as_str());
        let requests = fake.requests();
        let mut expected = match kind {
            ProviderKind::OpenAi => vec!["You are a helpful test assistant.".to_owned()],
            ProviderKind::Anthropic => Vec::new(),
        };
        expected.extend(
            [
                "My name is Ada.",
                "Nice to meet you, Ada.",
                "What is my name?",
            ]
            .map(str::to_owned),
        );
        assert_eq!(
            request_texts(kind, &requests[1].body),
            expected,
            "{kind}: the second replica sent the whole conversation"
        );
        let other = send(&second.base_url, "Who am I?", None).await;
        assert_eq!(state(&other), "TASK_STATE_COMPLETED");
        let fresh = request_texts(kind, &fake.requests()[2].body);
        assert!(!fresh.iter().any(|text| text.contains("Ada")), "{fresh:?}");
    }
}

#[tokio::test]
async fn an_output_schema_answer_is_a_validated_data_part() {
    let kind = ProviderKind::OpenAi;
    let fake = fake(kind).await;
    fake.push([
        FakeReply::text("{\"bullets\": [\"a\", \"b\"]}", 3, usage(9, 9)),
        FakeReply::text("Here are your bullets: a, b", 1, usage(9, 9)),
    ]);
    let mut config = config(&fake, kind);
    config.output_schema = Some(json!({
        "type": "object",
        "required": ["bullets"],
        "properties": {"bullets": {"type": "array", "items": {"type": "string"}}}
    }));
    let agent = serve(config, Parts::default()).await;
    let good = send(&agent.base_url, "Summarise", None).await;
    assert_eq!(state(&good), "TASK_STATE_COMPLETED", "{good}");
    assert_eq!(
        good["artifacts"][0]["parts"],
        json!([{"data": {"bullets": ["a", "b"]}}])
    );
    let requests = fake.requests();
    let request = &requests[0].body;
    assert_eq!(request["response_format"]["type"], "json_schema");
    assert!(request["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .contains("JSON Schema"));
    let bad = send(&agent.base_url, "Summarise", None).await;
    assert_eq!(state(&bad), "TASK_STATE_FAILED", "{bad}");
    assert!(
        status_text(&bad).contains("does not match the output schema"),
        "{bad}"
    );
}

#[tokio::test]
async fn earlier_turns_are_trimmed_to_the_token_window_oldest_first() {
    use convergio_models::window::{TokenCounter, MESSAGE_OVERHEAD};
    for kind in KINDS {
        let fake = fake(kind).await;
        let answers = ["First answer.", "Second answer.", "Third answer."];
        fake.push(answers.map(|answer| FakeReply::text(answer, 1, usage(5, 3))));
        // The window holds exactly the last earlier turn (question and
        // answer) of the model's encoding, not the one before.
        let counter = TokenCounter::for_model(kind, "fake-model");
        let window = counter.text("Second question?")
            + counter.text("Second answer.")
            + 2 * MESSAGE_OVERHEAD;
        let mut config = config(&fake, kind);
        config.history_max_tokens = Some(window as u32);
        let agent = serve(config, Parts::default()).await;
        let context_id = format!("ctx-{}", uuid::Uuid::new_v4());
        for question in ["First question?", "Second question?", "Third question?"] {
            let answer = send(&agent.base_url, question, Some(&context_id)).await;
            assert_eq!(state(&answer), "TASK_STATE_COMPLETED", "{answer}");
        }
        let requests = fake.requests();
        let texts = request_texts(kind, &requests[1].body);
        assert!(
            texts.contains(&"First answer.".to_owned()),
            "{kind}: {texts:?}"
        );
        let texts = request_texts(kind, &requests[2].body);
        assert!(
            !texts.iter().any(|text| text.starts_with("First")),
            "{kind}: the oldest turn left the window: {texts:?}"
        );
        for kept in ["Second question?", "Second answer.", "Third question?"] {
            assert!(
                texts.contains(&kept.to_owned()),
                "{kind}: {kept} in {texts:?}"
            );
        }
    }
}

/// Issue 20: what falls out of the window is summarised by the agent the
/// declaration names, asked as the model agent through its tool caller;
/// the summary joins the system prompt. A refused summary only drops the
/// turns, as before.
#[tokio::test]
async fn turns_falling_out_of_the_window_are_summarised_by_the_named_agent() {
    use convergio_models::window::{TokenCounter, MESSAGE_OVERHEAD};
    for kind in KINDS {
        for refused in [false, true] {
            let fake = fake(kind).await;
            let answers = ["First answer.", "Second answer.", "Third answer."];
            fake.push(answers.map(|answer| FakeReply::text(answer, 1, usage(5, 3))));
            let counter = TokenCounter::for_model(kind, "fake-model");
            let window = counter.text("Second question?")
                + counter.text("Second answer.")
                + 2 * MESSAGE_OVERHEAD;
            let mut config = config(&fake, kind);
            config.history_max_tokens = Some(window as u32);
            config.history_summary_agent = Some("summariser".into());
            let tools = Arc::new(ScriptedTools {
                refuse: refused,
                ..ScriptedTools::answering("The user first asked about France.")
            });
            let parts = Parts {
                tools: tools.clone(),
                ..Parts::default()
            };
            let agent = serve(config, parts).await;
            let context_id = format!("ctx-{}", uuid::Uuid::new_v4());
            for question in ["First question?", "Second question?", "Third question?"] {
                let answer = send(&agent.base_url, question, Some(&context_id)).await;
                assert_eq!(state(&answer), "TASK_STATE_COMPLETED", "{answer}");
            }
            // Only the third turn dropped anything: one summary, of the
            // first turn, asked as the model agent.
            let invocations = tools.invocations();
            assert_eq!(invocations.len(), 1, "{kind}: {invocations:?}");
            assert_eq!(invocations[0].tool, "summariser");
            assert_eq!(invocations[0].agent, "assistant");
            let asked = invocations[0].message["parts"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(
                asked.ends_with("user: First question?\nassistant: First answer."),
                "{kind}: {asked}"
            );
            let requests = fake.requests();
            let system = match kind {
                ProviderKind::OpenAi => requests[2].body["messages"][0]["content"].clone(),
                ProviderKind::Anthropic => requests[2].body["system"].clone(),
            };
            let system = system.as_str().unwrap_or_default();
            let summarised = system.contains(
                "Summary of the earlier conversation:\nThe user first asked about France.",
            );
            assert_eq!(summarised, !refused, "{kind}: {system}");
            let texts = request_texts(kind, &requests[2].body);
            assert!(
                !texts.iter().any(|text| text.starts_with("First")),
                "{kind}: {texts:?}"
            );
        }
    }
}

/// Memory for the recall test: `notes` holds one text, `closed` is
/// refused, as policy refuses another agent's namespace.
#[derive(Default)]
struct ScriptedRecall {
    queries: std::sync::Mutex<Vec<convergio_models::RecallQuery>>,
}

#[async_trait::async_trait]
impl convergio_models::Recall for ScriptedRecall {
    async fn search(
        &self,
        query: convergio_models::RecallQuery,
    ) -> Result<Vec<String>, convergio_models::RecallError> {
        self.queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(query.clone());
        match query.namespace.as_str() {
            "notes" => Ok(vec!["the kitten sleeps on the sofa".to_owned()]),
            _ => Err(convergio_models::RecallError::Refused {
                namespace: query.namespace,
                reason: "forbidden: search_memory on memory".to_owned(),
            }),
        }
    }
}

#[tokio::test]
async fn recalled_memory_joins_the_system_prompt_and_a_refused_search_is_only_reported() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([FakeReply::text("On the sofa.", 1, usage(9, 3))]);
        let mut config = config(&fake, kind);
        config.memory_search = vec![
            convergio_models::RecallSearch {
                namespace: "notes".into(),
                top_k: 3,
            },
            convergio_models::RecallSearch {
                namespace: "closed".into(),
                top_k: 3,
            },
        ];
        let recall = Arc::new(ScriptedRecall::default());
        let parts = Parts {
            recall: recall.clone(),
            ..Parts::default()
        };
        let agent = serve(config, parts).await;
        let task = send(&agent.base_url, "Where does the kitten sleep?", None).await;
        assert_eq!(state(&task), "TASK_STATE_COMPLETED", "{kind}: {task}");
        let requests = fake.requests();
        let system = match kind {
            ProviderKind::OpenAi => requests[0].body["messages"][0]["content"].clone(),
            ProviderKind::Anthropic => requests[0].body["system"].clone(),
        };
        let system = system.as_str().unwrap_or_default().to_owned();
        assert!(
            system.starts_with("You are a helpful test assistant.\n\nRelevant memory:\n- [notes] the kitten sleeps on the sofa"),
            "{kind}: {system}"
        );
        assert!(!system.contains("closed"), "{kind}: {system}");
        assert_eq!(
            task["metadata"]["memory"],
            json!([{"namespace": "notes", "hits": 1},
                   {"namespace": "closed", "hits": 0,
                    "error": "searching memory closed was refused: forbidden: search_memory on memory"}]),
            "{kind}"
        );
        let queries = recall
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].agent, "assistant");
        assert_eq!(queries[0].org, "acme");
        assert_eq!(queries[0].query, "Where does the kitten sleep?");
        assert_eq!(queries[0].top_k, 3);
    }
}
