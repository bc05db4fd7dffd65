//! API keys kept in the registry database (issue 4): issuing, listing and
//! revoking them through the admin API (`/v1/api-keys`), and verifying
//! presented keys for the `Authenticate` layer.
//!
//! Verification reads the key's row through a moka cache whose entries live
//! one second, so a key revoked on another replica stops working within a
//! second; revoking on this replica also drops the cached entry at once.
//! Unknown ids are cached too (as absent), so a flood of made-up keys costs
//! at most one query per id per second.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use convergio_auth::{
    api_key_id, generate_api_key, verify_api_key_record, ApiKeyRecord, AuthError,
};
use convergio_registry::keys::{ApiKeyRow, ApiKeyStore};
use serde::{Deserialize, Serialize};

use crate::layers::{ApiKeyVerifier, ErrorShape, Failure};
use crate::{GatewayError, Principal};

/// How long a cached key row is trusted: the cross-replica revocation bound.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// API keys over the registry database.
pub struct StoredApiKeys {
    store: Arc<dyn ApiKeyStore>,
    cache: moka::future::Cache<String, Option<Arc<ApiKeyRecord>>>,
}

impl std::fmt::Debug for StoredApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredApiKeys").finish_non_exhaustive()
    }
}

/// A key as the admin API shows it: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Public id.
    pub id: String,
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    pub org: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Issue time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix seconds.
    pub revoked_at: Option<i64>,
}

/// `POST /v1/api-keys` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// The principal's subject.
    pub subject: String,
    /// The principal's organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime in seconds; no expiry when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// `POST /v1/api-keys` answer: the key, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedKey {
    /// The full key (`cvg_<id>_<secret>`).
    pub key: String,
    /// What is stored.
    #[serde(flatten)]
    pub view: ApiKeyView,
}

// === impl StoredApiKeys ===

impl StoredApiKeys {
    /// Keys over `store`.
    pub fn new(store: Arc<dyn ApiKeyStore>) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(CACHE_TTL)
            .build();
        Self { store, cache }
    }

    /// Issues and stores a new key.
    pub async fn issue(&self, request: &IssueRequest) -> Result<IssuedKey, GatewayError> {
        if request.subject.trim().is_empty() {
            return Err(GatewayError::InvalidParams {
                detail: "subject must not be empty".to_owned(),
            });
        }
        let now = unix_now();
        let expires_at = request.ttl_seconds.map(|ttl| now.saturating_add(ttl));
        let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
        let issued = generate_api_key(
            &request.subject,
            request.org.as_deref(),
            &scopes,
            expires_at,
        )
        .map_err(|error| GatewayError::internal("issuing an api key", error))?;
        let row = ApiKeyRow {
            id: issued.record.id.clone(),
            secret_sha256: issued.record.secret_sha256.clone(),
            subject: issued.record.subject.clone(),
            org: issued.record.org.clone(),
            scopes: issued.record.scopes.clone(),
            created_at: to_i64(now),
            expires_at: expires_at.map(to_i64),
            revoked_at: None,
        };
        self.store.insert(&row).await.map_err(storage_error)?;
        self.cache.invalidate(&row.id).await;
        tracing::info!(key_id = %row.id, subject = %row.subject, "api key issued");
        Ok(IssuedKey {
            key: issued.token,
            view: view(&row),
        })
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyView>, GatewayError> {
        let rows = self.store.list().await.map_err(storage_error)?;
        Ok(rows.iter().map(view).collect())
    }

    /// Revokes a key now; returns whether a live key was revoked.
    pub async fn revoke(&self, id: &str) -> Result<bool, GatewayError> {
        let revoked = self
            .store
            .revoke(id, to_i64(unix_now()))
            .await
            .map_err(storage_error)?;
        self.cache.invalidate(id).await;
        if revoked {
            tracing::info!(key_id = %id, "api key revoked");
        }
        Ok(revoked)
    }

    async fn record(&self, id: &str) -> Result<Option<Arc<ApiKeyRecord>>, AuthError> {
        let store = self.store.clone();
        let key = id.to_owned();
        self.cache
            .try_get_with(id.to_owned(), async move {
                let row = store.get(&key).await?;
                Ok::<_, convergio_registry::RegistryError>(row.map(|row| Arc::new(record(&row))))
            })
            .await
            .map_err(|error| {
                tracing::warn!(%error, "api key lookup failed");
                AuthError::InvalidApiKey
            })
    }
}

