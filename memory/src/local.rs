//! Local embedding models (issue 20): a BERT-family sentence-transformers
//! model loaded from a directory in the Hugging Face layout and run
//! in-process on the CPU with candle, so retrieval works offline.
//!
//! A model directory holds `config.json` (the BERT shape), `tokenizer.json`,
//! `model.safetensors`, and optionally `sentence_bert_config.json` (its
//! `max_seq_length`, else `max_position_embeddings`), `modules.json` (a
//! `Normalize` module L2-normalises the output) and `1_Pooling/config.json`
//! (only mean pooling is supported). The pipeline is sentence-transformers'
//! own: tokenize (truncated at `max_seq_length`, padded to the longest text
//! of the batch), BERT forward, mean over the attention mask, normalise.
//!
//! [`LocalModels`] maps the deployment's configured names to directories
//! (`memory.local_models`) and loads each model once, on first use, shared
//! by every namespace that names it. Inference runs on tokio's blocking
//! pool, [`LOCAL_BATCH`] texts per forward pass, texts of similar length
//! together so little of a pass is padding.
//!
//! **Invariant:** a model is loaded at most once per process (a
//! [`tokio::sync::OnceCell`] per name); a name not configured is refused
//! before any file is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::OnceCell;

pub use crate::error::LocalModelError;
use crate::{MemoryError, Result};

/// Texts per forward pass.
pub const LOCAL_BATCH: usize = 32;

/// `config.json`'s fields this runtime reads besides the BERT shape.
#[derive(Deserialize)]
struct ModelKind {
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    max_position_embeddings: usize,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// A loaded sentence-transformers model.
pub struct LocalModel {
    tokenizer: Tokenizer,
    bert: BertModel,
    dimensions: usize,
    max_seq_length: usize,
    normalize: bool,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("dimensions", &self.dimensions)
            .field("max_seq_length", &self.max_seq_length)
            .field("normalize", &self.normalize)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LocalModelError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LocalModelError::MissingFile {
                path: path.to_owned(),
            }
        } else {
            LocalModelError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, LocalModelError> {
    serde_json::from_slice(bytes).map_err(|source| LocalModelError::Description {
        path: path.to_owned(),
        source,
    })
}

/// The optional JSON file `name` of `directory`, parsed.
fn optional<T: for<'de> Deserialize<'de>>(
    directory: &Path,
    name: &str,
) -> Result<Option<T>, LocalModelError> {
    let path = directory.join(name);
    match read(&path) {
        Ok(bytes) => parse(&path, &bytes).map(Some),
        Err(LocalModelError::MissingFile { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The files a model directory must hold.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Whether `directory` holds a model's files (cheap: nothing is parsed),
/// for a configuration check before anything is loaded.
pub fn check_directory(directory: &Path) -> Result<(), LocalModelError> {
    if !directory.is_dir() {
        return Err(LocalModelError::MissingDirectory {
            path: directory.to_owned(),
        });
    }
    for file in REQUIRED_FILES {
        let path = directory.join(file);
        if !path.is_file() {
            return Err(LocalModelError::MissingFile { path });
        }
    }
    Ok(())
}

// === impl LocalModel ===

impl LocalModel {
    /// Loads the model in `directory` (blocking: reads ~100 MB).
    pub fn load(directory: &Path) -> Result<Self, LocalModelError> {
        check_directory(directory)?;
        let config_path = directory.join("config.json");
        let config_bytes = read(&config_path)?;
        let kind: ModelKind = parse(&config_path, &config_bytes)?;
        if kind
            .model_type
            .as_deref()
            .is_some_and(|kind| kind != "bert")
        {
            return Err(LocalModelError::Unsupported {
                path: config_path,
                detail: format!(
                    "model_type {:?}, only BERT models run locally",
                    kind.model_type.unwrap_or_default()
                ),
            });
        }
        let config: BertConfig = parse(&config_path, &config_bytes)?;

        let max_seq_length =
            optional::<SentenceBertConfig>(directory, "sentence_bert_config.json")?
                .and_then(|config| config.max_seq_length)
                .unwrap_or(kind.max_position_embeddings)
                .min(kind.max_position_embeddings);
        let modules = optional::<Vec<ModuleEntry>>(directory, "modules.json")?.unwrap_or_default();
        let normalize = modules
            .iter()
            .any(|module| module.kind.ends_with(".Normalize"));
        let pooling_path = directory.join("1_Pooling").join("config.json");
        if let Some(pooling) = optional::<PoolingConfig>(directory, "1_Pooling/config.json")? {
            if !pooling.pooling_mode_mean_tokens
                || pooling.pooling_mode_cls_token
                || pooling.pooling_mode_max_tokens
                || pooling.pooling_mode_mean_sqrt_len_tokens
            {
                return Err(LocalModelError::Unsupported {
                    path: pooling_path,
                    detail: "only mean pooling is supported".to_owned(),
                });
            }
        }

        let tokenizer_path = directory.join("tokenizer.json");
        let tokenizer_bytes = read(&tokenizer_path)?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes).map_err(|error| {
            LocalModelError::Tokenizer {
                detail: format!("{}: {error}", tokenizer_path.display()),
            }
        })?;
        // sentence-transformers overrides the file's own truncation and
        // padding (all-MiniLM-L6-v2's says 128, fixed): it truncates at
        // max_seq_length and pads to the longest text of the batch.
        let pad_token = tokenizer
            .get_padding()
            .map_or_else(|| "[PAD]".to_owned(), |padding| padding.pad_token.clone());
        let pad_id = tokenizer.token_to_id(&pad_token).unwrap_or(0);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|error| LocalModelError::Tokenizer {
                detail: error.to_string(),
            })?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..PaddingParams::default()
        }));

        let weights = read(&directory.join("model.safetensors"))?;
        let variables = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let bert = BertModel::load(variables, &config)?;
        Ok(Self {
            tokenizer,
            bert,
            dimensions: kind.hidden_size,
            max_seq_length,
            normalize,
        })
    }

    /// The vectors' dimensions (the model's hidden size).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens a text is cut to.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// One vector per text, in order (blocking: runs the model).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LocalModelError> {
        // Batch texts of similar length together; answer in the callers' order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|at| texts[*at].len());
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(LOCAL_BATCH) {
            let inputs: Vec<&str> = batch.iter().map(|at| texts[*at].as_str()).collect();
            for (at, vector) in batch.iter().zip(self.embed_batch(inputs)?) {
                vectors[*at] = vector;
            }
        }
        Ok(vectors)
    }

