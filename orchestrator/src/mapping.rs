//! How node inputs become one A2A message, and how a reply becomes `output`.
//!
//! # Inputs
//! A node's `inputs` are references: a graph input field (`source_code`),
//! another node's output (`analyzer.output`), or a path in it
//! (`router.output.label`). A node that declares none receives its
//! predecessors' outputs, or the whole graph input when it is an entry. The
//! value of a node that has not run (or was skipped) is `null`. A graph
//! input a node names but the run input lacks is an input error before any
//! agent is called.
//!
//! # The message
//! `{"messageId", "role": "ROLE_USER", "parts": […], "metadata": {…}}`:
//! - one input that is a string → a single text part `{"text": …}`;
//! - the whole graph input → a text part when it is a string, else a data part
//!   with the value;
//! - otherwise → one data part `{"data": {"<reference>": value, …}}` in input
//!   order, followed by a text part joining the string-valued inputs with a
//!   blank line (omitted when none is a string).
//!
//! `metadata` carries `convergio.run_id`, `convergio.node_id`,
//! `convergio.graph_id` and `convergio.iteration`. `messageId` is
//! `<run_id>/<node_id>/<iteration>/<attempt>`, stable across a re-send of
//! the same attempt so agents can de-duplicate.
//!
//! # The reply
//! The `SendMessage` result is `{"message": …}` or `{"task": …}` (bare
//! objects and a JSON-RPC `result` envelope are accepted too). A message's
//! parts, or a completed task's artifact parts (its status message when it
//! has no artifacts), become `output`:
//! - no parts → `null`; only text parts → the texts joined with `\n`;
//! - a single data part → its value; a single other part → the part object;
//! - several mixed parts → an array of part values (text as a string, data
//!   as its value, file parts as objects).
//!
//! A failed, rejected or canceled task, an interrupted one (input or auth
//! required), one still working, or anything else is a node error.
//!
//! # Usage
//! Agents report usage in `metadata.usage = {"tokens_in", "tokens_out",
//! "tool_calls"}` on the reply message or task; see [`crate::Usage`].

use convergio_schemas::a2a::{TaskState, REMOTE_TIMING_METADATA, TOOL_CALLS_METADATA};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Builds the A2A message for one node call from its resolved inputs.
pub fn build_message(
    message_id: String,
    metadata: Map<String, Value>,
    whole_input: bool,
    inputs: Vec<(&str, Value)>,
) -> Value {
    let mut parts = Vec::with_capacity(2);
    if whole_input || inputs.len() == 1 {
        if let Some((label, value)) = inputs.into_iter().next() {
            let part = match value {
                Value::String(text) => single("text", Value::String(text)),
                other if whole_input => single("data", other),
                other => {
                    let mut data = Map::with_capacity(1);
                    data.insert(label.to_owned(), other);
                    single("data", Value::Object(data))
                }
            };
            parts.push(part);
        }
    } else if !inputs.is_empty() {
        let mut data = Map::with_capacity(inputs.len());
        let mut text = String::new();
        for (label, value) in inputs {
            if let Value::String(string) = &value {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(string);
            }
            data.insert(label.to_owned(), value);
        }
        parts.push(single("data", Value::Object(data)));
        if !text.is_empty() {
            parts.push(single("text", Value::String(text)));
        }
    }
    let mut message = Map::with_capacity(4);
    message.insert("messageId".to_owned(), Value::String(message_id));
    message.insert("role".to_owned(), Value::String("ROLE_USER".to_owned()));
    message.insert("parts".to_owned(), Value::Array(parts));
    message.insert("metadata".to_owned(), Value::Object(metadata));
    Value::Object(message)
}

