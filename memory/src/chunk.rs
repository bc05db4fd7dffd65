//! Cutting a document into chunks of `size` characters, each repeating the
//! last `overlap` characters of the one before, so a sentence cut at a
//! boundary is still whole in one of the two. Characters, not bytes: a cut
//! never splits a UTF-8 sequence. A cut moves back to the last whitespace
//! in the chunk's second half when there is one, and an overlap starts at
//! a word, so words stay whole.
//! Hand-written: twenty lines, and the crates that do this pull in a
//! tokenizer.

use crate::namespace::Chunking;

/// The chunks of `text` under `chunking` (none for blank text).
pub fn chunk(text: &str, chunking: Chunking) -> Vec<String> {
    let characters: Vec<char> = text.chars().collect();
    let size = chunking.size.max(1);
    let overlap = chunking.overlap.min(size - 1);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < characters.len() {
        let mut end = (start + size).min(characters.len());
        if end < characters.len() {
            let floor = end - size / 2;
            if let Some(space) = (floor.max(start + 1)..end)
                .rev()
                .find(|&at| characters[at].is_whitespace())
            {
                end = space;
            }
        }
        let piece: String = characters[start..end].iter().collect();
        if !piece.trim().is_empty() {
            chunks.push(piece.trim().to_owned());
        }
        if end >= characters.len() {
            break;
        }
        // Always move forward, even when the overlap would not; an overlap
        // that starts inside a word starts after it instead.
        let mut next = (end.saturating_sub(overlap)).max(start + 1);
        if next > 0 && !characters[next - 1].is_whitespace() {
            next = (next..end)
                .find(|&at| characters[at].is_whitespace())
                .map_or(end, |space| space + 1);
        }
        start = next;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        let chunks = chunk(
            "a kitten sleeps",
            Chunking {
                size: 100,
                overlap: 10,
            },
        );
        assert_eq!(chunks, vec!["a kitten sleeps"]);
    }

    #[test]
    fn long_text_overlaps_and_keeps_words_whole() {
        let text = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
        let chunks = chunk(
            text,
            Chunking {
                size: 20,
                overlap: 6,
            },
        );
        assert!(chunks.len() > 2, "{chunks:?}");
        for piece in &chunks {
            assert!(piece.chars().count() <= 20, "{piece}");
            for word in piece.split_whitespace() {
                assert!(
                    text.split_whitespace().any(|w| w == word),
                    "cut word {word}"
                );
            }
        }
        assert_eq!(chunks.first().map(String::as_str), Some("alpha beta gamma"));
        assert!(chunks.last().is_some_and(|last| last.ends_with("kappa")));
    }

    #[test]
    fn blank_text_has_no_chunks() {
        assert!(chunk("   ", Chunking::default()).is_empty());
    }

    #[test]
    fn multibyte_text_is_cut_on_characters() {
        let text = "é".repeat(50);
        let chunks = chunk(
            &text,
            Chunking {
                size: 16,
                overlap: 4,
            },
        );
        assert!(chunks.iter().all(|piece| piece.chars().count() <= 16));
    }
}
