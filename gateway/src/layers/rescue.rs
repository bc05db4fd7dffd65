//! `Rescue`: where the gateway's own errors become responses. Needs the `RequestId`
//! from `Trace`, so it runs right inside it; everything below may fail.
//! Handlers return [`Failure`] (an error plus the shape the client expects);
//! its `IntoResponse` only parks it in the response extensions, and `Rescue`
//! renders it here: JSON-RPC error object, A2A HTTP+JSON error, gRPC status, or RFC 9457
//! problem+json (through `convergio_schemas::problem::http`, the renderer
//! every REST surface shares). Errors of inner layers (overload, timeout) get the shape the
//! request path implies. Internal details are logged with the request id and
//! never sent to clients. The outer service is `Infallible`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use convergio_schemas::a2a::MEDIA_JSON;
use convergio_schemas::problem;
use convergio_schemas::Problem;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use tower::{Layer, Service};

use super::RequestId;
use crate::GatewayError;

/// The `WWW-Authenticate` challenge sent with every 401.
pub const WWW_AUTHENTICATE_CHALLENGE: &str = "Bearer realm=\"convergio\", error=\"invalid_token\"";

/// How the client expects errors to look.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorShape {
    /// A JSON-RPC 2.0 error object echoing the request id.
    JsonRpc {
        /// The request id (`null` when unknown).
        id: Value,
    },
    /// The A2A HTTP+JSON `{"error":{code,status,message,details}}` body.
    A2aRest,
    /// An RFC 9457 problem document (Convergio's own REST surfaces).
    Problem,
    /// A gRPC status (trailers-only response) with the HTTP+JSON body's
    /// code, message and ErrorInfo details (`crate::grpc_status`).
    Grpc,
}

/// A handler's failure: the error and the shape to render it in.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: GatewayError,
    /// How to say it.
    pub shape: ErrorShape,
    /// Whether the cause of a failed upstream call (its address, the
    /// transport error) may be shown: only to callers who may read the
    /// agent's card, which names the upstream anyway. Everyone else learns
    /// the category alone.
    pub disclose_cause: bool,
}

// === impl Failure ===

impl Failure {
    /// A failure rendered as `shape`, causes withheld.
    pub fn new(error: GatewayError, shape: ErrorShape) -> Self {
        Self {
            error,
            shape,
            disclose_cause: false,
        }
    }

    /// The same failure, showing the cause of a failed upstream call when
    /// `disclose` is true.
    pub fn with_cause_disclosed(mut self, disclose: bool) -> Self {
        self.disclose_cause = disclose;
        self
    }
}

/// The response extension carrying a parked failure to `Rescue`.
#[derive(Debug, Clone)]
struct ParkedFailure(Arc<Failure>);

impl IntoResponse for Failure {
    fn into_response(self) -> axum::response::Response {
        // The status is a placeholder; Rescue replaces the whole response.
        let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        response
            .extensions_mut()
            .insert(ParkedFailure(Arc::new(self)));
        response
    }
}

/// Layer producing [`Rescue`].
#[derive(Debug, Clone, Default)]
pub struct RescueLayer;

// === impl RescueLayer ===

impl RescueLayer {
    /// A new rescue layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rescue { inner }
    }
}

/// Renders every error of the services below it.
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

// === impl Rescue ===

impl<S, ReqBody> Service<Request<ReqBody>> for Rescue<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<GatewayError>,
    ReqBody: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness errors surface on the call instead (tower services in
        // this stack are always ready).
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let request_id = request.extensions().get::<RequestId>().cloned();
        let shape = shape_for_path(request.method(), request.uri().path());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let failure = match inner.call(request).await {
                Ok(mut response) => match response.extensions_mut().remove::<ParkedFailure>() {
                    None => return Ok(response),
                    Some(ParkedFailure(failure)) => failure,
                },
                Err(error) => Arc::new(Failure::new(error.into(), shape)),
            };
            let mut response = render(&failure, request_id.as_ref());
            // `Observe`, outside, counts upstream failures from this mark.
            if let Some(failed) = super::UpstreamFailed::of(&failure.error) {
                response.extensions_mut().insert(failed);
            }
            Ok(response)
        })
    }
}