/// Appends a data part holding `data` to a message [`build_message`]
/// built (a node's memory hits, `{"memory": {namespace: [hits]}}`).
pub fn push_data_part(message: &mut Value, data: Value) {
    if let Some(parts) = message.get_mut("parts").and_then(Value::as_array_mut) {
        parts.push(single("data", data));
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut part = Map::with_capacity(1);
    part.insert(key.to_owned(), value);
    Value::Object(part)
}

/// Folds an A2A 1.0 event stream (`StreamResponse`s, in order) into the
/// answer a blocking `SendMessage` would have given (issue 18): the direct
/// message, or the task with its last status, its metadata merged update by
/// update and its artifacts put together chunk by chunk (`append` joins the
/// parts of the artifact with the same `artifactId`, otherwise the artifact
/// replaces it).
#[derive(Debug, Default)]
pub struct StreamFold {
    message: Option<Value>,
    task: Option<Map<String, Value>>,
}

// === impl StreamFold ===

impl StreamFold {
    /// An empty fold.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next event; events of an unknown kind are ignored.
    pub fn push(&mut self, event: &Value) {
        if let Some(message) = event.get("message") {
            self.message = Some(message.clone());
        } else if let Some(Value::Object(task)) = event.get("task") {
            self.task = Some(task.clone());
        } else if let Some(Value::Object(update)) = event.get("statusUpdate") {
            let task = self.task_of(update);
            if let Some(status) = update.get("status") {
                task.insert("status".to_owned(), status.clone());
            }
            if let Some(Value::Object(metadata)) = update.get("metadata") {
                let merged = task
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(merged) = merged {
                    merged.extend(metadata.clone());
                }
            }
        } else if let Some(Value::Object(update)) = event.get("artifactUpdate") {
            let append = update.get("append").and_then(Value::as_bool) == Some(true);
            let Some(artifact) = update.get("artifact").cloned() else {
                return;
            };
            let task = self.task_of(update);
            let artifacts = task
                .entry("artifacts")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(artifacts) = artifacts else {
                return;
            };
            let id = artifact.get("artifactId");
            match artifacts
                .iter_mut()
                .find(|known| known.get("artifactId") == id)
            {
                Some(known) if append => {
                    let parts = artifact.get("parts").and_then(Value::as_array);
                    if let (Some(Value::Array(known)), Some(parts)) =
                        (known.get_mut("parts"), parts)
                    {
                        known.extend(parts.iter().cloned());
                    }
                }
                Some(known) => *known = artifact,
                None => artifacts.push(artifact),
            }
        }
    }

    /// The answer so far: `{"message": …}` or `{"task": …}`, or `None`
    /// when no event carried either.
    pub fn finish(self) -> Option<Value> {
        if let Some(message) = self.message {
            return Some(serde_json::json!({ "message": message }));
        }
        self.task
            .map(|task| serde_json::json!({ "task": Value::Object(task) }))
    }

    /// The task an update belongs to, started from the update's ids when
    /// no `task` event came first.
    fn task_of(&mut self, update: &Map<String, Value>) -> &mut Map<String, Value> {
        self.task.get_or_insert_with(|| {
            let mut task = Map::new();
            for (from, to) in [("taskId", "id"), ("contextId", "contextId")] {
                if let Some(value) = update.get(from) {
                    task.insert(to.to_owned(), value.clone());
                }
            }
            task
        })
    }
}

/// Why a reply could not become an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// What was wrong.
    pub message: String,
    /// Whether asking again may help (a task still working).
    pub retryable: bool,
}

/// The reply's message or task object, unwrapped from its envelope.
fn unwrap_response(response: &Value) -> Option<(&Value, bool)> {
    let object = response.as_object()?;
    if let Some(result) = object.get("result") {
        return unwrap_response(result);
    }
    if let Some(message) = object.get("message") {
        return Some((message, false));
    }
    if let Some(task) = object.get("task") {
        return Some((task, true));
    }
    if object.contains_key("parts") {
        return Some((response, false));
    }
    if object.contains_key("status") || object.contains_key("artifacts") {
        return Some((response, true));
    }
    None
}

