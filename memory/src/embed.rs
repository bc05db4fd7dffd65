//! Embedding providers: [`Embedder`] turns texts into vectors;
//! [`OpenAiEmbedder`] calls an OpenAI-compatible `POST {base}/embeddings`
//! with the organisation's own key (BYOK), read per call through a
//! [`KeySource`] (the gateway's sealed `/v1/secrets`), so a rotated key is
//! used on the next call on every replica. [`Embedders`] picks the
//! embedder of a namespace's declaration: [`ProviderEmbedders`] the
//! OpenAI-compatible provider or one of the deployment's local models
//! ([`crate::local::LocalModels`], run in-process).
//!
//! **Invariant:** a key's value reaches only the `Authorization` header;
//! [`EmbeddingKey`] never prints itself, and provider errors quote a
//! bounded piece of the answer with the key scrubbed out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use crate::local::{LocalEmbedder, LocalModels};
use crate::namespace::EmbeddingSpec;
use crate::{MemoryError, Result};

/// Texts per provider request (OpenAI accepts up to 2048 inputs).
pub const MAX_BATCH: usize = 256;
/// How long a provider request may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a provider's error body is quoted.
const QUOTED_BYTES: usize = 200;

/// A provider key in clear; prints as a placeholder.
#[derive(Clone)]
pub struct EmbeddingKey(String);

// === impl EmbeddingKey ===

impl EmbeddingKey {
    /// Wraps a key's value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmbeddingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddingKey(…)")
    }
}

/// Where an organisation's keys come from (`secret:NAME` references).
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// `org`'s secret `name` in clear, or `None` when it is not set.
    async fn secret(&self, org: &str, name: &str) -> Result<Option<EmbeddingKey>>;
}

/// Turns texts into vectors of one dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// One vector per text, in order, each of [`Embedder::dimensions`].
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
    /// The vectors' dimensions.
    fn dimensions(&self) -> usize;
}

/// Picks the embedder for a namespace's declaration and owner.
#[async_trait]
pub trait Embedders: Send + Sync + 'static {
    /// The embedder `spec` names, with `org`'s key.
    async fn embedder(&self, org: &str, spec: &EmbeddingSpec) -> Result<Arc<dyn Embedder>>;

    /// Whether a namespace may be created with `spec` (a local model the
    /// deployment does not configure may not); nothing to check by default.
    async fn check(&self, spec: &EmbeddingSpec) -> Result<()> {
        let _ = spec;
        Ok(())
    }
}

/// The providers of [`EmbeddingSpec`], keys read from `keys`, requests
/// sent by `http` (the gateway hands its SSRF-guarded client), local models
/// from `local`.
pub struct ProviderEmbedders {
    keys: Arc<dyn KeySource>,
    http: reqwest::Client,
    local: Arc<LocalModels>,
}

// === impl ProviderEmbedders ===

impl ProviderEmbedders {
    /// Providers with keys from `keys`, calls through `http`, the local
    /// models `local`.
    pub fn new(keys: Arc<dyn KeySource>, http: reqwest::Client, local: Arc<LocalModels>) -> Self {
        Self { keys, http, local }
    }
}

#[async_trait]
impl Embedders for ProviderEmbedders {
    async fn check(&self, spec: &EmbeddingSpec) -> Result<()> {
        match spec {
            EmbeddingSpec::Openai { .. } => Ok(()),
            // Loading it now answers a broken model directory at creation
            // rather than at the first write (a model loads once anyway).
            EmbeddingSpec::Local { model } => self.local.model(model).await.map(|_| ()),
        }
    }

    async fn embedder(&self, org: &str, spec: &EmbeddingSpec) -> Result<Arc<dyn Embedder>> {
        match spec {
            EmbeddingSpec::Local { model } => Ok(Arc::new(self.local.embedder(model).await?)),
            EmbeddingSpec::Openai {
                base_url,
                model,
                api_key,
                dimensions,
            } => {
                let name = api_key.strip_prefix("secret:").unwrap_or(api_key);
                let key = self.keys.secret(org, name).await?.ok_or_else(|| {
                    MemoryError::KeyUnavailable {
                        reference: api_key.clone(),
                    }
                })?;
                Ok(Arc::new(OpenAiEmbedder {
                    http: self.http.clone(),
                    url: format!("{}/embeddings", base_url.trim_end_matches('/')),
                    model: model.clone(),
                    key,
                    dimensions: *dimensions,
                }))
            }
        }
    }
}

/// An OpenAI-compatible `/embeddings` API.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    model: String,
    key: EmbeddingKey,
    dimensions: usize,
}

#[derive(Deserialize)]
struct EmbeddingsAnswer {
    data: Vec<EmbeddingDatum>,
}

#[derive(Deserialize)]
struct EmbeddingDatum {
    index: usize,
    embedding: Vec<f32>,
}

// === impl OpenAiEmbedder ===

impl OpenAiEmbedder {
    /// An embedder of `model` at `base_url` with `key`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        model: impl Into<String>,
        key: EmbeddingKey,
        dimensions: usize,
    ) -> Self {
        Self {
            http,
            url: format!("{}/embeddings", base_url.trim_end_matches('/')),
            model: model.into(),
            key,
            dimensions,
        }
    }

    fn failure(&self, detail: impl Into<String>, unavailable: bool) -> MemoryError {
        let detail = detail.into().replace(self.key.expose(), "[key]");
        MemoryError::Embedding {
            detail,
            unavailable,
        }
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(self.key.expose())
            .timeout(PROVIDER_TIMEOUT)
            .json(&json!({ "model": self.model, "input": texts }))
            .send()
            .await
            .map_err(|error| {
                self.failure(
                    format!("{} unreachable: {}", self.url, error.without_url()),
                    true,
                )
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|error| {
            self.failure(format!("reading the answer: {}", error.without_url()), true)
        })?;
        if !status.is_success() {
            let quoted =
                String::from_utf8_lossy(&body[..body.len().min(QUOTED_BYTES)]).into_owned();
            return Err(self.failure(format!("HTTP {}: {quoted}", status.as_u16()), false));
        }
        let answer: EmbeddingsAnswer = serde_json::from_slice(&body)
            .map_err(|error| self.failure(format!("unreadable answer: {error}"), false))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for datum in answer.data {
            if datum.embedding.len() != self.dimensions {
                return Err(self.failure(
                    format!(
                        "a vector of {} dimensions, {} declared",
                        datum.embedding.len(),
                        self.dimensions
                    ),
                    false,
                ));
            }
            let slot = vectors.get_mut(datum.index).ok_or_else(|| {
                self.failure(format!("index {} out of range", datum.index), false)
            })?;
            *slot = Some(datum.embedding);
        }
        vectors
            .into_iter()
            .map(|vector| vector.ok_or_else(|| self.failure("an input had no vector", false)))
            .collect()
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(MAX_BATCH) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        LocalEmbedder::embed(self, texts).await
    }

    fn dimensions(&self) -> usize {
        LocalEmbedder::dimensions(self)
    }
}
