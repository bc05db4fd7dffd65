//! The in-memory task store and the [`TaskContext`] an agent's logic uses to
//! report progress.
//!
//! **Invariant:** every mutation of a task and the broadcast of the event that
//! describes it happen under the one store lock, and a subscriber takes its
//! snapshot and its broadcast receiver under the same lock. So a subscriber's
//! stream is "snapshot, then every later event, in order", and two
//! subscribers see the same sequence after their snapshots.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use convergio_schemas::a2a::{A2aError, TaskState};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch};

use crate::protocol::ProtocolError;
use crate::AgentsError;

/// Events buffered per task for slow subscribers before they lag out.
const EVENT_BUFFER: usize = 256;

/// Tasks kept in memory. Past this, the oldest terminal tasks are evicted
/// (open tasks never are), so a long benchmark run stays bounded.
pub const MAX_TASKS: usize = 10_000;

/// The in-memory store of every task an agent server has created.
pub(crate) struct TaskStore {
    inner: Mutex<StoreInner>,
    max_tasks: usize,
}

impl Default for TaskStore {
    fn default() -> Self {
        Self::with_max_tasks(MAX_TASKS)
    }
}

#[derive(Default)]
struct StoreInner {
    tasks: HashMap<String, TaskRecord>,
    /// Task ids, oldest first, for eviction.
    order: VecDeque<String>,
    /// Monotonic update counter: orders `ListTasks` and backs its cursor.
    sequence: u64,
}

struct TaskRecord {
    id: String,
    context_id: String,
    state: TaskState,
    status: Value,
    timestamp: DateTime<Utc>,
    history: Vec<Value>,
    artifacts: Vec<Value>,
    metadata: Map<String, Value>,
    updated: u64,
    /// Dropped once the task is terminal, which ends every subscriber's
    /// stream after the final event and frees the event buffer.
    events: Option<broadcast::Sender<Value>>,
    state_watch: watch::Sender<TaskState>,
    cancel: watch::Sender<bool>,
}

/// What a caller gets when a task is created or resumed: a snapshot, the
/// event stream from that point on, and a watch on its state.
pub(crate) struct Started {
    /// The task as it was when the caller attached.
    pub snapshot: Value,
    /// Every later event, as a 1.0 `StreamResponse`.
    pub events: broadcast::Receiver<Value>,
    /// The task's state.
    pub state: watch::Receiver<TaskState>,
    /// The context handed to the agent's logic.
    pub context: TaskContext,
}

