//! The `convergio-models` runtime with this deployment's collaborators
//! (issue 17): [`ModelRuntime`] builds each model agent's `ModelLogic` from
//! its declaration, with
//! - keys from [`KeyResolver`] (env, file, sealed secrets; per call),
//! - conversations in the shared database (any replica continues a
//!   context),
//! - the daily budgets' allowance and usage ledger,
//! - tool calls through the gateway's own router as the model agent's
//!   principal ([`GatewayTools`]), so policy, quotas, the SSRF guard and
//!   audit apply to every one;
//! - memory searches (`memory.search`, issue 20) through the same router
//!   as the same principal (`POST /v1/memory/{ns}:search`), so policy
//!   decides which namespaces an agent recalls: its own, and its
//!   organisation's shared knowledge under the example policies.
//!
//! A declaration's `base_url` passes the same SSRF check as an agent's
//! upstream (a provider on a private or loopback address must be on
//! `network.allow_cidrs`), so a declaration cannot point the server's keys
//! at its own metadata service.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use convergio_gateway::ssrf::AllowList;
use convergio_models::{
    ApiKey, ChatMessage, ClientSettings, Conversations, KeyError, KeySource, Meter,
    ModelAgentConfig, ModelLogic, Recall, RecallError, RecallQuery, RecallSearch, ToolCaller,
    ToolError, ToolInvocation, ToolSpec, UsageRecord,
};
use convergio_registry::model_agents::{ConversationKey, ConversationStore};
use convergio_registry::{Registry, RegistryError};
use convergio_schemas::a2a::MEDIA_JSON;
use convergio_schemas::{
    AgentId, KeyReference, ModelAgentSpec, ProviderKind, StorageError, StorageFailure,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::gateway_call::{self, GatewayCall, GatewayCallError};
use crate::model_serving::{AgentFactory, AgentParts, Allowance, DailyBudgets, KeyResolver};
use crate::models_config::ModelSettings;

/// The largest tool reply read.
const MAX_TOOL_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// The largest memory search answer read (100 hits of bounded chunks).
const MAX_RECALL_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Builds model agents' runtimes.
pub struct ModelRuntime {
    keys: KeyResolver,
    conversations: Arc<dyn ConversationStore>,
    budgets: Arc<DailyBudgets>,
    registry: Registry,
    tools: Arc<GatewayTools>,
    settings: Arc<ModelSettings>,
    allow: AllowList,
}

// === impl ModelRuntime ===

impl ModelRuntime {
    /// A runtime over these collaborators; `allow` is the SSRF allow-list
    /// providers' addresses are checked against.
    pub fn new(
        keys: KeyResolver,
        conversations: Arc<dyn ConversationStore>,
        budgets: Arc<DailyBudgets>,
        registry: Registry,
        tools: Arc<GatewayTools>,
        settings: Arc<ModelSettings>,
        allow: AllowList,
    ) -> Self {
        Self {
            keys,
            conversations,
            budgets,
            registry,
            tools,
            settings,
            allow,
        }
    }

    /// The tool specs of `spec`'s tools, from their cards in the registry.
    async fn tool_specs(&self, spec: &ModelAgentSpec) -> anyhow::Result<Vec<ToolSpec>> {
        let mut tools = Vec::with_capacity(spec.tools.len());
        for name in &spec.tools {
            let id = AgentId::internal(name).context("a tool's name")?;
            let record = self
                .registry
                .get(&id)
                .await
                .with_context(|| format!("the tool agent {name} is not registered"))?;
            let mut tool = ToolSpec::from_card(&record.card);
            // The model calls it by its gateway name, which is also what the
            // tool caller routes on (a card's name may hold spaces).
            tool.name = name.clone();
            tools.push(tool);
        }
        Ok(tools)
    }
}

fn provider_kind(provider: ProviderKind) -> convergio_models::ProviderKind {
    match provider {
        ProviderKind::Openai => convergio_models::ProviderKind::OpenAi,
        ProviderKind::Anthropic => convergio_models::ProviderKind::Anthropic,
    }
}

#[async_trait]
impl AgentFactory for ModelRuntime {
    async fn build(&self, org: &str, spec: &ModelAgentSpec) -> anyhow::Result<AgentParts> {
        let base_url = spec.effective_base_url();
        let url = convergio_gateway::ssrf::parse_url(base_url)
            .with_context(|| format!("base_url {base_url}"))?;
        convergio_gateway::ssrf::check_url_resolved(&url, &self.allow)
            .await
            .with_context(|| format!("base_url {base_url} (network.allow_cidrs)"))?;
        let timeout = spec
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(ModelAgentConfig::DEFAULT_TIMEOUT)
            .min(self.settings.max_timeout);
        let mut config = ModelAgentConfig::new(
            spec.name.clone(),
            org,
            provider_kind(spec.provider),
            spec.model.clone(),
            base_url,
            spec.api_key
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        if let Some(description) = &spec.description {
            config.description.clone_from(description);
        }
        config.skills = spec
            .skills
            .iter()
            .map(|skill| convergio_models::SkillSpec {
                id: skill.id.clone(),
                name: skill.name.clone(),
                description: skill.description.clone(),
                tags: skill.tags.clone(),
                examples: Vec::new(),
            })
            .collect();
        config.instructions.clone_from(&spec.instructions);
        config.tools = self.tool_specs(spec).await?;
        config.output_schema.clone_from(&spec.output_schema);
        if let Some(max_tokens) = spec.max_tokens {
            config.max_tokens = u64::from(max_tokens);
        }
        config.temperature = spec.temperature;
        config.history_max_tokens = spec.history_max_tokens;
        config.history_summary_agent = spec.history_summary_agent.clone();
        if let Some(memory) = &spec.memory {
            config.memory_search = memory
                .search
                .iter()
                .map(|search| RecallSearch {
                    namespace: search.namespace.clone(),
                    top_k: search.top_k(),
                })
                .collect();
            if let Some(max_chars) = memory.max_chars {
                config.memory_max_chars = max_chars as usize;
            }
        }
        if let Some(max_tool_calls) = spec.max_tool_calls {
            config.max_tool_calls = max_tool_calls;
        }
        config.timeout = timeout;
        let provider = convergio_models::provider::client(
            config.provider,
            base_url,
            ClientSettings {
                call_timeout: timeout,
                // Every connection's addresses pass the SSRF guard, not
                // only the check above (a name can resolve elsewhere later).
                resolver: Some(convergio_models::provider::Resolver(Arc::new(
                    convergio_gateway::ssrf::GuardedResolver(self.allow.clone()),
                ))),
                ..ClientSettings::default()
            },
        )
        .context("the provider client")?;
        let card_template = convergio_models::card(&config);
        let logic = ModelLogic::new(
            config,
            provider,
            Arc::new(StoreKeys {
                keys: self.keys.clone(),
                provider: spec.provider,
            }),
            Arc::new(StoreConversations {
                store: self.conversations.clone(),
                org: org.to_owned(),
                limit: self.settings.max_history_messages,
            }),
            self.tools.clone(),
            Arc::new(BudgetMeter {
                budgets: self.budgets.clone(),
            }),
            self.tools.clone(),
        )
        .context("the model agent")?;
        Ok(AgentParts {
            logic: Arc::new(logic),
            card_template,
            timeout,
        })
    }
}

/// A registry failure as the storage error the runtime's traits carry.
fn storage(error: RegistryError) -> StorageError {
    match error {
        RegistryError::Storage(error) => error,
        other => StorageError::plain(StorageFailure::Corrupt, other.to_string()),
    }
}

/// [`KeySource`] over the key resolver.
struct StoreKeys {
    keys: KeyResolver,
    provider: ProviderKind,
}

#[async_trait]
impl KeySource for StoreKeys {
    async fn key(&self, org: &str, reference: &str) -> Result<ApiKey, KeyError> {
        let parsed: KeyReference = reference.parse().map_err(|_| KeyError::Unsupported {
            reference: reference.to_owned(),
        })?;
        // For `caller`, `org` is the caller's (the logic's payer).
        let caller_org = (parsed == KeyReference::Caller).then_some(org);
        match self
            .keys
            .resolve(&parsed, self.provider, org, caller_org)
            .await
        {
            Ok(value) => Ok(ApiKey::new(reference, value.expose())),
            Err(error) => {
                tracing::warn!(%error, "a model agent's key is not available");
                Err(KeyError::Missing {
                    reference: reference.to_owned(),
                })
            }
        }
    }
}

/// [`Conversations`] in the shared database, for one organisation's agent.
struct StoreConversations {
    store: Arc<dyn ConversationStore>,
    org: String,
    limit: u32,
}

#[async_trait]
impl Conversations for StoreConversations {
    async fn load(&self, agent: &str, context_id: &str) -> Result<Vec<ChatMessage>, StorageError> {
        let key = ConversationKey {
            org: &self.org,
            agent,
            context_id,
        };
        let values = self.store.load(key, self.limit).await.map_err(storage)?;
        values
            .into_iter()
            .map(|value| {
                serde_json::from_value(value).map_err(|error| {
                    StorageError::plain(
                        StorageFailure::Corrupt,
                        format!("a stored conversation message: {error}"),
                    )
                })
            })
            .collect()
    }

    async fn append(
        &self,
        agent: &str,
        context_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), StorageError> {
        let values = messages
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| {
                StorageError::plain(StorageFailure::Other, format!("a message: {error}"))
            })?;
        let key = ConversationKey {
            org: &self.org,
            agent,
            context_id,
        };
        self.store.append(key, &values).await.map_err(storage)
    }
}

/// [`Meter`] over the daily budgets and usage ledger.
struct BudgetMeter {
    budgets: Arc<DailyBudgets>,
}

#[async_trait]
impl Meter for BudgetMeter {
    async fn allowance(&self, org: &str) -> Result<Option<u64>, StorageError> {
        match self.budgets.allowance(org).await.map_err(storage)? {
            Allowance::Unlimited => Ok(None),
            Allowance::Tokens(left) => {
                if left == 0 {
                    self.budgets.refused(org);
                }
                Ok(Some(left))
            }
        }
    }

    async fn record(&self, record: &UsageRecord) -> Result<u64, StorageError> {
        let provider = match record.provider {
            convergio_models::ProviderKind::OpenAi => ProviderKind::Openai,
            convergio_models::ProviderKind::Anthropic => ProviderKind::Anthropic,
        };
        self.budgets
            .record(
                &record.org,
                provider,
                &record.model,
                record.usage.input_tokens,
                record.usage.output_tokens,
            )
            .await
            .map_err(storage)
    }
}

/// [`ToolCaller`] through the gateway's own router ([`crate::gateway_call`]):
/// each tool call is a JSON-RPC `SendMessage` to `/agents/{tool}` made
/// in-process as the model agent's principal (subject `agent:<name>`, its
/// organisation), so it is authenticated, decided by policy, rate limited
/// and audited like any other call.
#[derive(Debug)]
pub struct GatewayTools {
    app: Weak<Router>,
    timeout: Duration,
}

// === impl GatewayTools ===

impl GatewayTools {
    /// Tool calls through `app` (kept alive by `serve`), each bounded by
    /// `timeout`.
    pub fn new(app: Weak<Router>, timeout: Duration) -> Self {
        Self { app, timeout }
    }
}

#[async_trait]
impl ToolCaller for GatewayTools {
    async fn call(&self, invocation: ToolInvocation) -> Result<Value, ToolError> {
        let call = GatewayCall {
            caller: invocation.agent,
            org: invocation.org,
            agent: invocation.tool.clone(),
            rpc_id: format!("{}/{}", invocation.task_id, invocation.tool),
            request_id: invocation.request_id,
            message: invocation.message,
            timeout: self.timeout,
            max_reply_bytes: MAX_TOOL_REPLY_BYTES,
        };
        match crate::gateway_call::call(&self.app, call).await {
            Ok(result) => Ok(result),
            Err(GatewayCallError::Refused(reason)) => Err(ToolError::Refused {
                tool: invocation.tool,
                reason,
            }),
            Err(GatewayCallError::Failed(reason)) => Err(ToolError::Failed {
                tool: invocation.tool,
                reason,
            }),
            Err(GatewayCallError::Timeout) => Err(ToolError::Failed {
                tool: invocation.tool,
                reason: "the tool did not answer in time".to_owned(),
            }),
        }
    }
}

#[async_trait]
impl Recall for GatewayTools {
    async fn search(&self, query: RecallQuery) -> Result<Vec<String>, RecallError> {
        let namespace = query.namespace.clone();
        let failed = |reason: String| RecallError::Failed {
            namespace: namespace.clone(),
            reason,
        };
        let body = json!({"query": query.query, "top_k": query.top_k});
        let request = Request::builder()
            .method("POST")
            .uri(format!(
                "/v1/memory/{}:search",
                utf8_percent_encode(&query.namespace, NON_ALPHANUMERIC)
            ))
            .header(header::CONTENT_TYPE, MEDIA_JSON)
            .body(Body::from(body.to_string()))
            .map_err(|error| failed(format!("building the request: {error}")))?;
        let (status, bytes) = gateway_call::exchange(
            &self.app,
            request,
            gateway_call::agent_principal(&query.agent, &query.org),
            self.timeout,
            MAX_RECALL_REPLY_BYTES,
        )
        .await
        .map_err(|error| match error {
            GatewayCallError::Timeout => failed("the search did not answer in time".to_owned()),
            GatewayCallError::Refused(reason) | GatewayCallError::Failed(reason) => failed(reason),
        })?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer["hits"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|hit| hit["text"].as_str().map(str::to_owned))
                .collect());
        }
        let reason = format!(
            "{} {}",
            status.as_u16(),
            answer["detail"]
                .as_str()
                .or_else(|| answer["title"].as_str())
                .unwrap_or("refused")
        );
        if matches!(status.as_u16(), 401 | 403 | 404 | 429) {
            Err(RecallError::Refused { namespace, reason })
        } else {
            Err(failed(reason))
        }
    }
}
