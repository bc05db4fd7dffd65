//! How much of a caller's text an error message may carry: [`clip`] and
//! [`echo`] and their limits. Every message that quotes input, on every
//! surface (problem documents, A2A error objects), is bounded here.
//!
//! A leaf module, so the A2A wire types and the problem documents both use
//! it without importing one another.

use std::borrow::Cow;

/// How many characters of a caller's value an error message quotes.
pub const ECHO_LIMIT: usize = 200;

/// The longest `detail` (and violation message) a problem document carries:
/// room for a few located messages, never a caller's whole document.
pub const DETAIL_LIMIT: usize = 2_000;

/// `text` cut to at most `max_chars` characters, with "…" marking a cut.
pub fn clip(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A caller's value as error messages quote it: at most [`ECHO_LIMIT`]
/// characters plus "…". Every message that quotes input goes through this,
/// so an error body stays small whatever the request carried.
pub fn echo(text: &str) -> Cow<'_, str> {
    clip(text, ECHO_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_a_character_boundary_and_marks_the_cut() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(echo(&"x".repeat(250)).chars().count(), ECHO_LIMIT + 1);
    }
}
