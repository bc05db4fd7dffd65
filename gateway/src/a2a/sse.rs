//! A minimal incremental server-sent-events parser (only `data:` lines matter
//! to A2A) and the encoder for relayed events.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into SSE event payloads.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: BytesMut,
    /// Where the next search for a blank line starts: everything before it
    /// was searched already. Without it, an event arriving in many small
    /// chunks was rescanned from its start on every chunk, quadratic in
    /// its size (up to the 4 MiB an event may buffer) — CPU an upstream
    /// could burn at will by trickling bytes (issue #15, fuzz review).
    scanned: usize,
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
        while let Some((end, separator)) = find_event_end(&self.buffer, self.scanned) {
            self.scanned = 0;
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
        // A separator is up to 3 bytes, so one may start in the last two
        // bytes and end in the next chunk; everything before them is done.
        self.scanned = self.buffer.len().saturating_sub(2);
        events
    }
}

/// Position and length of the first blank-line separator starting at or
/// after `from`.
fn find_event_end(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut index = from;
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

/// One SSE event carrying `json` (a single line: JSON has no raw
/// newlines), with its `id:` when it has one (a recorded event's number,
/// which a reconnecting client sends back as `Last-Event-ID`).
pub fn encode_event(id: Option<u64>, json: &str) -> Bytes {
    let mut out = String::with_capacity(json.len() + 32);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(&id.to_string());
        out.push('\n');
    }
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

    #[test]
    fn an_event_id_goes_before_its_data_and_parsers_skip_it() {
        let encoded = encode_event(Some(42), "{}");
        assert_eq!(&encoded[..], b"id: 42\ndata: {}\n\n");
        assert_eq!(SseParser::new().push(&encoded), vec!["{}"]);
        assert_eq!(&encode_event(None, "{}")[..], b"data: {}\n\n");
    }

    #[test]
    fn resumes_the_search_where_the_last_chunk_ended() {
        // Regression: issue #15, fuzz finding (review of the SSE target): a
        // long event trickled in small chunks was rescanned from its start
        // on every chunk. Each byte must be searched a bounded number of
        // times, so the search resumes two bytes before the end.
        let mut parser = SseParser::new();
        for _ in 0..1000 {
            assert!(parser.push(b"data: x").is_empty());
        }
        assert_eq!(parser.scanned, parser.pending() - 2);
        // A separator split across chunks, in both spellings, is still found.
        assert!(parser.push(b"\r\n\r").is_empty());
        assert_eq!(parser.push(b"\n").len(), 1);
        assert_eq!(parser.scanned, 0);
        assert!(parser.push(b"data: y\n").is_empty());
        assert_eq!(parser.push(b"\n"), vec!["y"]);
    }
}
