//! Reading a provider's SSE body into a [`ChatStream`]: the framing
//! (`event:`/`data:` lines, a blank line ends an event) and the timeouts
//! (idle, and the call's deadline), with a per-provider [`Decoder`] turning
//! events into [`ChatEvent`]s.
//!
//! A small parser rather than a crate: providers send only `event:` and
//! `data:` lines, and owning the read loop is what lets an idle or cut stream
//! become a typed error at once (the SSE crates on crates.io are unmaintained
//! since 2022).

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::{ChatStream, ClientSettings};
use crate::error::ProviderError;
use crate::types::ChatEvent;

/// How long the reader waits for the body's end after the end marker, so
/// the connection goes back to the pool.
const DRAIN: Duration = Duration::from_millis(500);

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SseEvent {
    /// The `event:` name (empty when none was given).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Turns a provider's events into chat events.
pub(super) trait Decoder: Send + 'static {
    /// Decodes one event into `out`; `Ok(true)` once the end marker came
    /// (the decoder has then pushed [`ChatEvent::Done`]).
    fn decode(
        &mut self,
        event: SseEvent,
        out: &mut VecDeque<ChatEvent>,
    ) -> Result<bool, ProviderError>;
}

/// Bytes not yet framed into events.
#[derive(Debug, Default)]
struct SseBuffer {
    bytes: Vec<u8>,
}

// === impl SseBuffer ===

impl SseBuffer {
    fn push(&mut self, chunk: &[u8]) {
        // Carriage returns only ever end lines (JSON escapes them inside
        // strings), so dropping them reads `\r\n` like `\n`.
        self.bytes
            .extend(chunk.iter().copied().filter(|byte| *byte != b'\r'));
    }

    /// The next complete event, if the buffer holds one.
    fn next_event(&mut self) -> Option<Result<SseEvent, ProviderError>> {
        loop {
            let end = self.bytes.windows(2).position(|pair| pair == b"\n\n")?;
            let block: Vec<u8> = self.bytes.drain(..end + 2).collect();
            let text = match std::str::from_utf8(&block[..end]) {
                Ok(text) => text,
                Err(_) => {
                    return Some(Err(ProviderError::Malformed {
                        reason: "an event is not UTF-8".into(),
                    }))
                }
            };
            let event = parse_block(text);
            if !event.data.is_empty() || !event.event.is_empty() {
                return Some(Ok(event));
            }
        }
    }
}

fn parse_block(text: &str) -> SseEvent {
    let mut event = SseEvent::default();
    let mut data_lines = 0;
    for line in text.split('\n') {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "data" => {
                if data_lines > 0 {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                data_lines += 1;
            }
            _ => {}
        }
    }
    event
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Reader<D> {
    body: Body,
    buffer: SseBuffer,
    decoder: D,
    pending: VecDeque<ChatEvent>,
    finished: bool,
    failed: bool,
    idle_timeout: Duration,
    call_timeout: Duration,
    deadline: Instant,
}

// === impl Reader ===

impl<D: Decoder> Reader<D> {
    fn fail(&mut self, error: ProviderError) -> Option<Result<ChatEvent, ProviderError>> {
        self.failed = true;
        Some(Err(error))
    }

    async fn next(&mut self) -> Option<Result<ChatEvent, ProviderError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                // Read the body to its end so the connection is reused.
                let _ = tokio::time::timeout(DRAIN, async {
                    while let Some(Ok(_)) = self.body.next().await {}
                })
                .await;
                self.failed = true;
                return None;
            }
            match self.buffer.next_event() {
                Some(Ok(event)) => {
                    match self.decoder.decode(event, &mut self.pending) {
                        Ok(ended) => self.finished = ended,
                        Err(error) => return self.fail(error),
                    }
                    continue;
                }
                Some(Err(error)) => return self.fail(error),
                None => {}
            }
            let read_by = self.deadline.min(Instant::now() + self.idle_timeout);
            match tokio::time::timeout_at(read_by, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.buffer.push(&bytes),
                Ok(Some(Err(source))) => return self.fail(ProviderError::Read { source }),
                Ok(None) => return self.fail(ProviderError::StreamCut),
                Err(_) if read_by < self.deadline => {
                    let seconds = self.idle_timeout.as_secs_f64();
                    return self.fail(ProviderError::Idle { seconds });
                }
                Err(_) => {
                    let seconds = self.call_timeout.as_secs_f64();
                    return self.fail(ProviderError::Timeout { seconds });
                }
            }
        }
    }
}

/// The chat events of a streamed (SSE) answer.
pub(super) fn chat_stream<D: Decoder>(
    response: reqwest::Response,
    decoder: D,
    settings: &ClientSettings,
    deadline: Instant,
) -> ChatStream {
    let reader = Reader {
        body: Box::pin(response.bytes_stream()),
        buffer: SseBuffer::default(),
        decoder,
        pending: VecDeque::new(),
        finished: false,
        failed: false,
        idle_timeout: settings.idle_timeout,
        call_timeout: settings.call_timeout,
        deadline,
    };
    Box::pin(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        },
    ))
}

/// The body of a whole (not streamed) answer as JSON, read by the deadline.
pub(super) async fn whole_body(
    response: reqwest::Response,
    settings: &ClientSettings,
    deadline: Instant,
) -> Result<serde_json::Value, ProviderError> {
    let bytes = tokio::time::timeout_at(deadline, response.bytes())
        .await
        .map_err(|_| ProviderError::Timeout {
            seconds: settings.call_timeout.as_secs_f64(),
        })?
        .map_err(|source| ProviderError::Read { source })?;
    serde_json::from_slice(&bytes).map_err(|error| ProviderError::Malformed {
        reason: format!("the answer is not JSON: {error}"),
    })
}

/// A stream of already-known events.
pub(super) fn ready_stream(events: Vec<ChatEvent>) -> ChatStream {
    Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events_across_chunks_and_line_endings() {
        let mut buffer = SseBuffer::default();
        buffer.push(b": comment\r\n\r\nevent: message_start\r\ndata: {\"a\":");
        assert!(buffer.next_event().is_none());
        buffer.push(b"1}\r\n\r\ndata: one\ndata: two\n\n");
        let first = buffer.next_event().and_then(Result::ok).expect("first");
        assert_eq!(first.event, "message_start");
        assert_eq!(first.data, "{\"a\":1}");
        let second = buffer.next_event().and_then(Result::ok).expect("second");
        assert_eq!(second.data, "one\ntwo");
        assert!(buffer.next_event().is_none());
    }
}
