//! Resumable streams (issue 24). The gateway records every event of a
//! task's `SendStreamingMessage` stream as it relays it ([`Recorder`]), in
//! the registry's database (`StreamEventStore`, so every replica sharing it
//! sees them), numbered from 1 per task; each relayed SSE event carries its
//! number as its `id:`. A relay whose caller went away keeps reading the
//! agent to the stream's end, recording, so nothing the agent said is lost.
//!
//! `SubscribeToTask` with `Last-Event-ID: N` (the SSE header, on JSON-RPC
//! and HTTP+JSON; `last-event-id` metadata on gRPC, where the N-th message
//! of a task's first stream is event N) is answered from the record
//! ([`open`]): every event after N, in order, each once, then the events
//! still being recorded (polled) until one ends the stream. Without the
//! header, or for a task with nothing recorded, the call goes to the agent
//! as before (A2A's own resubscription: the current task, then live
//! updates, without ids).
//!
//! Errors are typed: an id that is not a number or is beyond the task's
//! last event is invalid params; an id whose successors were pruned
//! (`retention.stream_events`) says which are no longer kept, as a gap
//! must never pass silently; resuming after the final event gets the
//! terminal-task answer. A stream that failed is recorded with an end
//! marker, so a resumed stream ends with the failure too.
//!
//! This is the gateway's answer to the A2A v1.1 work on stream resumption
//! (a task `generation` and event ordering carried by the protocol): until
//! the protocol carries it, the numbering is the gateway's, per task, and
//! only calls through the gateway can resume.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use convergio_registry::stream_events::{StreamEvent, StreamEventStore};
use convergio_schemas::a2a::TaskState;
use futures_util::Stream;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::GatewayError;

/// The SSE header a reconnecting client sends (gRPC: the same metadata key).
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The key of the marker recorded when a stream ended with an error.
const END_MARKER: &str = "convergioStreamFailed";

/// Events read per query while replaying.
const REPLAY_PAGE: u32 = 256;

/// How often a resumed stream looks for events still being recorded.
const TAIL_POLL: Duration = Duration::from_millis(100);

/// The event id a reconnecting client sent, if any.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, GatewayError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| GatewayError::InvalidParams {
            detail: "Last-Event-ID must be the number of an event of this task's stream".into(),
        })
}

/// The task a 1.0 stream event belongs to.
pub(crate) fn task_id_in(event: &Value) -> Option<&str> {
    if let Some(task) = event.get("task") {
        return task.get("id").and_then(Value::as_str);
    }
    ["message", "statusUpdate", "artifactUpdate"]
        .iter()
        .find_map(|key| event.get(*key)?.get("taskId")?.as_str())
}

/// Whether an event ends a well-formed A2A stream.
pub(crate) fn ends_stream(event: &Value) -> bool {
    if event.get("message").is_some() {
        return true;
    }
    let state = event
        .get("task")
        .and_then(|task| task.get("status"))
        .or_else(|| {
            event
                .get("statusUpdate")
                .and_then(|update| update.get("status"))
        })
        .and_then(|status| status.get("state"))
        .and_then(Value::as_str)
        .and_then(TaskState::parse);
    state.is_some_and(|state| state.is_terminal() || state.is_interrupted())
}

/// Records one relayed stream's events under the task they name.
pub(crate) struct Recorder {
    log: Option<Arc<dyn StreamEventStore>>,
    task_id: Option<String>,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder writing to `log`; `None` records nothing.
    pub(crate) fn new(log: Option<Arc<dyn StreamEventStore>>) -> Self {
        Self { log, task_id: None }
    }

    /// Whether events are being recorded (a task is known and the log
    /// works), so the stream is worth reading after its caller left.
    pub(crate) fn is_recording(&self) -> bool {
        self.log.is_some() && self.task_id.is_some()
    }

    /// Records `event` and returns its id; `None` when it is not recorded
    /// (no log, no task yet, or the log failed: then recording stops, since
    /// ids after a lost event would hide a gap).
    pub(crate) async fn record(&mut self, event: &Value) -> Option<u64> {
        let log = self.log.as_ref()?;
        if self.task_id.is_none() {
            self.task_id = task_id_in(event).map(str::to_owned);
        }
        let task_id = self.task_id.as_deref()?;
        match log.append_event(task_id, event, now()).await {
            Ok(seq) => Some(seq),
            Err(error) => {
                tracing::warn!(task_id, %error, "recording a stream event failed; this stream is no longer resumable");
                self.log = None;
                None
            }
        }
    }

