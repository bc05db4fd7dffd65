//! A fake OpenAI-compatible embeddings provider on loopback (the real one
//! is the outside internet): `POST /v1/embeddings` answers each input with
//! a deterministic bag-of-words vector, so texts that share words point the
//! same way; it checks the bearer key, remembers every `Authorization` it
//! saw, and answers 500 for `model: fail`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Hashes each lowercase word into one of `dimensions` buckets (FNV-1a),
/// then normalises.
pub fn bag_of_words(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0_f32; dimensions.max(1)];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let bucket = (hash % vector.len() as u64) as usize;
        vector[bucket] += 1.0;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    vector.iter().map(|v| v / norm).collect()
}

/// The running fake; it serves until the test's runtime stops.
#[derive(Clone)]
pub struct FakeEmbeddings {
    /// `http://127.0.0.1:PORT/v1`, an embedding `base_url`.
    pub base_url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Settings {
    key: String,
    dimensions: usize,
    seen: Arc<Mutex<Vec<String>>>,
}

// === impl FakeEmbeddings ===

impl FakeEmbeddings {
    /// Starts the fake on a free loopback port, accepting `key`.
    pub async fn start(key: &str, dimensions: usize) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let settings = Settings {
            key: key.to_owned(),
            dimensions,
            seen: seen.clone(),
        };
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{address}/v1"),
            seen,
        }
    }

    /// Every `Authorization` header seen, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn embeddings(
    State(settings): State<Settings>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    settings
        .seen
        .lock()
        .expect("lock")
        .push(authorization.clone());
    if authorization != format!("Bearer {}", settings.key) {
        return (StatusCode::UNAUTHORIZED, "bad key").into_response();
    }
    if body["model"] == json!("fail") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
    }
    let data: Vec<Value> = body["input"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = bag_of_words(text.as_str().unwrap_or_default(), settings.dimensions);
            json!({"index": index, "embedding": vector})
        })
        .collect();
    Json(json!({"data": data})).into_response()
}
