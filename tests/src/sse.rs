//! An SSE reader for tests: a response's events one by one, each event's
//! `data` lines joined and parsed as JSON, with a stall timeout so a test
//! never hangs on a stream that stopped sending.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// How long the reader waits for the next chunk before failing the test.
pub const STALL: Duration = Duration::from_secs(10);

/// An open SSE response, read event by event.
pub struct EventStream {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The response's content type.
    pub content_type: String,
    /// The response's status.
    pub status: reqwest::StatusCode,
}

// === impl EventStream ===

impl EventStream {
    /// Wraps a response.
    pub fn new(response: reqwest::Response) -> Self {
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = response.status();
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            content_type,
            status,
        }
    }

    /// The next event's `data` as JSON, or `None` when the stream ends.
    /// Events without data (comments, keep-alives) are skipped; `\r\n` line
    /// ends are read like `\n`.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_with_id().await.map(|(_, event)| event)
    }

    /// The next event's `id` (when it has one) and `data` as JSON, or
    /// `None` when the stream ends.
    pub async fn next_with_id(&mut self) -> Option<(Option<String>, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = data_of(&block) {
                    let event = serde_json::from_str(&data).expect("event data is JSON");
                    return Some((id_of(&block), event));
                }
                continue;
            }
            let chunk = tokio::time::timeout(STALL, self.stream.next())
                .await
                .expect("the event stream stalled")?;
            let chunk = chunk.expect("the event stream reads");
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// Every event of a whole response, in order.
pub async fn events(response: reqwest::Response) -> Vec<Value> {
    EventStream::new(response).collect().await
}

/// The `data` of one event block, its lines joined with `\n`.
fn data_of(block: &str) -> Option<String> {
    let data: Vec<&str> = block
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|value| value.strip_prefix(' ').unwrap_or(value))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

/// The `id` of one event block, if it has one.
pub fn id_of(block: &str) -> Option<String> {
    block.lines().find_map(|line| {
        line.strip_prefix("id:")
            .map(|value| value.strip_prefix(' ').unwrap_or(value).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::{data_of, id_of};

    #[test]
    fn joins_data_lines_and_skips_comments() {
        assert_eq!(
            data_of("event: x\ndata: {\"a\":\ndata: 1}\n\n").as_deref(),
            Some("{\"a\":\n1}")
        );
        assert_eq!(data_of(": keep-alive\n\n"), None);
        assert_eq!(data_of("data:{}\n\n").as_deref(), Some("{}"));
    }

    #[test]
    fn reads_an_events_id() {
        assert_eq!(id_of("id: 7\ndata: {}\n\n").as_deref(), Some("7"));
        assert_eq!(id_of("data: {}\n\n"), None);
    }
}
