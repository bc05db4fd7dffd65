//! The crate's errors: [`ProviderError`] (a model provider's trouble),
//! [`KeyError`] (an API key that cannot be had), [`ToolError`] (a tool agent
//! call that failed) and [`ModelError`] (a model agent's turn that failed).
//!
//! **Invariant:** no error holds an API key's value. Errors about a key name
//! its reference (`env:OPENAI_API_KEY`); text quoted from a provider's error
//! body has the key scrubbed out before it is kept.

use convergio_agents::AgentsError;
use convergio_schemas::{ErrorKind, StorageError};

/// Why a call to a model provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the key (401/403).
    #[error("the provider refused the API key {key_reference} (HTTP {status})")]
    KeyRefused {
        /// The key's reference, never its value.
        key_reference: String,
        /// 401 or 403.
        status: u16,
    },
    /// Still rate limited (429) after every attempt.
    #[error("the provider is rate limiting (HTTP 429) after {attempts} attempts: {message}")]
    RateLimited {
        /// Attempts made.
        attempts: u32,
        /// The provider's own words, bounded.
        message: String,
    },
    /// Still failing (5xx) after every attempt, or reported an error event
    /// in its stream (`overloaded_error`).
    #[error("the provider is unavailable (HTTP {status}) after {attempts} attempts: {message}")]
    Unavailable {
        /// The last status (0 for an error event inside a stream).
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The provider's own words, bounded.
        message: String,
    },
    /// The provider refused the request (another 4xx: unknown model, bad
    /// parameter).
    #[error("the provider refused the request (HTTP {status}): {message}")]
    Rejected {
        /// The status.
        status: u16,
        /// The provider's own words, bounded.
        message: String,
    },
    /// The provider could not be reached.
    #[error("the provider at {base_url} cannot be reached")]
    Connect {
        /// Where it was looked for.
        base_url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Reading the answer failed half-way (connection reset).
    #[error("reading the provider's answer failed")]
    Read {
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what the protocol says (bad JSON, missing field,
    /// tool arguments that are not JSON).
    #[error("the provider's answer is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The stream ended before its end marker (`[DONE]`, `message_stop`).
    #[error("the provider's stream was cut before its end")]
    StreamCut,
    /// Nothing arrived for the idle timeout.
    #[error("the provider sent nothing for {seconds:.1} s")]
    Idle {
        /// The idle timeout.
        seconds: f64,
    },
    /// The whole call took longer than its timeout.
    #[error("the provider call took longer than {seconds:.1} s")]
    Timeout {
        /// The call timeout.
        seconds: f64,
    },
}

// === impl ProviderError ===

impl ProviderError {
    /// The shared classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::KeyRefused { .. } => ErrorKind::BadUpstream,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Unavailable { .. } | Self::Connect { .. } => ErrorKind::Unavailable,
            Self::Rejected { .. } | Self::Malformed { .. } => ErrorKind::BadUpstream,
            Self::Read { .. } | Self::StreamCut => ErrorKind::BadUpstream,
            Self::Idle { .. } | Self::Timeout { .. } => ErrorKind::UpstreamTimeout,
        }
    }
}

/// Why an API key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The reference's scheme is not one this source resolves.
    #[error(
        "api key reference {reference:?} is not resolvable here (expected env:NAME or file:PATH)"
    )]
    Unsupported {
        /// The reference.
        reference: String,
    },
    /// The variable, file or secret is not set (or empty).
    #[error("api key {reference} is not set")]
    Missing {
        /// The reference.
        reference: String,
    },
    /// The key file could not be read.
    #[error("api key {reference} cannot be read")]
    Unreadable {
        /// The reference.
        reference: String,
        /// The I/O error (it names the path, never the contents).
        #[source]
        source: std::io::Error,
    },
    /// The secret store failed.
    #[error("api key {reference} cannot be loaded")]
    Storage {
        /// The reference.
        reference: String,
        /// The storage failure.
        #[source]
        source: StorageError,
    },
}

