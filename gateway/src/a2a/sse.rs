//! A minimal incremental server-sent-events parser (only `data:` lines matter
//! to A2A) and the encoder for relayed events.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into SSE event payloads.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: BytesMut,
}

// === impl SseParser ===

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes buffered but not yet forming a whole event.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Feeds a chunk and returns the `data` of every event it completed.
    /// Events without data lines (comments, keep-alives) yield nothing.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, separator)) = find_event_end(&self.buffer) {
            let raw = self.buffer.split_to(end + separator);
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut data: Option<String> = None;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(value) = line.strip_prefix("data:") {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match data.as_mut() {
                        Some(existing) => {
                            existing.push('\n');
                            existing.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    }
                }
            }
            if let Some(data) = data {
                events.push(data);
            }
        }
        events
    }
}

/// Position and length of the first blank-line separator.
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut index = 0;
    while index + 1 < buffer.len() {
        if buffer[index] == b'\n' {
            if buffer[index + 1] == b'\n' {
                return Some((index, 2));
            }
            if buffer[index + 1] == b'\r' && buffer.get(index + 2) == Some(&b'\n') {
                return Some((index, 3));
            }
        }
        index += 1;
    }
    None
}

/// One SSE event carrying `json` (a single line: JSON has no raw newlines).
pub fn encode_event(json: &str) -> Bytes {
    let mut out = String::with_capacity(json.len() + 8);
    out.push_str("data: ");
    out.push_str(json);
    out.push_str("\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            parser.push(b":1}\n\n: keep-alive\n\ndata: 2\r\n\r\n"),
            vec!["{\"a\":1}", "2"]
        );
        assert_eq!(parser.push(b"event: x\ndata: a\ndata: b\n\n"), vec!["a\nb"]);
        assert_eq!(parser.pending(), 0);
    }
}