    fn embed_batch(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>, LocalModelError> {
        let encodings = self.tokenizer.encode_batch(texts, true).map_err(|error| {
            LocalModelError::Tokenizer {
                detail: error.to_string(),
            }
        })?;
        let rows = encodings.len();
        let columns = encodings.first().map_or(0, |encoding| encoding.len());
        let mut ids = Vec::with_capacity(rows * columns);
        let mut type_ids = Vec::with_capacity(rows * columns);
        let mut mask = Vec::with_capacity(rows * columns);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            type_ids.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (rows, columns), &device)?;
        let type_ids = Tensor::from_vec(type_ids, (rows, columns), &device)?;
        let mask = Tensor::from_vec(mask, (rows, columns), &device)?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?;
        // Mean over the tokens the mask keeps (sentence-transformers'
        // Pooling: the count clamped at 1e-9).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.normalize {
            // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled = pooled.broadcast_div(&norms)?;
        }
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// A loaded model, named: inference on the blocking pool (`embed.rs`
/// makes it an `Embedder`).
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    name: String,
    model: Arc<LocalModel>,
}

// === impl LocalEmbedder ===

impl LocalEmbedder {
    /// `model`, known as `name` in errors.
    pub fn new(name: impl Into<String>, model: Arc<LocalModel>) -> Self {
        Self {
            name: name.into(),
            model,
        }
    }

    /// One vector per text, in order, computed on tokio's blocking pool.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let model = self.model.clone();
        let texts = texts.to_vec();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || model.embed_blocking(&texts))
            .await
            .map_err(|error| MemoryError::LocalModel {
                model: name.clone(),
                source: LocalModelError::Task {
                    detail: error.to_string(),
                },
            })?
            .map_err(|source| MemoryError::LocalModel {
                model: name,
                source,
            })
    }

    /// The vectors' dimensions.
    pub fn dimensions(&self) -> usize {
        self.model.dimensions()
    }
}

/// The deployment's local models by name (`memory.local_models`), each
/// loaded once, on first use.
#[derive(Default)]
pub struct LocalModels {
    models: BTreeMap<String, (PathBuf, OnceCell<Arc<LocalModel>>)>,
}

impl std::fmt::Debug for LocalModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.models
                    .iter()
                    .map(|(name, (directory, _))| (name, directory)),
            )
            .finish()
    }
}

// === impl LocalModels ===

impl LocalModels {
    /// The models of `directories` (name → model directory); nothing is
    /// read until a model is first used.
    pub fn new(directories: BTreeMap<String, PathBuf>) -> Self {
        Self {
            models: directories
                .into_iter()
                .map(|(name, directory)| (name, (directory, OnceCell::new())))
                .collect(),
        }
    }

    /// No local model at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.models.contains_key(name)
    }

    /// The configured names and directories.
    pub fn directories(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.models
            .iter()
            .map(|(name, (directory, _))| (name.as_str(), directory.as_path()))
    }

    /// Model `name`, loading it (on the blocking pool) the first time.
    pub async fn model(&self, name: &str) -> Result<Arc<LocalModel>> {
        let Some((directory, cell)) = self.models.get(name) else {
            return Err(MemoryError::UnknownLocalModel {
                model: name.to_owned(),
            });
        };
        cell.get_or_try_init(|| async {
            let directory = directory.clone();
            let started = std::time::Instant::now();
            let model = tokio::task::spawn_blocking(move || LocalModel::load(&directory))
                .await
                .map_err(|error| MemoryError::LocalModel {
                    model: name.to_owned(),
                    source: LocalModelError::Task {
                        detail: error.to_string(),
                    },
                })?
                .map_err(|source| MemoryError::LocalModel {
                    model: name.to_owned(),
                    source,
                })?;
            tracing::info!(
                model = %name,
                dimensions = model.dimensions(),
                millis = started.elapsed().as_millis() as u64,
                "local embedding model loaded"
            );
            Ok::<_, MemoryError>(Arc::new(model))
        })
        .await
        .cloned()
    }

    /// Model `name` as an embedder.
    pub async fn embedder(&self, name: &str) -> Result<LocalEmbedder> {
        Ok(LocalEmbedder::new(name, self.model(name).await?))
    }
}