// === impl KeyError ===

impl KeyError {
    /// The shared classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unsupported { .. } => ErrorKind::InvalidInput,
            Self::Missing { .. } | Self::Unreadable { .. } | Self::Storage { .. } => {
                ErrorKind::Unavailable
            }
        }
    }
}

/// Why a tool agent call failed. The model sees the message as the tool's
/// (error) result; the task goes on.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Policy, quotas or discovery refused the call.
    #[error("calling {tool} was refused: {reason}")]
    Refused {
        /// The tool agent.
        tool: String,
        /// Why, as the gateway said it.
        reason: String,
    },
    /// The call was made and failed.
    #[error("calling {tool} failed: {reason}")]
    Failed {
        /// The tool agent.
        tool: String,
        /// Why.
        reason: String,
    },
}

/// Why a memory search of a model agent gave nothing (the turn goes on
/// without it; see [`crate::recall`]).
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    /// Policy refused the search, or the namespace is not the agent's to see.
    #[error("searching memory {namespace} was refused: {reason}")]
    Refused {
        /// The namespace.
        namespace: String,
        /// Why, as the gateway said it.
        reason: String,
    },
    /// The search was made and failed.
    #[error("searching memory {namespace} failed: {reason}")]
    Failed {
        /// The namespace.
        namespace: String,
        /// Why.
        reason: String,
    },
}

/// Why a model agent's turn failed (the task ends FAILED with this message).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The key could not be had.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The conversation or usage store failed.
    #[error("the model agent's storage failed")]
    Storage(#[from] StorageError),
    /// The organisation's token budget is spent.
    #[error("the token budget of organisation {org} is spent")]
    BudgetExhausted {
        /// The organisation.
        org: String,
    },
    /// The caller's cap (a graph run's budget, `convergio.maxTokens`) has
    /// nothing left.
    #[error("the caller's token budget for this message is spent")]
    CallerBudgetSpent,
    /// The agent uses its caller's key, and the call carries no caller
    /// organisation (it did not come through the gateway, or the caller
    /// belongs to none).
    #[error("this agent uses its caller's own key (api_key: caller), and the caller has no organisation")]
    NoCallerOrganisation,
    /// The model kept calling tools past `max_tool_calls`.
    #[error("the model asked for more than {max} tool calls")]
    TooManyToolCalls {
        /// The limit.
        max: u32,
    },
    /// The answer does not validate against the agent's output schema.
    #[error("the model's answer does not match the output schema: {reason}")]
    OutputInvalid {
        /// The first violations, or why it is not JSON.
        reason: String,
    },
    /// The output schema itself does not compile.
    #[error("the output schema is not a valid JSON Schema: {reason}")]
    OutputSchema {
        /// The compiler's message.
        reason: String,
    },
    /// The turn took longer than the agent's timeout.
    #[error("the model agent took longer than {seconds:.1} s")]
    Timeout {
        /// The agent's timeout.
        seconds: f64,
    },
    /// The task was closed under the turn (canceled).
    #[error(transparent)]
    Task(#[from] AgentsError),
}

// === impl ModelError ===

impl ModelError {
    /// The shared classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider(error) => error.kind(),
            Self::Key(error) => error.kind(),
            Self::Storage(error) => error.kind(),
            Self::BudgetExhausted { .. } | Self::CallerBudgetSpent => ErrorKind::RateLimited,
            Self::TooManyToolCalls { .. } | Self::OutputInvalid { .. } => ErrorKind::BadUpstream,
            Self::OutputSchema { .. } => ErrorKind::InvalidInput,
            Self::NoCallerOrganisation => ErrorKind::Forbidden,
            Self::Timeout { .. } => ErrorKind::UpstreamTimeout,
            Self::Task(error) => error.kind(),
        }
    }
}
