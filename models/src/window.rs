//! The conversation window (issue 20): which of a context's earlier turns
//! go with a model call when the agent declares `history_max_tokens`.
//!
//! - **Whole turns, newest first.** A turn starts at a user message and
//!   holds the model's answers and tool results that followed it; turns are
//!   kept from the newest back while their tokens fit, so a tool result is
//!   never sent without the call it answers. A turn that alone exceeds the
//!   window is dropped with everything older.
//! - **Counting.** Tokens are counted with tiktoken's encodings
//!   ([`tiktoken_rs`]): the model's own for OpenAI models tiktoken knows
//!   (`o200k_base` for gpt-4o and later, `cl100k_base` for gpt-4 and
//!   gpt-3.5), and `cl100k_base` as an approximation for every other model
//!   (local Llama, Qwen or Mistral models and Anthropic's, whose tokenizers
//!   differ; on English text they count within about 20% of it). Each
//!   message adds [`MESSAGE_OVERHEAD`] tokens, as OpenAI's chat format does.

use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::CoreBPE;

use crate::types::{ChatMessage, ProviderKind};

/// Tokens a chat message costs beyond its content (role and separators).
pub const MESSAGE_OVERHEAD: usize = 4;

/// Counts tokens as one model's provider does (or approximates it).
#[derive(Clone, Copy)]
pub struct TokenCounter {
    bpe: &'static CoreBPE,
    encoding: &'static str,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCounter({})", self.encoding)
    }
}

// === impl TokenCounter ===

impl TokenCounter {
    /// The counter for `model` of `provider` (see the module's doc).
    pub fn for_model(provider: ProviderKind, model: &str) -> Self {
        let known = match provider {
            ProviderKind::OpenAi => get_tokenizer(model),
            ProviderKind::Anthropic => None,
        };
        match known {
            Some(Tokenizer::O200kBase) => Self {
                bpe: tiktoken_rs::o200k_base_singleton(),
                encoding: "o200k_base",
            },
            _ => Self {
                bpe: tiktoken_rs::cl100k_base_singleton(),
                encoding: "cl100k_base",
            },
        }
    }

    /// The encoding's name (`o200k_base`, `cl100k_base`).
    pub fn encoding(&self) -> &'static str {
        self.encoding
    }

    /// Tokens of `text` (special-token text counted as ordinary text).
    pub fn text(&self, text: &str) -> usize {
        self.bpe.count_ordinary(text)
    }

    /// Tokens `message` costs in a request.
    pub fn message(&self, message: &ChatMessage) -> usize {
        let content = match message {
            ChatMessage::User { content } => self.text(content),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                self.text(content)
                    + tool_calls
                        .iter()
                        .map(|call| self.text(&call.name) + self.text(&call.arguments.to_string()))
                        .sum::<usize>()
            }
            ChatMessage::Tool { name, content, .. } => self.text(name) + self.text(content),
        };
        content + MESSAGE_OVERHEAD
    }
}

/// The newest whole turns of `history` whose tokens fit in `max_tokens`,
/// oldest first (see the module's doc).
pub fn trim(
    mut history: Vec<ChatMessage>,
    max_tokens: usize,
    counter: TokenCounter,
) -> Vec<ChatMessage> {
    let kept = window_start(&history, max_tokens, counter);
    history.drain(..kept);
    history
}

/// Where the window of `history` starts: the messages before this index
/// fall out of it ([`trim`] drops them; a summary agent is sent them).
pub fn window_start(history: &[ChatMessage], max_tokens: usize, counter: TokenCounter) -> usize {
    let mut kept = history.len();
    let mut used = 0usize;
    let mut turn_tokens = 0usize;
    for (index, message) in history.iter().enumerate().rev() {
        turn_tokens += counter.message(message);
        if matches!(message, ChatMessage::User { .. }) {
            if used + turn_tokens > max_tokens {
                break;
            }
            used += turn_tokens;
            turn_tokens = 0;
            kept = index;
        }
    }
    kept
}

/// The most characters of a transcript sent to a summary agent: the
/// newest end of what fell out of the window is kept.
pub const MAX_TRANSCRIPT_CHARS: usize = 32_000;