/// Filters and paging of `ListTasks`, already validated.
pub(crate) struct ListQuery {
    pub context_id: Option<String>,
    pub state: Option<TaskState>,
    pub page_size: usize,
    pub page_token: Option<u64>,
    pub history_length: Option<usize>,
    pub status_after: Option<DateTime<Utc>>,
    pub include_artifacts: bool,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn timestamp_text(timestamp: DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn status_json(state: TaskState, message: Option<&Value>, timestamp: DateTime<Utc>) -> Value {
    let mut status = json!({"state": state.v1_name(), "timestamp": timestamp_text(timestamp)});
    if let Some(message) = message {
        status["message"] = message.clone();
    }
    status
}

// === impl TaskRecord ===

impl TaskRecord {
    fn to_json(&self, history_length: Option<usize>, include_artifacts: bool) -> Value {
        let mut task = json!({"id": self.id, "contextId": self.context_id, "status": self.status});
        if include_artifacts && !self.artifacts.is_empty() {
            task["artifacts"] = Value::Array(self.artifacts.clone());
        }
        let keep = history_length.unwrap_or(usize::MAX).min(self.history.len());
        if keep > 0 {
            task["history"] = Value::Array(self.history[self.history.len() - keep..].to_vec());
        }
        if !self.metadata.is_empty() {
            task["metadata"] = Value::Object(self.metadata.clone());
        }
        task
    }

    fn set_status(&mut self, state: TaskState, message: Option<Value>, sequence: u64) {
        let timestamp = now();
        self.state = state;
        self.timestamp = timestamp;
        self.status = status_json(state, message.as_ref(), timestamp);
        self.updated = sequence;
        if let Some(message) = message {
            self.history.push(message);
        }
        let mut event =
            json!({"taskId": self.id, "contextId": self.context_id, "status": self.status});
        if !self.metadata.is_empty() {
            event["metadata"] = Value::Object(self.metadata.clone());
        }
        if let Some(events) = &self.events {
            // A send error only means nobody is listening right now.
            let _ = events.send(json!({ "statusUpdate": event }));
        }
        if state.is_terminal() {
            self.events = None;
        }
        self.state_watch.send_replace(state);
    }
}

// === impl StoreInner ===

impl StoreInner {
    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Evicts the oldest terminal tasks while over `max_tasks`. Open
    /// tasks go back to the end of the queue; each id is looked at most
    /// once per call, so this ends even if every task is open.
    fn evict(&mut self, max_tasks: usize) {
        let mut budget = self.order.len();
        while self.tasks.len() > max_tasks && budget > 0 {
            budget -= 1;
            let Some(id) = self.order.pop_front() else {
                break;
            };
            match self.tasks.get(&id) {
                Some(record) if record.state.is_terminal() => {
                    self.tasks.remove(&id);
                }
                Some(_) => self.order.push_back(id),
                None => {}
            }
        }
    }
}

// === impl TaskStore ===

impl TaskStore {
    /// A store that keeps at most `max_tasks` tasks (open ones always stay).
    pub fn with_max_tasks(max_tasks: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_tasks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        // A panic while holding the lock cannot leave a record half-written
        // in a way later readers would misread, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a SUBMITTED task whose history is `message` (with its
    /// `taskId`/`contextId` filled in).
    pub fn create(self: &Arc<Self>, context_id: &str, mut message: Value) -> Started {
        let id = uuid::Uuid::new_v4().to_string();
        message["taskId"] = json!(id);
        message["contextId"] = json!(context_id);
        let timestamp = now();
        let (events, receiver) = broadcast::channel(EVENT_BUFFER);
        let (state_watch, state) = watch::channel(TaskState::Submitted);
        let (cancel, cancel_receiver) = watch::channel(false);
        let mut inner = self.lock();
        let updated = inner.next_sequence();
        let record = TaskRecord {
            id: id.clone(),
            context_id: context_id.to_owned(),
            state: TaskState::Submitted,
            status: status_json(TaskState::Submitted, None, timestamp),
            timestamp,
            history: vec![message],
            artifacts: Vec::new(),
            metadata: Map::new(),
            updated,
            events: Some(events),
            state_watch,
            cancel,
        };
        let snapshot = record.to_json(None, true);
        inner.tasks.insert(id.clone(), record);
        inner.order.push_back(id.clone());
        inner.evict(self.max_tasks);
        Started {
            snapshot,
            events: receiver,
            state,
            context: TaskContext {
                store: Arc::clone(self),
                task_id: id,
                context_id: context_id.to_owned(),
                cancel: cancel_receiver,
            },
        }
    }

    /// Resumes an interrupted task with a follow-up message.
    ///
    /// Unknown task → TaskNotFound; terminal → UnsupportedOperation; a task
    /// still running → UnsupportedOperation (this server runs one turn at a
    /// time); a `contextId` that differs from the task's → InvalidParams.
    pub fn resume(
        self: &Arc<Self>,
        task_id: &str,
        context_id: Option<&str>,
        mut message: Value,
    ) -> Result<Started, ProtocolError> {
        let mut inner = self.lock();
        let sequence = inner.next_sequence();
        let record = inner
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| ProtocolError::task_not_found(task_id))?;
        if record.state.is_terminal() {
            return Err(ProtocolError::a2a_with(
                A2aError::UnsupportedOperation,
                format!(
                    "Task {task_id} is in terminal state {}",
                    record.state.v1_name()
                ),
            ));
        }
        if !record.state.is_interrupted() {
            return Err(ProtocolError::a2a_with(
                A2aError::UnsupportedOperation,
                format!("Task {task_id} is still running; wait for it to finish or ask for input"),
            ));
        }
        if let Some(context_id) = context_id {
            if context_id != record.context_id {
                return Err(ProtocolError::invalid(
                    "message.contextId",
                    format!("does not match the context of task {task_id}"),
                ));
            }
        }
        message["taskId"] = json!(record.id);
        message["contextId"] = json!(record.context_id);
        record.history.push(message);
        // An interrupted task is not terminal, so it still has its sender.
        let Some(receiver) = record.events.as_ref().map(broadcast::Sender::subscribe) else {
            return Err(ProtocolError::task_not_found(task_id));
        };
        record.set_status(TaskState::Submitted, None, sequence);
        let snapshot = record.to_json(None, true);
        Ok(Started {
            snapshot,
            events: receiver,
            state: record.state_watch.subscribe(),
            context: TaskContext {
                store: Arc::clone(self),
                task_id: record.id.clone(),
                context_id: record.context_id.clone(),
                cancel: record.cancel.subscribe(),
            },
        })
    }

    /// The task as JSON with at most `history_length` history messages.
    pub fn get(
        &self,
        task_id: &str,
        history_length: Option<usize>,
    ) -> Result<Value, ProtocolError> {
        let inner = self.lock();
        let record = inner
            .tasks
            .get(task_id)
            .ok_or_else(|| ProtocolError::task_not_found(task_id))?;
        Ok(record.to_json(history_length, true))
    }

    /// Cancels a non-terminal task: its state becomes CANCELED at once and
    /// the logic is told to stop.
    pub fn cancel(&self, task_id: &str) -> Result<Value, ProtocolError> {
        let mut inner = self.lock();
        let sequence = inner.next_sequence();
        let record = inner
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| ProtocolError::task_not_found(task_id))?;
        if record.state.is_terminal() {
            return Err(ProtocolError::a2a_with(
                A2aError::TaskNotCancelable,
                format!(
                    "Task {task_id} is in terminal state {}",
                    record.state.v1_name()
                ),
            ));
        }
        record.set_status(TaskState::Canceled, None, sequence);
        record.cancel.send_replace(true);
        Ok(record.to_json(None, true))
    }

    /// Cancels every open task (server shutdown), which closes their streams.
    pub fn cancel_all(&self) {
        let mut inner = self.lock();
        let open: Vec<String> = inner
            .tasks
            .values()
            .filter(|record| !record.state.is_terminal())
            .map(|record| record.id.clone())
            .collect();
        for id in open {
            let sequence = inner.next_sequence();
            if let Some(record) = inner.tasks.get_mut(&id) {
                record.set_status(TaskState::Canceled, None, sequence);
                record.cancel.send_replace(true);
            }
        }
    }

    /// Attaches to a task's stream. Unknown → TaskNotFound; terminal →
    /// UnsupportedOperation. The boolean says the task is interrupted, so
    /// the stream ends right after the snapshot.
    pub fn subscribe(
        &self,
        task_id: &str,
    ) -> Result<(Value, broadcast::Receiver<Value>, bool), ProtocolError> {
        let inner = self.lock();
        let record = inner
            .tasks
            .get(task_id)
            .ok_or_else(|| ProtocolError::task_not_found(task_id))?;
        if record.state.is_terminal() {
            return Err(ProtocolError::a2a_with(
                A2aError::UnsupportedOperation,
                format!(
                    "Task {task_id} is in terminal state {} and cannot be subscribed to",
                    record.state.v1_name()
                ),
            ));
        }
        let Some(receiver) = record.events.as_ref().map(broadcast::Sender::subscribe) else {
            return Err(ProtocolError::a2a(A2aError::UnsupportedOperation));
        };
        Ok((
            record.to_json(None, true),
            receiver,
            record.state.is_interrupted(),
        ))
    }

    /// Lists tasks, newest status first, with cursor paging. Returns the
    /// page, the next page token (`""` on the last page) and the total count.
    pub fn list(&self, query: &ListQuery) -> (Vec<Value>, String, usize) {
        let inner = self.lock();
        let mut matching: Vec<&TaskRecord> = inner
            .tasks
            .values()
            .filter(|record| {
                query
                    .context_id
                    .as_deref()
                    .is_none_or(|context_id| record.context_id == context_id)
                    && query.state.is_none_or(|state| record.state == state)
                    && query
                        .status_after
                        .is_none_or(|after| record.timestamp > after)
            })
            .collect();
        matching.sort_by_key(|record| std::cmp::Reverse(record.updated));
        let total = matching.len();
        let page: Vec<&TaskRecord> = matching
            .into_iter()
            .filter(|record| {
                query
                    .page_token
                    .is_none_or(|cursor| record.updated < cursor)
            })
            .take(query.page_size + 1)
            .collect();
        let has_more = page.len() > query.page_size;
        let page = &page[..page.len().min(query.page_size)];
        let next = match (has_more, page.last()) {
            (true, Some(last)) => last.updated.to_string(),
            _ => String::new(),
        };
        let tasks = page
            .iter()
            .map(|record| record.to_json(query.history_length, query.include_artifacts))
            .collect();
        (tasks, next, total)
    }

    fn update<T>(
        &self,
        task_id: &str,
        apply: impl FnOnce(&mut TaskRecord, u64) -> T,
    ) -> Result<T, AgentsError> {
        let mut inner = self.lock();
        let sequence = inner.next_sequence();
        match inner.tasks.get_mut(task_id) {
            Some(record) if !record.state.is_terminal() => Ok(apply(record, sequence)),
            _ => Err(AgentsError::TaskClosed {
                task_id: task_id.to_owned(),
            }),
        }
    }

    /// Ends the task with `state` unless the logic already ended or
    /// interrupted it.
    pub fn finish_if_running(&self, task_id: &str, state: TaskState, message: Option<Value>) {
        let _ = self.update(task_id, |record, sequence| {
            if !record.state.is_interrupted() {
                record.set_status(state, message, sequence);
            }
        });
    }
}

/// The handle an agent's logic uses to drive one task: status changes,
/// artifacts, metadata, and cancellation.
///
/// Every update fails with [`AgentsError::TaskClosed`] once the task is in
/// a terminal state (for example after `CancelTask`), so logic that
/// propagates errors with `?` stops at the first update after a cancel.
#[derive(Clone)]
pub struct TaskContext {
    store: Arc<TaskStore>,
    task_id: String,
    context_id: String,
    cancel: watch::Receiver<bool>,
}

// === impl TaskContext ===

impl TaskContext {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The task's context id.
    pub fn context_id(&self) -> &str {
        &self.context_id
    }

