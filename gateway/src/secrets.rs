//! Organisations' secrets (issue 17): `PUT /v1/secrets/{name}` (the body is
//! the value; answered 204, never echoed), `GET /v1/secrets` (names and
//! times only) and `DELETE /v1/secrets/{name}`, decided by policy
//! (`manage_secret` on the caller's organisation), and
//! [`Secrets::resolve`], the one way a value comes back out: to the key
//! source of a model agent, per call.
//!
//! Values are sealed with the deployment's
//! [`SecretsKey`](convergio_auth::SecretsKey) before they reach the store
//! and opened only in [`Secrets::resolve`]; in between they are
//! [`SecretValue`]s, which print as a placeholder. Nothing here logs a
//! value, puts one in an error or an audit record (the audit sees the
//! action and the organisation, never the body). Nothing is cached, so a
//! secret set again is the one the next call uses, on every replica.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use convergio_auth::secret_box::Sealed;
use convergio_auth::{SecretValue, SecretsKey};
use convergio_policy::Action;
use convergio_registry::model_agents::{SealedSecretRow, SecretStore};
use convergio_schemas::model_agent::check_secret_name;
use serde::{Deserialize, Serialize};

use crate::authorize::PolicyGate;
use crate::layers::{ErrorShape, Failure};
use crate::model_agents::{principal_of, refusal, rfc3339};
use crate::{GatewayError, Principal};

/// The largest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// A secret as listing shows it: its name and when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    /// The secret's name.
    pub name: String,
    /// Last set, RFC 3339.
    pub updated_at: String,
}

/// Sealed secrets of each organisation.
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    key: Arc<SecretsKey>,
    default_org: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("default_org", &self.default_org)
            .finish_non_exhaustive()
    }
}

// === impl Secrets ===

impl Secrets {
    /// Secrets in `store`, sealed with `key`; callers without an
    /// organisation keep theirs in `default_org` (the deployment's).
    pub fn new(
        store: Arc<dyn SecretStore>,
        key: Arc<SecretsKey>,
        default_org: impl Into<String>,
    ) -> Self {
        Self {
            store,
            key,
            default_org: default_org.into(),
        }
    }

    /// The organisation whose secrets `principal` manages.
    pub fn org_of(&self, principal: &Principal) -> String {
        principal
            .org
            .clone()
            .unwrap_or_else(|| self.default_org.clone())
    }

    /// The deployment's organisation (model agents declared by callers
    /// without one belong to it).
    pub fn default_org(&self) -> &str {
        &self.default_org
    }

    /// Seals and stores `value` as `org`'s secret `name`, replacing any.
    pub async fn set(
        &self,
        org: &str,
        name: &str,
        value: &SecretValue,
    ) -> Result<(), GatewayError> {
        check_secret_name(name).map_err(|error| GatewayError::InvalidParams {
            detail: error.to_string(),
        })?;
        if value.is_empty() {
            return Err(GatewayError::InvalidParams {
                detail: "a secret must not be empty".to_owned(),
            });
        }
        let sealed = self
            .key
            .seal(org, name, value)
            .map_err(|error| GatewayError::internal("sealing a secret", error))?;
        self.store
            .put(&SealedSecretRow {
                org: org.to_owned(),
                name: name.to_owned(),
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                updated_at: chrono::Utc::now().timestamp(),
            })
            .await
            .map_err(storage_error)?;
        tracing::info!(org = %org, secret = %name, "secret set");
        Ok(())
    }

    /// `org`'s secrets: names and times, never values.
    pub async fn list(&self, org: &str) -> Result<Vec<SecretView>, GatewayError> {
        let listed = self.store.list(org).await.map_err(storage_error)?;
        Ok(listed
            .into_iter()
            .map(|info| SecretView {
                name: info.name,
                updated_at: rfc3339(info.updated_at),
            })
            .collect())
    }

    /// Deletes `org`'s secret `name`; whether it existed.
    pub async fn delete(&self, org: &str, name: &str) -> Result<bool, GatewayError> {
        let deleted = self.store.delete(org, name).await.map_err(storage_error)?;
        if deleted {
            tracing::info!(org = %org, secret = %name, "secret deleted");
        }
        Ok(deleted)
    }

