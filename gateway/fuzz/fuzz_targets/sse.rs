//! The upstream SSE parser: any byte stream, cut into chunks anywhere,
//! yields the same events and leaves the same bytes pending as the whole
//! stream fed at once, and never panics.
//!
//! Input: the first byte seeds the chunk sizes, the rest is the stream.

#![no_main]

use convergio_gateway::a2a::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((seed, stream)) = data.split_first() else {
        return;
    };
    let mut whole = SseParser::new();
    let expected = whole.push(stream);

    let mut chunked = SseParser::new();
    let mut events = Vec::new();
    let mut rest = stream;
    let mut step = usize::from(*seed);
    while !rest.is_empty() {
        // Chunk sizes 1..=8 cycling from the seed: every boundary, including
        // between `\r` and `\n`, gets cut in some input.
        let size = (step % 8 + 1).min(rest.len());
        step = step.wrapping_mul(31).wrapping_add(7);
        let (chunk, tail) = rest.split_at(size);
        events.extend(chunked.push(chunk));
        rest = tail;
    }
    assert_eq!(events, expected, "chunking changed the events");
    assert_eq!(
        chunked.pending(),
        whole.pending(),
        "chunking changed what is pending"
    );
});
