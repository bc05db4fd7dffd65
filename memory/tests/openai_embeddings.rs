//! The OpenAI-compatible embedding provider against a project-written fake
//! on loopback that speaks the real wire format (`POST /v1/embeddings`,
//! `{"model", "input": [...]}` → `{"data": [{"index", "embedding"}]}`): the
//! organisation's key reaches the `Authorization` header and nowhere else,
//! vectors come back in input order whatever order the provider answers
//! in, and a refusing, broken or mis-sized provider is a typed error that
//! never quotes the key.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use convergio_memory::embed::{Embedders, EmbeddingKey, KeySource, ProviderEmbedders};
use convergio_memory::local::LocalModels;
use convergio_memory::{EmbeddingSpec, MemoryError};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const KEY: &str = "sk-embed-test-0a1b2c3d4e5f";

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

/// Answers in reverse order (the index field says where each belongs);
/// model `refuse` is a 401 quoting the key, `broken` a 500, `short` vectors
/// of the wrong size.
async fn embeddings(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    seen.0
        .lock()
        .expect("lock")
        .push((authorization.clone(), body.clone()));
    let model = body["model"].as_str().unwrap_or_default();
    if model == "refuse" {
        let message = format!("invalid key {KEY}");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": message}})),
        )
            .into_response();
    }
    if model == "broken" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "overloaded").into_response();
    }
    let dimensions = if model == "short" { 2 } else { 3 };
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            let length = text.as_str().unwrap_or_default().len() as f32;
            let vector: Vec<f32> = (0..dimensions).map(|d| length + d as f32).collect();
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    Json(json!({"object": "list", "data": data, "model": model})).into_response()
}

async fn fake_provider() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1"), seen)
}

/// `acme.example` has the secret `embeddings`; nobody else has any.
struct Keys;

#[async_trait]
impl KeySource for Keys {
    async fn secret(
        &self,
        org: &str,
        name: &str,
    ) -> convergio_memory::Result<Option<EmbeddingKey>> {
        Ok((org == "acme.example" && name == "embeddings").then(|| EmbeddingKey::new(KEY)))
    }
}

fn spec(base_url: &str, model: &str, dimensions: usize) -> EmbeddingSpec {
    EmbeddingSpec::Openai {
        base_url: base_url.to_owned(),
        model: model.to_owned(),
        api_key: "secret:embeddings".to_owned(),
        dimensions,
    }
}

#[tokio::test]
async fn embeds_through_an_openai_compatible_provider_with_the_orgs_key() {
    let (base, seen) = fake_provider().await;
    let providers = ProviderEmbedders::new(
        Arc::new(Keys),
        reqwest::Client::new(),
        Arc::new(LocalModels::none()),
    );
    let embedder = providers
        .embedder("acme.example", &spec(&base, "embed-small", 3))
        .await
        .expect("key found");
    let texts = vec!["a".to_owned(), "abc".to_owned(), "abcdef".to_owned()];
    let vectors = embedder.embed(&texts).await.expect("embedded");
    assert_eq!(
        vectors,
        vec![
            vec![1.0, 2.0, 3.0],
            vec![3.0, 4.0, 5.0],
            vec![6.0, 7.0, 8.0]
        ]
    );
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, format!("Bearer {KEY}"));
    assert_eq!(seen[0].1["model"], json!("embed-small"));
    assert_eq!(seen[0].1["input"], json!(["a", "abc", "abcdef"]));
}

#[tokio::test]
async fn a_missing_key_refusing_or_broken_provider_is_a_typed_error_without_the_key() {
    let (base, _) = fake_provider().await;
    let providers = ProviderEmbedders::new(
        Arc::new(Keys),
        reqwest::Client::new(),
        Arc::new(LocalModels::none()),
    );
    let missing = providers
        .embedder("other.example", &spec(&base, "embed-small", 3))
        .await
        .err();
    assert!(
        matches!(&missing, Some(MemoryError::KeyUnavailable { reference }) if reference == "secret:embeddings"),
        "{missing:?}"
    );
    let texts = vec!["hello".to_owned()];
    for (model, dimensions) in [("refuse", 3), ("broken", 3), ("short", 3)] {
        let embedder = providers
            .embedder("acme.example", &spec(&base, model, dimensions))
            .await
            .expect("key found");
        let error = embedder.embed(&texts).await.expect_err("fails");
        assert!(matches!(error, MemoryError::Embedding { .. }), "{error:?}");
        assert_eq!(error.kind(), convergio_schemas::ErrorKind::BadUpstream);
        let text = format!("{error} {error:?}");
        assert!(!text.contains(KEY), "{text}");
    }
    // Nobody listening: unreachable, typed, the key still absent.
    let embedder = providers
        .embedder("acme.example", &spec("http://127.0.0.1:9/v1", "m", 3))
        .await
        .expect("key found");
    let error = embedder.embed(&texts).await.expect_err("unreachable");
    assert!(
        matches!(
            error,
            MemoryError::Embedding {
                unavailable: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains(KEY));
}