    /// `org`'s secret `name` in clear, read and opened now (so rotation
    /// takes effect on the next call); `None` when it is not set.
    pub async fn resolve(
        &self,
        org: &str,
        name: &str,
    ) -> Result<Option<SecretValue>, GatewayError> {
        let Some(row) = self.store.get(org, name).await.map_err(storage_error)? else {
            return Ok(None);
        };
        let sealed = Sealed {
            nonce: row.nonce,
            ciphertext: row.ciphertext,
        };
        self.key
            .open(org, name, &sealed)
            .map(Some)
            .map_err(|error| GatewayError::internal("opening a stored secret", error))
    }
}

fn storage_error(error: convergio_registry::RegistryError) -> GatewayError {
    GatewayError::internal("reading or writing secrets", error)
}

#[derive(Clone)]
struct ApiState {
    secrets: Arc<Secrets>,
    gate: Arc<PolicyGate>,
}

/// `PUT`/`DELETE /v1/secrets/{name}` and `GET /v1/secrets`, decided by
/// `gate`; mount behind the `Authenticate` layer.
pub fn secrets_router(secrets: Arc<Secrets>, gate: Arc<PolicyGate>) -> Router {
    Router::new()
        .route("/v1/secrets", get(list_handler))
        .route(
            "/v1/secrets/{name}",
            put(put_handler).delete(delete_handler),
        )
        .with_state(ApiState { secrets, gate })
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, put_handler, delete_handler),
    tags((name = "secrets", description = "Organisation secrets, sealed at rest (model provider keys)"))
)]
pub(crate) struct SecretsApiDoc;

fn problem(error: GatewayError) -> Failure {
    Failure::new(error, ErrorShape::Problem)
}

/// The caller and its organisation, once policy allowed `manage_secret`.
async fn admitted(
    state: &ApiState,
    extensions: &axum::http::Extensions,
) -> Result<(Principal, String), Failure> {
    let principal = principal_of(extensions);
    let org = state.secrets.org_of(&principal);
    let action = Action::ManageSecret;
    if state
        .gate
        .decide_org(&principal, action, &org, extensions)
        .await
    {
        Ok((principal, org))
    } else {
        Err(refusal(&principal, action, "secrets"))
    }
}

#[utoipa::path(
    put,
    path = "/v1/secrets/{name}",
    operation_id = "putSecret",
    tag = "secrets",
    params(
        ("name" = String, Path, description = "The secret's name"),
    ),
    request_body(description = "`{value}`: the secret value", content((Object = "application/json"))),
    responses(
        (status = 204, description = "Stored, sealed at rest."),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn put_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let (_, org) = admitted(&state, request.extensions()).await?;
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_SECRET_BYTES)
        .await
        .map_err(|_| {
            problem(GatewayError::PayloadTooLarge {
                limit: MAX_SECRET_BYTES,
            })
        })?;
    // The value is never quoted back, whatever is wrong with it.
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        problem(GatewayError::InvalidParams {
            detail: "a secret must be UTF-8 text".to_owned(),
        })
    })?;
    if text.contains('\0') {
        return Err(problem(GatewayError::InvalidParams {
            detail: convergio_schemas::NUL_MESSAGE.to_owned(),
        }));
    }
    state
        .secrets
        .set(&org, &name, &SecretValue::new(text))
        .await
        .map_err(problem)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/v1/secrets",
    operation_id = "listSecrets",
    tag = "secrets",
    responses(
        (status = 200, description = "The names of the organisation's secrets (never their values).", body = Object),
    )
)]
async fn list_handler(
    State(state): State<ApiState>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let (_, org) = admitted(&state, request.extensions()).await?;
    let listed = state.secrets.list(&org).await.map_err(problem)?;
    Ok(Json(serde_json::json!({ "org": org, "secrets": listed })).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/secrets/{name}",
    operation_id = "deleteSecret",
    tag = "secrets",
    params(
        ("name" = String, Path, description = "The secret's name"),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such secret"),
    )
)]
async fn delete_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Failure> {
    let (_, org) = admitted(&state, request.extensions()).await?;
    if state.secrets.delete(&org, &name).await.map_err(problem)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(problem(GatewayError::RouteNotFound {
            path: format!("/v1/secrets/{name}"),
        }))
    }
}