#[async_trait]
impl ApiKeyVerifier for StoredApiKeys {
    async fn verify_api_key(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let id = api_key_id(token).ok_or(AuthError::InvalidApiKey)?;
        let record = self.record(id).await?.ok_or(AuthError::InvalidApiKey)?;
        verify_api_key_record(&record, token, now)
    }
}

fn record(row: &ApiKeyRow) -> ApiKeyRecord {
    ApiKeyRecord {
        id: row.id.clone(),
        secret_sha256: row.secret_sha256.clone(),
        subject: row.subject.clone(),
        org: row.org.clone(),
        scopes: row.scopes.clone(),
        expires_at: row
            .expires_at
            .map(|expiry| u64::try_from(expiry).unwrap_or_default()),
        revoked: row.revoked_at.is_some(),
    }
}

fn view(row: &ApiKeyRow) -> ApiKeyView {
    ApiKeyView {
        id: row.id.clone(),
        subject: row.subject.clone(),
        org: row.org.clone(),
        scopes: row.scopes.clone(),
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }
}

fn storage_error(error: convergio_registry::RegistryError) -> GatewayError {
    GatewayError::internal("reading or writing the api key store", error)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

fn to_i64(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// The admin API: `POST`/`GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`.
/// Every route needs a principal with the `admin` scope (the admin token
/// gives one); mount behind the `Authenticate` layer.
pub fn api_keys_router(keys: Arc<StoredApiKeys>) -> Router {
    Router::new()
        .route("/v1/api-keys", get(list_handler).post(issue_handler))
        .route("/v1/api-keys/{id}", delete(revoke_handler))
        .with_state(keys)
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, issue_handler, revoke_handler),
    tags((name = "api-keys", description = "API keys (administrators)"))
)]
pub(crate) struct ApiKeysApiDoc;

/// Why `principal` may not manage keys, if it may not.
fn admin_refusal(principal: &Principal) -> Option<Failure> {
    if principal.has_scope("admin") {
        None
    } else if principal.method == convergio_schemas::AuthMethod::Anonymous {
        Some(Failure::new(
            GatewayError::Unauthenticated {
                reason: "api key administration needs credentials".to_owned(),
            },
            ErrorShape::Problem,
        ))
    } else {
        Some(Failure::new(
            GatewayError::ScopeRequired {
                detail: "api key administration needs the admin scope".to_owned(),
            },
            ErrorShape::Problem,
        ))
    }
}

#[utoipa::path(
    post,
    path = "/v1/api-keys",
    operation_id = "issueApiKey",
    tag = "api-keys",
    request_body(description = "`{subject, org?, scopes?, expires_at?}`", content((Object = "application/json"))),
    responses(
        (status = 201, description = "Issued; the key's value is shown this once.", body = Object),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn issue_handler(
    State(keys): State<Arc<StoredApiKeys>>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    if let Some(failure) = admin_refusal(&principal) {
        return Err(failure);
    }
    let invalid =
        |detail: String| Failure::new(GatewayError::InvalidParams { detail }, ErrorShape::Problem);
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| invalid(error.to_string()))?;
    // Refused here, the same for both backends (issue 15).
    if let Some(pointer) = convergio_schemas::find_nul(&value) {
        return Err(invalid(format!(
            "{pointer}: {}",
            convergio_schemas::NUL_MESSAGE
        )));
    }
    let request: IssueRequest =
        serde_json::from_value(value).map_err(|error| invalid(error.to_string()))?;
    let issued = keys
        .issue(&request)
        .await
        .map_err(|error| Failure::new(error, ErrorShape::Problem))?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/api-keys",
    operation_id = "listApiKeys",
    tag = "api-keys",
    responses(
        (status = 200, description = "Every key (never its secret).", body = Object),
    )
)]
async fn list_handler(
    State(keys): State<Arc<StoredApiKeys>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, Failure> {
    if let Some(failure) = admin_refusal(&principal) {
        return Err(failure);
    }
    let listed = keys
        .list()
        .await
        .map_err(|error| Failure::new(error, ErrorShape::Problem))?;
    Ok(Json(serde_json::json!({ "keys": listed })).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    operation_id = "revokeApiKey",
    tag = "api-keys",
    params(
        ("id" = String, Path, description = "The key's id"),
    ),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No such key"),
    )
)]
async fn revoke_handler(
    State(keys): State<Arc<StoredApiKeys>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    if let Some(failure) = admin_refusal(&principal) {
        return Err(failure);
    }
    match keys.revoke(&id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(Failure::new(
            GatewayError::RouteNotFound {
                path: format!("/v1/api-keys/{id}"),
            },
            ErrorShape::Problem,
        )),
        Err(error) => Err(Failure::new(error, ErrorShape::Problem)),
    }
}