    /// Whether the task was canceled.
    pub fn is_canceled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when the task is canceled.
    pub async fn canceled(&self) {
        let mut receiver = self.cancel.clone();
        // An error means the store dropped the task: treat it as canceled.
        let _ = receiver.wait_for(|canceled| *canceled).await;
    }

    /// Sleeps for `duration` unless the task is canceled first, in which
    /// case it returns [`AgentsError::TaskClosed`].
    pub async fn sleep(&self, duration: Duration) -> Result<(), AgentsError> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.canceled() => Err(self.closed()),
        }
    }

    fn closed(&self) -> AgentsError {
        AgentsError::TaskClosed {
            task_id: self.task_id.clone(),
        }
    }

    /// A `ROLE_AGENT` message in this task with the given parts.
    pub fn agent_message(&self, parts: Vec<Value>, metadata: Option<Value>) -> Value {
        let mut message = json!({
            "messageId": uuid::Uuid::new_v4().to_string(),
            "contextId": self.context_id,
            "taskId": self.task_id,
            "role": "ROLE_AGENT",
            "parts": parts,
        });
        if let Some(metadata) = metadata {
            message["metadata"] = metadata;
        }
        message
    }

    /// Moves the task to `state`, with an optional status message (added to
    /// the history too), and emits a `statusUpdate` event.
    pub fn status(&self, state: TaskState, message: Option<Value>) -> Result<(), AgentsError> {
        if self.is_canceled() {
            return Err(self.closed());
        }
        self.store.update(&self.task_id, |record, sequence| {
            record.set_status(state, message, sequence)
        })
    }

    /// Marks the task WORKING.
    pub fn working(&self) -> Result<(), AgentsError> {
        self.status(TaskState::Working, None)
    }

    /// Adds or extends an artifact and emits an `artifactUpdate` event. With
    /// `append`, the parts join those of the artifact with the same
    /// `artifactId`; otherwise the artifact replaces it.
    pub fn artifact(
        &self,
        artifact: Value,
        append: bool,
        last_chunk: bool,
    ) -> Result<(), AgentsError> {
        if self.is_canceled() {
            return Err(self.closed());
        }
        self.store.update(&self.task_id, |record, sequence| {
            record.updated = sequence;
            let artifact_id = artifact.get("artifactId").cloned();
            let existing = record
                .artifacts
                .iter_mut()
                .find(|stored| stored.get("artifactId") == artifact_id.as_ref());
            match existing {
                Some(stored) if append => {
                    let new_parts = artifact
                        .get("parts")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(Value::Array(parts)) = stored.get_mut("parts") {
                        parts.extend(new_parts);
                    }
                }
                Some(stored) => *stored = artifact.clone(),
                None => record.artifacts.push(artifact.clone()),
            }
            let mut event = json!({
                "taskId": record.id,
                "contextId": record.context_id,
                "artifact": artifact,
            });
            if append {
                event["append"] = json!(true);
            }
            if last_chunk {
                event["lastChunk"] = json!(true);
            }
            if let Some(events) = &record.events {
                let _ = events.send(json!({ "artifactUpdate": event }));
            }
        })
    }

    /// Sets one key of the task's metadata (no event of its own; it rides
    /// along on the next status update).
    pub fn set_metadata(&self, key: &str, value: Value) -> Result<(), AgentsError> {
        self.store.update(&self.task_id, |record, _| {
            record.metadata.insert(key.to_owned(), value);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_the_oldest_terminal_tasks_but_never_open_ones() {
        let store = Arc::new(TaskStore::with_max_tasks(10));
        let open = store.create("c", json!({"parts": []}));
        let open_id = open.context.task_id().to_owned();
        for _ in 0..25 {
            let started = store.create("c", json!({"parts": []}));
            started
                .context
                .status(TaskState::Completed, None)
                .expect("completes");
        }
        let inner = store.lock();
        assert_eq!(inner.tasks.len(), 10);
        assert!(inner.tasks.contains_key(&open_id));
    }
}
