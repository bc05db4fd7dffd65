//! [`Recall`]: what a model agent remembers before it answers (issue 20,
//! agent and global contexts). A declaration lists vector memory namespaces
//! ([`RecallSearch`]); before a turn's provider calls the logic searches
//! each with the user's text, as the agent's own principal, and hands the
//! model the hits as one paragraph of its system prompt ([`recalled_prompt`],
//! "Relevant memory: …", bounded in characters). The serve wiring
//! implements [`Recall`] as in-process `POST /v1/memory/{ns}:search` calls
//! through the gateway's router, so policy decides each search exactly as
//! for any caller.
//!
//! A search that is refused or fails does not fail the turn: memory is an
//! aid, and an agent whose namespace was deleted or closed by policy still
//! answers (without it). The logic logs it (`warn`) and reports it in the
//! task's metadata (`memory`: per namespace, hits or the refusal).

use async_trait::async_trait;
use serde::Serialize;

use crate::error::RecallError;

/// The default bound on the recalled paragraph, in characters.
pub const DEFAULT_RECALL_CHARS: usize = 4_000;

/// One namespace a model agent searches before it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallSearch {
    /// The vector namespace.
    pub namespace: String,
    /// Hits wanted.
    pub top_k: u32,
}

/// One search, as the logic asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallQuery {
    /// The model agent searching (its principal).
    pub agent: String,
    /// The organisation that owns the model agent.
    pub org: String,
    /// The namespace.
    pub namespace: String,
    /// The text searched for (the user's message).
    pub query: String,
    /// Hits wanted.
    pub top_k: u32,
}

/// Searches memory namespaces for a model agent.
#[async_trait]
pub trait Recall: Send + Sync + 'static {
    /// The texts of the best hits, best first.
    async fn search(&self, query: RecallQuery) -> Result<Vec<String>, RecallError>;
}

/// For agents without memory: every search finds nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecall;

#[async_trait]
impl Recall for NoRecall {
    async fn search(&self, _query: RecallQuery) -> Result<Vec<String>, RecallError> {
        Ok(Vec::new())
    }
}

/// What one namespace's search gave a turn (the task's `memory` metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecallRecord {
    /// The namespace.
    pub namespace: String,
    /// Hits found (0 when refused or failed).
    pub hits: usize,
    /// Why it gave nothing, when refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The paragraph added to the system prompt: `Relevant memory:` and one
/// line per hit, in the declared namespaces' order, best hit first, cut at
/// `max_chars` characters (the last line cut short, on a character
/// boundary, and marked `…`). `None` when there is no hit.
pub fn recalled_prompt(hits: &[(String, Vec<String>)], max_chars: usize) -> Option<String> {
    const HEAD: &str = "Relevant memory:";
    let mut prompt = String::from(HEAD);
    let mut used = HEAD.chars().count();
    let mut any = false;
    'namespaces: for (namespace, texts) in hits {
        for text in texts {
            let line = format!("\n- [{namespace}] {}", text.trim());
            let length = line.chars().count();
            if used + length > max_chars {
                let room = max_chars.saturating_sub(used + 1);
                if room > 8 {
                    prompt.extend(line.chars().take(room));
                    prompt.push('…');
                    any = true;
                }
                break 'namespaces;
            }
            prompt.push_str(&line);
            used += length;
            any = true;
        }
    }
    any.then_some(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_lists_hits_in_order_and_stays_within_its_bound() {
        let hits = vec![
            ("notes".to_owned(), vec!["the kitten sleeps".to_owned()]),
            (
                "kb".to_owned(),
                vec!["tax is due".to_owned(), "x".repeat(500)],
            ),
        ];
        let prompt = recalled_prompt(&hits, 4_000).expect("hits");
        assert!(
            prompt.starts_with("Relevant memory:\n- [notes] the kitten sleeps\n- [kb] tax is due")
        );
        let short = recalled_prompt(&hits, 120).expect("hits");
        assert!(short.chars().count() <= 120, "{short}");
        assert!(short.ends_with('…'), "{short}");
        assert_eq!(recalled_prompt(&[("kb".to_owned(), Vec::new())], 100), None);
        let multibyte = vec![("kb".to_owned(), vec!["é".repeat(300)])];
        let cut = recalled_prompt(&multibyte, 50).expect("hits");
        assert!(cut.chars().count() <= 50, "{cut}");
    }
}
