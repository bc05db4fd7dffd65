//! Federation's HTTP surface: the public JWKS at `/.well-known/jwks.json`
//! (no credentials needed: it is what peers pin or fetch), and the peer
//! administration API under `/v1/peers` (admin scope; problem+json errors):
//!
//! - `GET /v1/peers`, `POST /v1/peers` (a [`PeerSpec`]; 201, 409 if the
//!   domain exists);
//! - `GET /v1/peers/{domain}`, `DELETE /v1/peers/{domain}` (204);
//! - `POST /v1/peers/{domain}/approve` (`{"kids": [...]}` or no body: all
//!   pending keys);
//! - `POST /v1/peers/{domain}/refresh` (fetch the JWKS again; new keys are
//!   pending);
//! - `POST /v1/peers/{domain}:sync` (pull the peer's catalogue into the
//!   registry now; answers the [`SyncReport`](super::sync::SyncReport)).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::{Federation, PeerSpec};
use crate::layers::{ErrorShape, Failure};
use crate::{GatewayError, Principal};

/// The path of the published key set (the federation wire contract, kept
/// in `convergio-auth` so the `Authenticate` layer can name it as public).
pub use convergio_auth::org_key::JWKS_PATH;

/// `POST /v1/peers/{domain}/approve` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The pending keys to approve; all of them when absent.
    #[serde(default)]
    pub kids: Option<Vec<String>>,
}

/// The JWKS route and the `/v1/peers` admin API over `federation`; mount
/// behind the `Authenticate` layer.
pub fn federation_router(federation: Arc<Federation>) -> Router {
    Router::new()
        .route(JWKS_PATH, get(jwks_handler))
        .route("/v1/peers", get(list_handler).post(add_handler))
        .route(
            "/v1/peers/{domain}",
            get(show_handler).delete(remove_handler).post(sync_handler),
        )
        .route("/v1/peers/{domain}/approve", post(approve_handler))
        .route("/v1/peers/{domain}/refresh", post(refresh_handler))
        .with_state(federation)
}

/// The OpenAPI description of these routes (merged into the gateway's
/// document by [`crate::openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_handler, add_handler, show_handler, remove_handler, sync_handler, approve_handler, refresh_handler),
    tags((name = "federation", description = "Federation peers: add, approve, refresh keys, sync agents"))
)]
pub(crate) struct FederationApiDoc;

fn problem(error: GatewayError) -> Failure {
    Failure::new(error, ErrorShape::Problem)
}

/// Why `principal` may not administer peers, if it may not.
fn admin_refusal(principal: &Principal) -> Result<(), Box<Failure>> {
    if principal.has_scope("admin") {
        Ok(())
    } else if principal.method == convergio_schemas::AuthMethod::Anonymous {
        Err(Box::new(problem(GatewayError::Unauthenticated {
            reason: "peer administration needs credentials".to_owned(),
        })))
    } else {
        Err(Box::new(problem(GatewayError::ScopeRequired {
            detail: "peer administration needs the admin scope".to_owned(),
        })))
    }
}

async fn jwks_handler(State(federation): State<Arc<Federation>>) -> Response {
    let mut response = Json(federation.key().jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[utoipa::path(
    get,
    path = "/v1/peers",
    operation_id = "listPeers",
    tag = "federation",
    responses(
        (status = 200, description = "Every peer with its state and trust.", body = Object),
    )
)]
async fn list_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    let peers = federation.list().await.map_err(problem)?;
    Ok(Json(serde_json::json!({ "peers": peers })).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/peers",
    operation_id = "addPeer",
    tag = "federation",
    request_body(description = "`{domain, trust?}`: the peer to add; its JWKS is fetched from its well-known URL", content((Object = "application/json"))),
    responses(
        (status = 201, description = "Added, pending approval.", body = Object),
        (status = 409, description = "The peer exists already"),
        (status = 415, description = "The body is not application/json"),
    )
)]
async fn add_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    let spec: PeerSpec = serde_json::from_slice(&body).map_err(|error| {
        problem(GatewayError::InvalidParams {
            detail: error.to_string(),
        })
    })?;
    let added = federation.add(&spec, false).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/peers/{domain}",
    operation_id = "getPeer",
    tag = "federation",
    params(
        ("domain" = String, Path, description = "The peer organisation's domain"),
    ),
    responses(
        (status = 200, description = "The peer.", body = Object),
        (status = 404, description = "No such peer"),
    )
)]
async fn show_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    Path(domain): Path<String>,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    let peer = federation.get(&domain).await.map_err(problem)?;
    Ok(Json(peer).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/peers/{domain}",
    operation_id = "removePeer",
    tag = "federation",
    params(
        ("domain" = String, Path, description = "The peer organisation's domain"),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "No such peer"),
    )
)]
async fn remove_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    Path(domain): Path<String>,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    federation.remove(&domain).await.map_err(problem)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/peers/{domain}:sync` (the custom-method spelling: the path
/// parameter carries the `:sync` suffix).
#[utoipa::path(
    post,
    path = "/v1/peers/{domain}",
    operation_id = "syncPeer",
    tag = "federation",
    params(
        ("domain" = String, Path, description = "`<domain>:sync`"),
    ),
    responses(
        (status = 200, description = "`{domain}:sync`: the peer's agents were synchronised; the outcome.", body = Object),
        (status = 404, description = "No such peer or action"),
        (status = 502, description = "The peer answered badly"),
        (status = 504, description = "The peer did not answer in time"),
    )
)]
async fn sync_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    Path(target): Path<String>,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    let Some(domain) = target.strip_suffix(":sync") else {
        return Err(problem(GatewayError::RouteNotFound {
            path: format!("/v1/peers/{target}"),
        }));
    };
    // An unknown peer is the same 404 as elsewhere in this API.
    federation.get(domain).await.map_err(problem)?;
    let report = federation.sync_peer(domain).await.map_err(problem)?;
    Ok(Json(report).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/peers/{domain}/approve",
    operation_id = "approvePeer",
    tag = "federation",
    params(
        ("domain" = String, Path, description = "The peer organisation's domain"),
    ),
    responses(
        (status = 200, description = "Approved.", body = Object),
        (status = 404, description = "No such peer"),
    )
)]
async fn approve_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    Path(domain): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    let request: ApproveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            problem(GatewayError::InvalidParams {
                detail: error.to_string(),
            })
        })?
    };
    let peer = federation
        .approve(&domain, request.kids.as_deref())
        .await
        .map_err(problem)?;
    Ok(Json(peer).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/peers/{domain}/refresh",
    operation_id = "refreshPeer",
    tag = "federation",
    params(
        ("domain" = String, Path, description = "The peer organisation's domain"),
    ),
    responses(
        (status = 200, description = "The peer's keys, fetched again.", body = Object),
        (status = 404, description = "No such peer"),
        (status = 502, description = "The peer answered badly"),
        (status = 504, description = "The peer did not answer in time"),
    )
)]
async fn refresh_handler(
    State(federation): State<Arc<Federation>>,
    Extension(principal): Extension<Principal>,
    Path(domain): Path<String>,
) -> Result<Response, Failure> {
    admin_refusal(&principal).map_err(|failure| *failure)?;
    // Only administrators get here: the fetch's cause is theirs to read.
    let peer = federation
        .refresh(&domain)
        .await
        .map_err(|error| problem(error).with_cause_disclosed(true))?;
    Ok(Json(peer).into_response())
}