/// The error shape a path implies when no handler chose one.
pub(crate) fn shape_for_path(method: &Method, path: &str) -> ErrorShape {
    if path.starts_with(crate::grpc_status::SERVICE_PATH) {
        return ErrorShape::Grpc;
    }
    let agent_tail = path
        .strip_prefix("/agents/")
        .or_else(|| path.strip_prefix("/a2a/"));
    match agent_tail {
        Some(tail) if method == Method::POST && !tail.contains('/') => {
            ErrorShape::JsonRpc { id: Value::Null }
        }
        Some(_) => ErrorShape::A2aRest,
        None if path == "/a2a" => ErrorShape::JsonRpc { id: Value::Null },
        None => ErrorShape::Problem,
    }
}

/// Logs the failure and renders it.
fn render(failure: &Failure, request_id: Option<&RequestId>) -> Response<Body> {
    let error = &failure.error;
    // Logged once, here, with the whole cause chain when the detail must
    // stay in the log.
    problem::http::log_failure(
        error,
        error.kind(),
        error.is_internal(),
        request_id.map(RequestId::as_str),
    );
    let mut response = match &failure.shape {
        ErrorShape::JsonRpc { id } => {
            // Protocol errors travel in a 200 JSON-RPC body; only errors that
            // are about the HTTP exchange itself keep their HTTP status.
            let status = match error {
                GatewayError::AgentNotFound { .. }
                | GatewayError::RouteNotFound { .. }
                | GatewayError::PayloadTooLarge { .. }
                | GatewayError::RequestTimeout
                | GatewayError::Overloaded
                | GatewayError::Unauthenticated { .. }
                | GatewayError::Forbidden { .. }
                | GatewayError::ScopeRequired { .. }
                | GatewayError::UpstreamUnavailable { .. }
                | GatewayError::RateLimited { .. } => error.http_status(),
                _ => 200,
            };
            let body =
                render_jsonrpc_error_value(error, id.clone(), request_id, failure.disclose_cause);
            json_response(status, &body)
        }
        ErrorShape::A2aRest => json_response(
            error.http_status(),
            &render_rest_error_value(error, request_id, failure.disclose_cause),
        ),
        ErrorShape::Grpc => {
            render_grpc_status(error, request_id, failure.disclose_cause).into_http::<Body>()
        }
        ErrorShape::Problem => {
            let mut detail = error.public_message();
            if let (Some((_, _, cause)), true) = (error.upstream_problem(), failure.disclose_cause)
            {
                detail = format!("{detail}: {cause}");
            }
            let mut document = Problem::new(error.kind(), detail);
            document.status = error.http_status();
            document.request_id = request_id.map(|id| id.as_str().to_owned());
            if let GatewayError::SchemaViolation { violations } = error {
                document = document.with_violations(violations.clone());
            }
            // Convergio's own REST shape goes through the one renderer the
            // registry, policy and graph APIs use.
            problem::http::respond(&document, HeaderMap::new())
        }
    };
    if matches!(
        error,
        GatewayError::Overloaded | GatewayError::UpstreamUnavailable { .. }
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(error, GatewayError::Unauthenticated { .. }) {
        // RFC 6750 §3: the challenge names the realm and, since credentials
        // were missing or refused, `invalid_token` (never why).
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE),
        );
    }
    if let GatewayError::RateLimited {
        retry_after_seconds,
    } = error
    {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from((*retry_after_seconds).max(1)),
        );
    }
    response
}

/// An A2A error body (JSON-RPC or HTTP+JSON) with `status`.
fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_JSON));
    response
}