/// Converts a `SendMessage` result to the node's output.
pub fn reply_output(response: &Value) -> Result<Value, ReplyError> {
    let invalid = |message: &str| ReplyError {
        message: message.to_owned(),
        retryable: false,
    };
    let (object, is_task) = unwrap_response(response)
        .ok_or_else(|| invalid("reply is neither a message nor a task"))?;
    if !is_task {
        let parts = object
            .get("parts")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("message has no parts"))?;
        return Ok(parts_output(parts.iter()));
    }
    let status = object.get("status");
    let state_name = status
        .and_then(|status| status.get("state"))
        .and_then(Value::as_str);
    let state = match state_name {
        None => TaskState::Completed,
        Some(name) => TaskState::parse(name).ok_or_else(|| invalid("task has an unknown state"))?,
    };
    let status_text = || {
        status
            .and_then(|status| status.get("message"))
            .and_then(|message| message.get("parts"))
            .and_then(Value::as_array)
            .map(|parts| parts_output(parts.iter()))
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    match state {
        TaskState::Completed => {
            let artifacts = object.get("artifacts").and_then(Value::as_array);
            match artifacts {
                Some(artifacts) if !artifacts.is_empty() => Ok(parts_output(
                    artifacts
                        .iter()
                        .filter_map(|artifact| artifact.get("parts").and_then(Value::as_array))
                        .flatten(),
                )),
                _ => Ok(status
                    .and_then(|status| status.get("message"))
                    .and_then(|message| message.get("parts"))
                    .and_then(Value::as_array)
                    .map(|parts| parts_output(parts.iter()))
                    .unwrap_or(Value::Null)),
            }
        }
        TaskState::Failed | TaskState::Canceled | TaskState::Rejected => Err(ReplyError {
            message: format!("task ended {}: {}", state.v1_name(), status_text()),
            retryable: false,
        }),
        TaskState::InputRequired | TaskState::AuthRequired => Err(ReplyError {
            message: format!("agent stopped waiting for the client ({})", state.v1_name()),
            retryable: false,
        }),
        TaskState::Submitted | TaskState::Working | TaskState::Unspecified => Err(ReplyError {
            message: format!("task is not finished ({})", state.v1_name()),
            retryable: true,
        }),
    }
}

fn parts_output<'p>(parts: impl Iterator<Item = &'p Value>) -> Value {
    let mut values: Vec<Value> = Vec::new();
    let mut all_text = true;
    for part in parts {
        let value = if let Some(text) = part.get("text").and_then(Value::as_str) {
            Value::String(text.to_owned())
        } else if let Some(data) = part.get("data") {
            all_text = false;
            data.clone()
        } else {
            all_text = false;
            part.clone()
        };
        values.push(value);
    }
    match values.len() {
        0 => Value::Null,
        1 => values.pop().unwrap_or(Value::Null),
        _ if all_text => {
            let texts: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            Value::String(texts.join("\n"))
        }
        _ => Value::Array(values),
    }
}

/// Resources an agent reports using for one call.
///
/// Convention: agents put `"usage": {"tokens_in": n, "tokens_out": n,
/// "tool_calls": n, "cost": x}` in the `metadata` of their reply Message,
/// or of the Task (task metadata wins over status-message metadata).
/// Missing counts are zero; a missing `cost` leaves pricing to the run's
/// price table (model agents report what their provider calls cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Tool invocations.
    pub tool_calls: u64,
    /// The cost the agent reported, in millionths of the price unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micros: Option<u64>,
}

// === impl Usage ===

impl Usage {
    /// Adds `other` into `self`, saturating.
    pub fn add(&mut self, other: Usage) {
        self.tokens_in = self.tokens_in.saturating_add(other.tokens_in);
        self.tokens_out = self.tokens_out.saturating_add(other.tokens_out);
        self.tool_calls = self.tool_calls.saturating_add(other.tool_calls);
        self.cost_micros = match (self.cost_micros, other.cost_micros) {
            (None, None) => None,
            (mine, theirs) => Some(mine.unwrap_or(0).saturating_add(theirs.unwrap_or(0))),
        };
    }

    /// Tokens in and out.
    pub fn tokens(&self) -> u64 {
        self.tokens_in.saturating_add(self.tokens_out)
    }
}

/// What a reply's metadata holds under `key`: the task's (or the message's)
/// own metadata first, then its status message's.
fn reported_metadata<'a>(response: &'a Value, key: &str) -> Option<&'a Value> {
    let (object, _) = unwrap_response(response)?;
    object
        .get("metadata")
        .and_then(|metadata| metadata.get(key))
        .or_else(|| {
            object
                .pointer("/status/message/metadata")
                .and_then(|metadata| metadata.get(key))
        })
}