    /// Records that the stream ended with `error`, so a resumed stream ends
    /// the same way instead of waiting for events that never come.
    pub(crate) async fn failed(&mut self, error: &GatewayError) {
        let (Some(log), Some(task_id)) = (&self.log, &self.task_id) else {
            return;
        };
        let marker = json!({ END_MARKER: { "message": error.public_message() } });
        if let Err(error) = log.append_event(task_id, &marker, now()).await {
            tracing::warn!(task_id, %error, "recording the end of a failed stream failed");
        }
    }
}

/// One item of a resumed stream.
pub(crate) enum Replayed {
    /// A recorded event and its id.
    Event {
        /// Its number within the task's events.
        id: u64,
        /// The 1.0 `StreamResponse`.
        event: Value,
    },
    /// The stream ends with this error.
    Failed(GatewayError),
}

/// The events of `task_id` after `after`, then those still recorded, or
/// `None` when nothing was recorded for the task (the caller then asks
/// the agent). `agent` and `idle` name and bound the wait for new events.
pub(crate) async fn open(
    log: Arc<dyn StreamEventStore>,
    task_id: String,
    after: u64,
    agent: String,
    idle: Duration,
) -> Result<Option<impl Stream<Item = Replayed> + Send + 'static>, GatewayError> {
    let first = log
        .events_after(&task_id, after, REPLAY_PAGE)
        .await
        .map_err(|error| GatewayError::internal("reading a task's recorded events", error))?;
    match first.first() {
        Some(oldest) if oldest.seq != after + 1 => {
            return Err(GatewayError::InvalidParams {
                detail: format!(
                    "events {} to {} of task {task_id} are no longer kept; subscribe without \
                     Last-Event-ID for its current state",
                    after + 1,
                    oldest.seq - 1
                ),
            });
        }
        Some(_) => {}
        None => {
            let last = log.last_seq(&task_id).await.map_err(|error| {
                GatewayError::internal("reading a task's recorded events", error)
            })?;
            if last == 0 {
                return Ok(None);
            }
            if after > last {
                return Err(GatewayError::InvalidParams {
                    detail: format!(
                        "Last-Event-ID {after} is beyond task {task_id}'s last event ({last})"
                    ),
                });
            }
            let final_event = log
                .events_after(&task_id, last - 1, 1)
                .await
                .map_err(|error| {
                    GatewayError::internal("reading a task's recorded events", error)
                })?;
            if final_event
                .first()
                .is_some_and(|recorded| ends(&recorded.event))
            {
                return Err(GatewayError::UnsupportedOperation {
                    detail: format!("task {task_id}'s stream has ended; get the task instead"),
                });
            }
        }
    }
    Ok(Some(async_stream::stream! {
        let mut page = first;
        let mut after = after;
        let mut quiet_since = Instant::now();
        loop {
            if !page.is_empty() {
                quiet_since = Instant::now();
            }
            for StreamEvent { seq, event } in page {
                after = seq;
                if let Some(marker) = event.get(END_MARKER) {
                    let message = marker.get("message").and_then(Value::as_str).unwrap_or("");
                    yield Replayed::Failed(GatewayError::UpstreamInvalid {
                        agent: agent.clone(),
                        detail: format!("the recorded stream ended with an error: {message}"),
                    });
                    return;
                }
                let last = ends_stream(&event);
                yield Replayed::Event { id: seq, event };
                if last {
                    return;
                }
            }
            if quiet_since.elapsed() >= idle {
                yield Replayed::Failed(GatewayError::UpstreamTimeout {
                    agent: agent.clone(),
                    detail: format!(
                        "no event of task {task_id} was recorded for {} s",
                        idle.as_secs()
                    ),
                });
                return;
            }
            tokio::time::sleep(TAIL_POLL).await;
            page = match log.events_after(&task_id, after, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    yield Replayed::Failed(GatewayError::internal(
                        "reading a task's recorded events",
                        error,
                    ));
                    return;
                }
            };
        }
    }))
}

/// Whether a recorded event ends the stream (an event or the marker).
fn ends(event: &Value) -> bool {
    event.get(END_MARKER).is_some() || ends_stream(event)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_last_event_id_is_a_number_or_a_typed_error() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).ok(), Some(None));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static(" 7 "));
        assert_eq!(last_event_id(&headers).ok(), Some(Some(7)));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("seven"));
        assert!(matches!(
            last_event_id(&headers),
            Err(GatewayError::InvalidParams { .. })
        ));
    }

    #[test]
    fn events_name_their_task() {
        assert_eq!(task_id_in(&json!({"task": {"id": "t1"}})), Some("t1"));
        assert_eq!(
            task_id_in(&json!({"statusUpdate": {"taskId": "t2"}})),
            Some("t2")
        );
        assert_eq!(task_id_in(&json!({"message": {"messageId": "m"}})), None);
    }
}