/// The ErrorInfo array for an error the gateway produced. A failed upstream
/// call adds a second ErrorInfo (domain `convergio.dev`) naming its
/// category, and its cause when `disclose_cause`.
fn details(error: &GatewayError, request_id: Option<&RequestId>, disclose_cause: bool) -> Value {
    if let GatewayError::Upstream(failure) = error {
        // The upstream's own details are relayed untouched; when they carry
        // no ErrorInfo, the A2A one its code means is added, so every
        // binding (gRPC reads only the details) names the same error.
        let mut relayed = match &failure.details {
            Value::Array(list) => list.clone(),
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        };
        let has_reason = relayed.iter().any(|detail| detail.get("reason").is_some());
        if let (false, Some(a2a_error)) = (
            has_reason,
            convergio_schemas::a2a::A2aError::from_code(failure.code),
        ) {
            relayed.push(json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": a2a_error.reason(),
                "domain": convergio_schemas::a2a::ERROR_DOMAIN,
            }));
        }
        return Value::Array(relayed);
    }
    let (reason, domain) = error.reason();
    let mut metadata = serde_json::Map::new();
    if let Some(request_id) = request_id {
        metadata.insert("requestId".into(), Value::from(request_id.as_str()));
    }
    let mut detail_list = vec![json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    })];
    if let Some((problem, agent, cause)) = error.upstream_problem() {
        let mut metadata = serde_json::Map::new();
        metadata.insert("category".into(), Value::from(problem.category()));
        metadata.insert("agent".into(), Value::from(agent));
        if disclose_cause {
            metadata.insert("cause".into(), Value::from(cause));
        }
        detail_list.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": problem.reason(),
            "domain": crate::error::CONVERGIO_ERROR_DOMAIN,
            "metadata": metadata,
        }));
    }
    if let GatewayError::GuardrailDenied {
        guardrail,
        reason,
        direction,
        ..
    } = error
    {
        // Which guardrail refused and why, as a second ErrorInfo.
        detail_list.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": crate::error::CONVERGIO_ERROR_DOMAIN,
            "metadata": {"guardrail": guardrail, "direction": direction},
        }));
    }
    if let GatewayError::SchemaViolation { violations } = error {
        let field_violations: Vec<Value> = violations
            .iter()
            .map(|violation| json!({"field": violation.pointer, "description": violation.message}))
            .collect();
        detail_list.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": field_violations,
        }));
    }
    Value::Array(detail_list)
}

/// A JSON-RPC error response object for `error` (also used for errors that
/// end an event stream, which are SSE events rather than responses).
pub(crate) fn render_jsonrpc_error_value(
    error: &GatewayError,
    id: Value,
    request_id: Option<&RequestId>,
    disclose_cause: bool,
) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": error.jsonrpc_code(),
            "message": error.public_message(),
            "data": details(error, request_id, disclose_cause),
        }
    })
}

/// An A2A HTTP+JSON error body for `error`.
pub(crate) fn render_rest_error_value(
    error: &GatewayError,
    request_id: Option<&RequestId>,
    disclose_cause: bool,
) -> Value {
    json!({
        "error": {
            "code": error.http_status(),
            "status": error.grpc_status(),
            "message": error.public_message(),
            "details": details(error, request_id, disclose_cause),
        }
    })
}

/// The gRPC status for `error`: the HTTP+JSON body re-spelled, so both
/// bindings carry the same code, message and details.
pub(crate) fn render_grpc_status(
    error: &GatewayError,
    request_id: Option<&RequestId>,
    disclose_cause: bool,
) -> tonic::Status {
    crate::grpc_status::from_rest_error(&render_rest_error_value(error, request_id, disclose_cause))
}

#[cfg(test)]
mod tests {
    use convergio_schemas::ErrorKind;

    use super::*;

    #[test]
    fn paths_imply_error_shapes() {
        let cases = [
            (
                Method::POST,
                "/agents/echo",
                ErrorShape::JsonRpc { id: Value::Null },
            ),
            (
                Method::POST,
                "/agents/echo/message:send",
                ErrorShape::A2aRest,
            ),
            (Method::GET, "/agents/echo", ErrorShape::A2aRest),
            (
                Method::POST,
                "/a2a",
                ErrorShape::JsonRpc { id: Value::Null },
            ),
            (Method::GET, "/v1/agents", ErrorShape::Problem),
            (
                Method::POST,
                "/lf.a2a.v1.A2AService/GetTask",
                ErrorShape::Grpc,
            ),
        ];
        for (method, path, shape) in cases {
            assert_eq!(shape_for_path(&method, path), shape, "{method} {path}");
        }
    }

    #[tokio::test]
    async fn an_internal_failure_renders_the_one_problem_shape_without_its_cause() {
        let error = GatewayError::internal(
            "reading the tls file /srv/secret.pem",
            std::io::Error::other("permission denied"),
        );
        let failure = Failure::new(error, ErrorShape::Problem);
        let response = render(&failure, Some(&RequestId(Arc::from("req-1"))));
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
        let mut expected = Problem::new(ErrorKind::Internal, problem::INTERNAL_DETAIL);
        expected.request_id = Some("req-1".to_owned());
        assert_eq!(document, expected);
    }

    #[test]
    fn overload_renders_503_with_retry_after() {
        let failure = Failure::new(GatewayError::Overloaded, ErrorShape::Problem);
        let response = render(&failure, None);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