/// `messages` as a plain transcript for a summary agent (`user: …`,
/// `assistant: …`, `tool NAME: …`, one per line), at most `max_chars`
/// characters, cut from the oldest end.
pub fn transcript(messages: &[ChatMessage], max_chars: usize) -> String {
    let lines: Vec<String> = messages
        .iter()
        .map(|message| match message {
            ChatMessage::User { content } => format!("user: {content}"),
            ChatMessage::Assistant { content, .. } => format!("assistant: {content}"),
            ChatMessage::Tool { name, content, .. } => format!("tool {name}: {content}"),
        })
        .collect();
    let text = lines.join("\n");
    let count = text.chars().count();
    if count <= max_chars {
        return text;
    }
    text.chars().skip(count - max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;

    #[test]
    fn a_transcript_names_each_speaker_and_keeps_the_newest_end() {
        let messages = [
            ChatMessage::user("What is the capital of France?"),
            ChatMessage::Assistant {
                content: "Paris.".into(),
                tool_calls: Vec::new(),
            },
            ChatMessage::Tool {
                call_id: "c1".into(),
                name: "weather".into(),
                content: "12 C".into(),
                is_error: false,
            },
        ];
        assert_eq!(
            transcript(&messages, 1_000),
            "user: What is the capital of France?\nassistant: Paris.\ntool weather: 12 C"
        );
        assert_eq!(transcript(&messages, 7), "r: 12 C");
    }

    fn turn(user: &str, answer: &str) -> Vec<ChatMessage> {
        vec![ChatMessage::user(user), ChatMessage::assistant(answer)]
    }

    #[test]
    fn counts_as_tiktoken_does_for_known_and_approximated_models() {
        let gpt4o = TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4o-mini");
        assert_eq!(gpt4o.encoding(), "o200k_base");
        let gpt4 = TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4");
        assert_eq!(gpt4.encoding(), "cl100k_base");
        // tiktoken: "hello world" is two tokens in both encodings.
        assert_eq!(gpt4.text("hello world"), 2);
        assert_eq!(gpt4o.text("hello world"), 2);
        let local = TokenCounter::for_model(ProviderKind::OpenAi, "qwen2.5-coder:7b");
        assert_eq!(local.encoding(), "cl100k_base");
        let claude = TokenCounter::for_model(ProviderKind::Anthropic, "claude-sonnet-4");
        assert_eq!(claude.encoding(), "cl100k_base");
        assert_eq!(
            claude.message(&ChatMessage::user("hello world")),
            2 + MESSAGE_OVERHEAD
        );
    }

    #[test]
    fn keeps_the_newest_whole_turns_that_fit() {
        let counter = TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4o");
        let mut history = turn("one two three", "four five");
        history.extend(turn("six seven", "eight"));
        history.extend(turn("nine", "ten"));
        let tokens: Vec<usize> = history.iter().map(|m| counter.message(m)).collect();
        let last_two: usize = tokens[2..].iter().sum();
        let trimmed = trim(history.clone(), last_two, counter);
        assert_eq!(trimmed, history[2..].to_vec());
        let trimmed = trim(history.clone(), last_two - 1, counter);
        assert_eq!(trimmed, history[4..].to_vec());
        assert_eq!(trim(history.clone(), usize::MAX, counter), history);
        assert!(trim(history, 1, counter).is_empty());
    }

    #[test]
    fn a_tool_result_stays_with_its_call() {
        let counter = TokenCounter::for_model(ProviderKind::OpenAi, "gpt-4o");
        let call = ToolCall {
            id: "c1".into(),
            name: "weather".into(),
            arguments: serde_json::json!({"city": "Paris"}),
        };
        let history = vec![
            ChatMessage::user("weather?"),
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![call],
            },
            ChatMessage::Tool {
                call_id: "c1".into(),
                name: "weather".into(),
                content: "sunny".into(),
                is_error: false,
            },
            ChatMessage::assistant("It is sunny."),
        ];
        let whole: usize = history.iter().map(|m| counter.message(m)).sum();
        assert_eq!(trim(history.clone(), whole, counter), history);
        // One token short: the whole turn goes, never half of it.
        assert!(trim(history, whole - 1, counter).is_empty());
    }
}