/// Reads `metadata.usage` from a reply (task metadata first, then the
/// message's, then the task status message's).
pub fn reported_usage(response: &Value) -> Usage {
    let usage = reported_metadata(response, "usage");
    let field = |name: &str| {
        usage
            .and_then(|usage| usage.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    // A cost that is not a finite, non-negative number is ignored.
    let cost_micros = usage
        .and_then(|usage| usage.get("cost"))
        .and_then(Value::as_f64)
        .filter(|cost| cost.is_finite() && *cost >= 0.0)
        .map(|cost| (cost * 1_000_000.0).round().min(u64::MAX as f64) as u64);
    Usage {
        tokens_in: field("tokens_in"),
        tokens_out: field("tokens_out"),
        tool_calls: field("tool_calls"),
        cost_micros,
    }
}

/// What an agent reported about how it answered, besides its usage: the
/// tool calls it made, and (for an agent in another organisation whose
/// policy shares them) the remote side's timing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// The tool calls, in the order made.
    pub tools: Vec<ToolCallReport>,
    /// The remote side's timing of the call.
    pub remote: Option<RemoteTiming>,
}

/// How long another organisation's gateway took to answer a call (from its
/// receiving the call to its answer), as it reported it
/// (`convergio.remote` in the answer's metadata, issue 18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTiming {
    /// The organisation that answered.
    pub org: String,
    /// Its time for the call, agent included.
    pub duration_ms: u64,
}

/// Reads an answer's [`NodeReport`].
pub fn reported(response: &Value) -> NodeReport {
    NodeReport {
        tools: reported_tool_calls(response),
        remote: reported_remote(response),
    }
}

/// Reads the remote side's timing (task metadata, then the message's or
/// the status message's); an organisation name is cut at 200 characters.
fn reported_remote(response: &Value) -> Option<RemoteTiming> {
    let timing = reported_metadata(response, REMOTE_TIMING_METADATA)?;
    let timing: RemoteTiming = serde_json::from_value(timing.clone()).ok()?;
    Some(RemoteTiming {
        org: timing.org.chars().take(MAX_REPORTED_TEXT).collect(),
        duration_ms: timing.duration_ms,
    })
}

/// The most tool calls kept for one node execution: an agent's report is
/// untrusted input and lands in the run's journal.
pub const MAX_REPORTED_TOOL_CALLS: usize = 64;

/// The longest text kept for a reported tool call's names and ids.
const MAX_REPORTED_TEXT: usize = 200;

/// One tool call an agent reports having made for its answer
/// (`convergio.toolCalls` in its task metadata; Convergio's model agents
/// write it). Listed under the node in the run's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallReport {
    /// The tool agent called.
    pub tool: String,
    /// `completed`, `failed`, `refused` or `unknown_tool`.
    pub outcome: String,
    /// The tool agent's task, when it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The request id of the call (the gateway's audit record names it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Wall time of the call.
    #[serde(default)]
    pub duration_ms: u64,
}

