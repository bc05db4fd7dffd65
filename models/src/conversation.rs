//! [`Conversations`]: where a model agent keeps each A2A context's messages,
//! so a follow-up with the same `contextId` continues the conversation on
//! any replica. The store implements it over the database;
//! [`InMemoryConversations`] is for tests and single-process use.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use convergio_schemas::StorageError;

use crate::types::ChatMessage;

/// The conversations of model agents, by agent and context id.
#[async_trait]
pub trait Conversations: Send + Sync + 'static {
    /// Every message of `agent`'s conversation in `context_id`, oldest
    /// first (empty for a new context).
    async fn load(&self, agent: &str, context_id: &str) -> Result<Vec<ChatMessage>, StorageError>;

    /// Appends `messages` (one turn: the user's message, the model's
    /// answers and tool results) to that conversation.
    async fn append(
        &self,
        agent: &str,
        context_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), StorageError>;
}

/// Conversations in this process's memory.
#[derive(Debug, Default)]
pub struct InMemoryConversations {
    conversations: Mutex<HashMap<(String, String), Vec<ChatMessage>>>,
}

#[async_trait]
impl Conversations for InMemoryConversations {
    async fn load(&self, agent: &str, context_id: &str) -> Result<Vec<ChatMessage>, StorageError> {
        let conversations = self
            .conversations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(conversations
            .get(&(agent.to_owned(), context_id.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    async fn append(
        &self,
        agent: &str,
        context_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), StorageError> {
        let mut conversations = self
            .conversations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        conversations
            .entry((agent.to_owned(), context_id.to_owned()))
            .or_default()
            .extend_from_slice(messages);
        Ok(())
    }
}
