//! Model provider clients behind one [`Provider`] trait: OpenAI-compatible
//! chat completions ([`OpenAiClient`]) and Anthropic Messages
//! ([`AnthropicClient`]).
//!
//! Lifecycle of a call: the request head is sent with retries (429 and 5xx,
//! exponential backoff honouring `Retry-After`, see `retry`), then the body
//! is read as SSE (`sse`) under an idle timeout and the call's deadline and
//! decoded into [`ChatEvent`]s. Cancelling is dropping: dropping the future
//! of [`Provider::chat`] or the [`ChatStream`] it returned drops the HTTP
//! response, which closes the connection.

mod anthropic;
mod openai;
mod retry;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;

pub use anthropic::AnthropicClient;
pub use openai::OpenAiClient;

use crate::error::ProviderError;
use crate::key::ApiKey;
use crate::types::{ChatEvent, ChatRequest, ProviderKind};

/// A model's answer, event by event; the last item is [`ChatEvent::Done`]
/// or an error.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ProviderError>> + Send>>;

/// A model provider.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The wire protocol it speaks.
    fn kind(&self) -> ProviderKind;

    /// Sends `request` with `key`. Returns once the provider accepted the
    /// call (after any retries); the answer then arrives on the stream.
    /// Drop the future or the stream to cancel: the connection is closed.
    async fn chat(&self, request: ChatRequest, key: &ApiKey) -> Result<ChatStream, ProviderError>;
}

/// Timeouts and retry bounds of a provider client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest silence: no response head or no byte of a streamed body for
    /// this long fails the call with [`ProviderError::Idle`].
    pub idle_timeout: Duration,
    /// Longest whole call, retries included ([`ProviderError::Timeout`]).
    pub call_timeout: Duration,
    /// Attempts in all for 429 and 5xx answers and refused connections (≥ 1).
    pub max_attempts: u32,
    /// The first backoff; it doubles per attempt.
    pub first_backoff: Duration,
    /// The longest backoff, and the most of a `Retry-After` honoured.
    pub max_backoff: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            call_timeout: Duration::from_secs(600),
            max_attempts: 4,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The client for `kind` at `base_url`.
pub fn client(
    kind: ProviderKind,
    base_url: &str,
    settings: ClientSettings,
) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
    Ok(match kind {
        ProviderKind::OpenAi => std::sync::Arc::new(OpenAiClient::new(base_url, settings)?),
        ProviderKind::Anthropic => std::sync::Arc::new(AnthropicClient::new(base_url, settings)?),
    })
}

/// The pooled HTTP client both providers share the construction of.
fn http_client(
    base_url: &str,
    settings: &ClientSettings,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(|source| ProviderError::Connect {
            base_url: base_url.to_owned(),
            source,
        })
}
