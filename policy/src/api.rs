//! The policy administration REST API:
//!
//! - `GET /v1/policies`: the active version and every version (without text);
//! - `GET /v1/policies/{version}`: one version with its text;
//! - `PUT /v1/policies` `{"policies", "reason"}` → 201 with the new version;
//! - `DELETE /v1/policies`: activates the administrators-only set;
//! - `POST /v1/policies:rollback` `{"version", "reason"?}`;
//! - `POST /v1/policies:check` `{principal, action, resource, context?}`;
//! - `GET /v1/audit` (filters, cursor paging), `GET /v1/audit:verify`.
//!
//! Needs the caller's [`Principal`] as a request extension (the gateway's
//! `Authenticate` layer sets it; without one the caller is anonymous). Every
//! route requires `administer_policy`. Errors are problem+json.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use convergio_schemas::problem;
use convergio_schemas::{ErrorKind, Principal, Problem, Violation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::admin::PolicyAdmin;
use crate::audit::AuditFilter;
use crate::engine::{Action, AuthzRequest, RequestContext, Resource};
use crate::error::PolicyError;

/// The router's state.
#[derive(Clone)]
pub struct PolicyApi {
    /// Engine, store and audit log.
    pub admin: PolicyAdmin,
}

/// `PUT /v1/policies` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicies {
    /// The Cedar text.
    pub policies: String,
    /// Why (kept with the version).
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/policies:rollback` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to make active again.
    pub version: i64,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/policies:check` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The caller to decide for.
    pub principal: Principal,
    /// The action.
    pub action: Action,
    /// The resource.
    pub resource: Resource,
    /// The context.
    #[serde(default)]
    pub context: RequestContext,
}

/// `POST /v1/policies:check` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResponse {
    /// `allow` or `deny`.
    pub decision: String,
    /// The policies that determined it.
    pub determining: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
    /// The active version decided against.
    pub version: Option<i64>,
}

/// The OpenAPI description of the policy and audit routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_policies,
        put_policies,
        delete_policies,
        get_policy,
        rollback,
        check,
        query_audit,
        verify_audit
    ),
    components(schemas(PutPolicies, RollbackRequest, CheckResponse)),
    tags((name = "policy", description = "Cedar policy versions, decisions and the audit chain"))
)]
pub struct PolicyApiDoc;

/// The policy and audit routes.
pub fn router(state: PolicyApi) -> Router {
    Router::new()
        .route(
            "/v1/policies",
            get(list_policies).put(put_policies).delete(delete_policies),
        )
        .route("/v1/policies/{version}", get(get_policy))
        .route("/v1/policies:rollback", post(rollback))
        .route("/v1/policies:check", post(check))
        .route("/v1/audit", get(query_audit))
        .route("/v1/audit:verify", get(verify_audit))
        .with_state(state)
}

/// An error answered as problem+json.
#[derive(Debug)]
pub struct ApiError(Box<Problem>);

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        // The one error path: internals are logged once and never shown.
        let mut problem = problem::http::problem_for(&error, error.kind());
        if let PolicyError::InvalidPolicy { diagnostics } = &error {
            problem = problem.with_violations(
                diagnostics
                    .iter()
                    .map(|diagnostic| Violation {
                        pointer: "/policies".to_owned(),
                        message: format!(
                            "line {}, column {}: {}",
                            diagnostic.line, diagnostic.column, diagnostic.message
                        ),
                    })
                    .collect(),
            );
        }
        Self(Box::new(problem))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem::http::respond(&self.0, HeaderMap::new())
    }
}

fn invalid(detail: impl Into<String>, violations: Vec<Violation>) -> ApiError {
    ApiError(Box::new(
        Problem::new(ErrorKind::InvalidInput, detail).with_violations(violations),
    ))
}

type ApiResult<T> = Result<T, ApiError>;

fn caller(principal: Option<Extension<Principal>>) -> Principal {
    principal.map_or_else(Principal::anonymous, |Extension(principal)| principal)
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Parses a JSON body, naming missing required fields.
fn parse_body<T: DeserializeOwned>(body: &Bytes, required: &[&str]) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError(Box::new(Problem::new(
            ErrorKind::MalformedBody,
            format!("body is not JSON: {error}"),
        )))
    })?;
    let Some(object) = value.as_object() else {
        return Err(invalid("body must be a JSON object", Vec::new()));
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|field| object.get(*field).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return Err(invalid(
            format!("missing fields: {}", missing.join(", ")),
            missing
                .iter()
                .map(|field| Violation {
                    pointer: format!("/{field}"),
                    message: "required".to_owned(),
                })
                .collect(),
        ));
    }
    serde_json::from_value(value).map_err(|error| invalid(error.to_string(), Vec::new()))
}

#[utoipa::path(get, path = "/v1/policies", operation_id = "listPolicies", tag = "policy",
    responses((status = 200, description = "`{active, versions: [{version, author, reason, created_at, active}]}`", body = Object)))]
async fn list_policies(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    state
        .admin
        .require_administrator(&principal, request_id(&headers))
        .await?;
    let versions = state.admin.store().list_versions().await?;
    let summaries: Vec<Value> = versions
        .iter()
        .map(|version| {
            json!({
                "version": version.version,
                "author": version.author,
                "reason": version.reason,
                "created_at": version.created_at,
                "active": version.active,
            })
        })
        .collect();
    Ok(Json(json!({
        "active": state.admin.engine().active_version(),
        "versions": summaries,
    })))
}

