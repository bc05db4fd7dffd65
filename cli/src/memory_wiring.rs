//! `convergio serve`'s memory (issue 20): the service over the process's
//! database, embedding through OpenAI-compatible providers with each
//! organisation's own keys (its sealed secrets) or the configured local
//! models (`memory.local_models`, each loaded on first use), every vector
//! namespace's index built from the stored chunks before the listener
//! answers (then following other replicas' writes every
//! `memory.follow_interval_ms`, started by `serve.rs`).

use std::sync::Arc;

use anyhow::Context as _;
use convergio_gateway::memory_api::{MemoryApi, SecretKeys};
use convergio_gateway::secrets::Secrets;
use convergio_gateway::ssrf::AllowList;
use convergio_memory::embed::ProviderEmbedders;
use convergio_memory::local::LocalModels;
use convergio_memory::Memory;

/// The memory API's wiring; `allow` is what a provider's `base_url` may
/// name besides the public internet (the upstream allow-list).
pub async fn memory_api(
    config: &crate::config::Config,
    db: &convergio_store::Db,
    secrets: Arc<Secrets>,
    allow: AllowList,
) -> anyhow::Result<MemoryApi> {
    let http = reqwest::Client::builder()
        .timeout(convergio_memory::embed::PROVIDER_TIMEOUT)
        .build()
        .context("building the embedding providers' client")?;
    let local = LocalModels::new(config.memory.local_models.clone());
    let embedders = ProviderEmbedders::new(Arc::new(SecretKeys(secrets)), http, Arc::new(local));
    let memory = Arc::new(Memory::new(
        Arc::new(convergio_store::memory::MemoryTables::new(db)),
        Arc::new(embedders),
    ));
    let started = std::time::Instant::now();
    let chunks = memory
        .load_indexes()
        .await
        .context("building the memory index from the stored chunks")?;
    tracing::info!(
        chunks,
        millis = started.elapsed().as_millis() as u64,
        "memory index built"
    );
    Ok(MemoryApi {
        memory,
        default_org: config.org_domain.clone(),
        allow,
    })
}