/// Reads the tool calls an agent reported (task metadata, then the status
/// message's), keeping well-formed entries only, at most
/// [`MAX_REPORTED_TOOL_CALLS`], texts cut at 200 characters.
pub fn reported_tool_calls(response: &Value) -> Vec<ToolCallReport> {
    let calls = reported_metadata(response, TOOL_CALLS_METADATA).and_then(Value::as_array);
    let cut = |text: String| text.chars().take(MAX_REPORTED_TEXT).collect::<String>();
    calls
        .into_iter()
        .flatten()
        .filter_map(|call| serde_json::from_value::<ToolCallReport>(call.clone()).ok())
        .take(MAX_REPORTED_TOOL_CALLS)
        .map(|call| ToolCallReport {
            tool: cut(call.tool),
            outcome: cut(call.outcome),
            task_id: call.task_id.map(cut),
            request_id: call.request_id.map(cut),
            duration_ms: call.duration_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stream_folds_into_the_answer_a_blocking_call_gives() {
        let events = [
            json!({"task": {"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            json!({"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_WORKING"}}}),
            json!({"artifactUpdate": {"taskId": "t1", "artifact": {"artifactId": "a", "parts": [{"text": "one "}]}}}),
            json!({"artifactUpdate": {"taskId": "t1", "append": true, "artifact": {"artifactId": "a", "parts": [{"text": "two"}]}}}),
            json!({"artifactUpdate": {"taskId": "t1", "artifact": {"artifactId": "b", "parts": [{"data": {"n": 1}}]}}}),
            json!({"artifactUpdate": {"taskId": "t1", "artifact": {"artifactId": "b", "parts": [{"data": {"n": 2}}]}}}),
            json!({"statusUpdate": {"taskId": "t1", "status": {"state": "TASK_STATE_COMPLETED"},
                                    "metadata": {"usage": {"tokens_in": 3, "tokens_out": 4}}}}),
            json!({"somethingNew": {}}),
        ];
        let mut fold = StreamFold::new();
        for event in &events {
            fold.push(event);
        }
        let answer = fold.finish().expect("an answer");
        let task = &answer["task"];
        assert_eq!(task["id"], "t1");
        assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(
            task["artifacts"][0]["parts"],
            json!([{"text": "one "}, {"text": "two"}])
        );
        assert_eq!(task["artifacts"][1]["parts"], json!([{"data": {"n": 2}}]));
        assert_eq!(reported_usage(&answer).tokens(), 7);
        assert_eq!(
            reply_output(&answer).expect("output"),
            json!(["one ", "two", {"n": 2}])
        );

        // Updates without a `task` event start one from their ids; a direct
        // message is the answer; nothing at all is no answer.
        let mut fold = StreamFold::new();
        fold.push(&events[4]);
        assert_eq!(fold.finish().expect("a task")["task"]["id"], "t1");
        let mut fold = StreamFold::new();
        fold.push(&json!({"message": {"parts": [{"text": "hi"}]}}));
        assert_eq!(
            reply_output(&fold.finish().expect("a message")).expect("output"),
            json!("hi")
        );
        assert_eq!(StreamFold::new().finish(), None);
    }

    #[test]
    fn a_remote_timing_is_read_from_task_or_message_metadata() {
        let timing = json!({"org": "b.example", "duration_ms": 12});
        let task = json!({"task": {"metadata": {"convergio.remote": timing}}});
        let message = json!({"message": {"metadata": {"convergio.remote": timing}}});
        for reply in [task, message] {
            let remote = reported(&reply).remote.expect("a timing");
            assert_eq!((remote.org.as_str(), remote.duration_ms), ("b.example", 12));
        }
        let bad = json!({"message": {"metadata": {"convergio.remote": {"org": 1}}}});
        assert_eq!(reported(&bad).remote, None);
    }

    #[test]
    fn reported_tool_calls_are_read_bounded_and_malformed_ones_dropped() {
        let reply = json!({"task": {"metadata": {"convergio.toolCalls": [
            {"tool": "echo", "outcome": "completed", "task_id": "t1", "request_id": "r1", "duration_ms": 4},
            {"tool": 7},
            {"tool": "x".repeat(500), "outcome": "refused"},
        ]}}});
        let calls = reported_tool_calls(&reply);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].task_id.as_deref(), Some("t1"));
        assert_eq!(calls[1].tool.len(), MAX_REPORTED_TEXT);
        assert_eq!(calls[1].duration_ms, 0);
        let many = json!({"task": {"metadata": {"convergio.toolCalls":
            vec![json!({"tool": "t", "outcome": "completed"}); 100]}}});
        assert_eq!(reported_tool_calls(&many).len(), MAX_REPORTED_TOOL_CALLS);
        assert!(reported_tool_calls(&json!({"message": {"parts": []}})).is_empty());
    }

    fn message(whole: bool, inputs: Vec<(&str, Value)>) -> Value {
        build_message("m".to_owned(), Map::new(), whole, inputs)
    }

    #[test]
    fn a_single_text_input_becomes_one_text_part() {
        let built = message(false, vec![("source_code", json!("fn main() {}"))]);
        assert_eq!(built["parts"], json!([{"text": "fn main() {}"}]));
        assert_eq!(built["role"], "ROLE_USER");
        assert_eq!(built["messageId"], "m");
    }

    #[test]
    fn several_inputs_become_a_data_part_keyed_by_reference_plus_text() {
        let built = message(
            false,
            vec![
                ("a.output", json!("one")),
                ("b.output", json!({"n": 2})),
                ("c.output", json!("three")),
            ],
        );
        assert_eq!(
            built["parts"],
            json!([{"data": {"a.output": "one", "b.output": {"n": 2}, "c.output": "three"}}, {"text": "one\n\nthree"}])
        );
    }

    #[test]
    fn a_single_structured_input_is_keyed_and_the_whole_input_is_not() {
        assert_eq!(
            message(false, vec![("a.output", json!(3))])["parts"],
            json!([{"data": {"a.output": 3}}])
        );
        assert_eq!(
            message(true, vec![("input", json!({"x": 1}))])["parts"],
            json!([{"data": {"x": 1}}])
        );
    }

    #[test]
    fn message_reply_text_parts_are_joined() {
        let reply = json!({"message": {"parts": [{"text": "a"}, {"text": "b"}]}});
        assert_eq!(reply_output(&reply), Ok(json!("a\nb")));
    }

    #[test]
    fn single_data_part_becomes_its_value_and_mixed_parts_an_array() {
        assert_eq!(
            reply_output(&json!({"message": {"parts": [{"data": {"k": 1}}]}})),
            Ok(json!({"k": 1}))
        );
        assert_eq!(
            reply_output(&json!({"parts": [{"text": "t"}, {"data": 2}]})),
            Ok(json!(["t", 2]))
        );
    }

    #[test]
    fn completed_task_artifacts_become_output() {
        let reply = json!({"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "a", "parts": [{"text": "x"}]}, {"artifactId": "b", "parts": [{"text": "y"}]}]}});
        assert_eq!(reply_output(&reply), Ok(json!("x\ny")));
    }

    #[test]
    fn failed_interrupted_and_garbage_replies_are_errors() {
        let failed = json!({"task": {"status": {"state": "TASK_STATE_FAILED", "message": {"parts": [{"text": "boom"}]}}}});
        let error = reply_output(&failed).expect_err("failed task");
        assert!(error.message.contains("boom"));
        assert!(
            reply_output(&json!({"task": {"status": {"state": "TASK_STATE_INPUT_REQUIRED"}}}))
                .is_err()
        );
        assert!(
            reply_output(&json!({"task": {"status": {"state": "TASK_STATE_WORKING"}}}))
                .expect_err("working")
                .retryable
        );
        assert!(reply_output(&json!("garbage")).is_err());
        assert!(reply_output(&json!({"message": {"parts": 3}})).is_err());
    }

    #[test]
    fn usage_is_read_from_reply_metadata() {
        let reply = json!({"message": {"parts": [], "metadata": {"usage": {"tokens_in": 10, "tokens_out": 5, "tool_calls": 2}}}});
        assert_eq!(
            reported_usage(&reply),
            Usage {
                tokens_in: 10,
                tokens_out: 5,
                tool_calls: 2,
                cost_micros: None,
            }
        );
        assert_eq!(
            reported_usage(&json!({"task": {"metadata": {"usage": {"tokens_out": 7}}}})).tokens_out,
            7
        );
        assert_eq!(reported_usage(&json!(null)), Usage::default());
    }

    #[test]
    fn a_reported_cost_is_kept_and_summed_and_a_bad_one_ignored() {
        let reply = |cost: Value| json!({"message": {"metadata": {"usage": {"tokens_in": 1, "cost": cost}}}});
        let mut total = reported_usage(&reply(json!(0.0125)));
        assert_eq!(total.cost_micros, Some(12_500));
        total.add(reported_usage(&reply(json!(0.5))));
        assert_eq!(total.cost_micros, Some(512_500));
        total.add(Usage::default());
        assert_eq!(total.cost_micros, Some(512_500));
        for bad in [json!(-1.0), json!("3"), json!(null)] {
            assert_eq!(reported_usage(&reply(bad)).cost_micros, None);
        }
    }
}