#[utoipa::path(get, path = "/v1/policies/{version}", operation_id = "getPolicy", tag = "policy",
    params(("version" = i64, Path, description = "A policy version")),
    responses(
        (status = 200, description = "The version with its Cedar text.", body = Object),
        (status = 404, description = "No such version"),
    ))]
async fn get_policy(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    version: Result<Path<i64>, PathRejection>,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    state
        .admin
        .require_administrator(&principal, request_id(&headers))
        .await?;
    let Path(version) =
        version.map_err(|_| invalid("the version must be an integer", Vec::new()))?;
    let stored = state.admin.store().get(Some(version)).await?;
    Ok(Json(json!(stored)))
}

#[utoipa::path(put, path = "/v1/policies", operation_id = "putPolicies", tag = "policy",
    request_body(content((PutPolicies = "application/json"))),
    responses(
        (status = 201, description = "Stored and activated; the new version.", body = Object),
        (status = 409, description = "The set would lock every administrator out"),
    ))]
async fn put_policies(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = caller(principal);
    let request_id = request_id(&headers);
    state
        .admin
        .require_administrator(&principal, request_id.clone())
        .await?;
    let put: PutPolicies = parse_body(&body, &["policies"])?;
    let stored = state
        .admin
        .put(&principal, &put.policies, &put.reason, request_id)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(stored))).into_response())
}

#[utoipa::path(delete, path = "/v1/policies", operation_id = "resetPolicies", tag = "policy",
    responses((status = 200, description = "The administrators-only set, activated as a new version.", body = Object)))]
async fn delete_policies(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    let request_id = request_id(&headers);
    state
        .admin
        .require_administrator(&principal, request_id.clone())
        .await?;
    let stored = state.admin.reset(&principal, "", request_id).await?;
    Ok(Json(json!(stored)))
}

#[utoipa::path(post, path = "/v1/policies:rollback", operation_id = "rollbackPolicies", tag = "policy",
    request_body(content((RollbackRequest = "application/json"))),
    responses(
        (status = 200, description = "The version made active again.", body = Object),
        (status = 404, description = "No such version"),
        (status = 409, description = "The set would lock every administrator out"),
    ))]
async fn rollback(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    let request_id = request_id(&headers);
    state
        .admin
        .require_administrator(&principal, request_id.clone())
        .await?;
    let request: RollbackRequest = parse_body(&body, &["version"])?;
    let stored = state
        .admin
        .rollback(&principal, request.version, &request.reason, request_id)
        .await?;
    Ok(Json(json!(stored)))
}

#[utoipa::path(post, path = "/v1/policies:check", operation_id = "checkPolicy", tag = "policy",
    request_body(description = "`{principal, action, resource, context?}`: the decision to try", content((Object = "application/json"))),
    responses((status = 200, description = "The decision under the active set.", body = CheckResponse)))]
async fn check(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<CheckResponse>> {
    let principal = caller(principal);
    state
        .admin
        .require_administrator(&principal, request_id(&headers))
        .await?;
    let request: CheckRequest = parse_body(&body, &["principal", "action", "resource"])?;
    let engine = state.admin.engine();
    let decision = engine.authorize(&AuthzRequest {
        principal: &request.principal,
        action: request.action,
        resource: &request.resource,
        context: &request.context,
    });
    Ok(Json(CheckResponse {
        decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
        determining: decision.determining,
        errors: decision.errors,
        version: engine.active_version(),
    }))
}

#[utoipa::path(get, path = "/v1/audit", operation_id = "queryAudit", tag = "policy",
    params(AuditFilter),
    responses((status = 200, description = "`{records, next}`: one page of audit records, oldest first.", body = Object)))]
async fn query_audit(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    state
        .admin
        .require_administrator(&principal, request_id(&headers))
        .await?;
    let Query(filter) = filter.map_err(|rejection| invalid(rejection.body_text(), Vec::new()))?;
    let page = state.admin.audit().query(&filter).await?;
    Ok(Json(json!(page)))
}

#[utoipa::path(get, path = "/v1/audit:verify", operation_id = "verifyAudit", tag = "policy",
    responses(
        (status = 200, description = "`{records, head, from}`: the chain verifies.", body = Object),
        (status = 409, description = "The chain does not verify"),
    ))]
async fn verify_audit(
    State(state): State<PolicyApi>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let principal = caller(principal);
    state
        .admin
        .require_administrator(&principal, request_id(&headers))
        .await?;
    let verified = state.admin.audit().verify().await?;
    Ok(Json(json!(verified)))
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[tokio::test]
    async fn an_internal_failure_renders_the_one_problem_shape_without_its_cause() {
        let error = PolicyError::Io {
            path: "/srv/secret/policies.cedar".to_owned(),
            source: std::io::Error::other("permission denied"),
        };
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            problem::PROBLEM_JSON
        );
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a small body");
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
        let document: Problem = serde_json::from_slice(&body).expect("a problem document");
        assert_eq!(
            document,
            Problem::new(ErrorKind::Internal, problem::INTERNAL_DETAIL)
        );
    }
}
