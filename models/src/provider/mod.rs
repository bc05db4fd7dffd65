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
    /// Resolves the provider's host name at every connection (the gateway's
    /// SSRF guard in `convergio serve`, so a name that later resolves to a
    /// private address is refused). Default: the system resolver.
    pub resolver: Option<Resolver>,
}

/// A DNS resolver for provider connections (compared by identity).
#[derive(Clone)]
pub struct Resolver(pub std::sync::Arc<dyn reqwest::dns::Resolve>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        self.0.resolve(name)
    }
}

impl PartialEq for Resolver {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
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
            resolver: None,
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
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        // Providers answer where they are asked; a redirect could lead the
        // key to another host, or a request to an address never checked.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(resolver) = &settings.resolver {
        builder = builder.dns_resolver(std::sync::Arc::new(resolver.clone()));
    }
    builder.build().map_err(|source| ProviderError::Connect {
        base_url: base_url.to_owned(),
        source,
    })
}

/// `request` with the W3C `traceparent` of the calling span, when spans
/// are exported (issue 18); the provider sees nothing else of ours.
fn with_traceparent(
    request: reqwest::RequestBuilder,
    traceparent: Option<&str>,
) -> reqwest::RequestBuilder {
    match traceparent {
        Some(value) => request.header(convergio_agents::trace_context::TRACEPARENT, value),
        None => request,
    }
}
