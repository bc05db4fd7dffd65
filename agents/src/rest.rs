//! The HTTP+JSON binding, routed by hand so that one parser handles the
//! `/{tenant}` prefix, the `{id}:verb` segments and percent-encoded colons
//! (`/message%3Asend`, as the Python SDK sends it).
//!
//! This binding serves A2A 1.0 only: a request without `A2A-Version` is a
//! 0.3 request, and 0.3's HTTP+JSON dialect is not served here, so it gets
//! `400 VERSION_NOT_SUPPORTED` (0.3 is served over JSON-RPC).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use convergio_schemas::a2a::{self, A2aError, ProtocolVersion};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use crate::jsonrpc::request_version;
use crate::protocol::ProtocolError;
use crate::server::ServerState;
use crate::service::AgentService;
use crate::sse::sse_response;

/// A recognised HTTP+JSON route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Send,
    Stream,
    ListTasks,
    GetTask(String),
    Cancel(String),
    Subscribe(String),
    PushConfigs(String),
    PushConfig(String, String),
    ExtendedCard,
}

fn match_segments(segments: &[&str]) -> Option<Route> {
    match segments {
        ["message:send"] => Some(Route::Send),
        ["message:stream"] => Some(Route::Stream),
        ["tasks"] => Some(Route::ListTasks),
        ["extendedAgentCard"] => Some(Route::ExtendedCard),
        ["tasks", id_verb] => match id_verb.rsplit_once(':') {
            Some((id, "cancel")) if !id.is_empty() => Some(Route::Cancel(id.to_owned())),
            Some((id, "subscribe")) if !id.is_empty() => Some(Route::Subscribe(id.to_owned())),
            Some(_) => None,
            None if !id_verb.is_empty() => Some(Route::GetTask((*id_verb).to_owned())),
            None => None,
        },
        ["tasks", id, "pushNotificationConfigs"] => Some(Route::PushConfigs((*id).to_owned())),
        ["tasks", id, "pushNotificationConfigs", config] => {
            Some(Route::PushConfig((*id).to_owned(), (*config).to_owned()))
        }
        _ => None,
    }
}

/// Splits a decoded path into a route, trying it first without and then
/// with a leading `/{tenant}` segment.
fn route(path: &str) -> Option<(Route, Option<String>)> {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    if let Some(route) = match_segments(&segments) {
        return Some((route, None));
    }
    let (tenant, rest) = segments.split_first()?;
    if tenant.is_empty() {
        return None;
    }
    match_segments(rest).map(|route| (route, Some((*tenant).to_owned())))
}

fn allowed(route: &Route, method: &HttpMethod) -> bool {
    match route {
        Route::Send | Route::Stream | Route::Cancel(_) => method == HttpMethod::POST,
        Route::ListTasks | Route::GetTask(_) | Route::ExtendedCard => method == HttpMethod::GET,
        Route::Subscribe(_) => method == HttpMethod::GET || method == HttpMethod::POST,
        Route::PushConfigs(_) => method == HttpMethod::GET || method == HttpMethod::POST,
        Route::PushConfig(_, _) => method == HttpMethod::GET || method == HttpMethod::DELETE,
    }
}

fn json_body(status: u16, body: &Value, media_type: &'static str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

fn error_response(error: &ProtocolError) -> Response {
    let (status, body) = error.to_rest();
    json_body(status, &body, a2a::MEDIA_JSON)
}

fn plain_error(status: u16, grpc: &str, message: &str, reason: &str) -> Response {
    json_body(
        status,
        &a2a::rest_error(status, grpc, message, reason),
        a2a::MEDIA_JSON,
    )
}

fn ok(body: &Value) -> Response {
    json_body(200, body, a2a::MEDIA_A2A_JSON)
}

/// Query parameters as a JSON object of strings; a repeated key keeps the
/// last value. Undecodable pairs are reported.
fn query_params(uri: &Uri) -> Result<Map<String, Value>, ProtocolError> {
    let mut params = Map::new();
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_decode_str(&text.replace('+', " "))
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| ProtocolError::invalid(key, "is not valid percent-encoded UTF-8"))
        };
        params.insert(decode(key)?, Value::String(decode(value)?));
    }
    Ok(params)
}

fn body_params(body: &Bytes) -> Result<Value, ProtocolError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ProtocolError::invalid("body", "must be a JSON object")),
        Err(error) => Err(ProtocolError::invalid(
            "body",
            format!("is not valid JSON: {error}"),
        )),
    }
}

/// Handles every request that is not JSON-RPC or the card.
pub(crate) async fn handle(
    State(state): State<Arc<ServerState>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(path) = percent_decode_str(uri.path()).decode_utf8() else {
        return plain_error(
            400,
            "INVALID_ARGUMENT",
            "The path is not valid percent-encoded UTF-8",
            "INVALID_PATH",
        );
    };
    let Some((route, _tenant)) = route(&path) else {
        return plain_error(404, "NOT_FOUND", "No such route", "NOT_FOUND");
    };
    if !allowed(&route, &method) {
        return plain_error(
            405,
            "UNIMPLEMENTED",
            "Method not allowed on this route",
            "METHOD_NOT_ALLOWED",
        );
    }
    match request_version(&headers, &uri) {
        Some(ProtocolVersion::V1_0) if state.dialects.v1 => {}
        Some(ProtocolVersion::V1_0) => {
            return error_response(&ProtocolError::a2a_with(
                A2aError::VersionNotSupported,
                "This agent speaks A2A 0.3 over JSON-RPC only",
            ))
        }
        _ => {
            return error_response(&ProtocolError::a2a_with(
                A2aError::VersionNotSupported,
                "The HTTP+JSON binding serves A2A-Version: 1.0 only",
            ))
        }
    }
    let result = serve(&state.service, route, &uri, &body).await;
    match result {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn serve(
    service: &AgentService,
    route: Route,
    uri: &Uri,
    body: &Bytes,
) -> Result<Response, ProtocolError> {
    match route {
        Route::Send => Ok(ok(&service.send(&body_params(body)?).await?)),
        Route::Stream => Ok(sse_response(service.stream(&body_params(body)?).await?)),
        Route::GetTask(id) => {
            let mut params = query_params(uri)?;
            params.insert("id".into(), json!(id));
            Ok(ok(&service.get(&Value::Object(params))?))
        }
        Route::ListTasks => Ok(ok(&service.list(&Value::Object(query_params(uri)?))?)),
        Route::Cancel(id) => {
            let mut params = body_params(body)?;
            params["id"] = json!(id);
            Ok(ok(&service.cancel(&params)?))
        }
        Route::Subscribe(id) => Ok(sse_response(service.subscribe(&json!({ "id": id }))?)),
        Route::PushConfigs(_) | Route::PushConfig(_, _) => Err(AgentService::push_not_supported()),
        Route::ExtendedCard => Err(AgentService::extended_card_not_supported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_plain_tenant_and_verb_paths() {
        let cases = [
            ("/message:send", Some((Route::Send, None))),
            (
                "/acme/message:stream",
                Some((Route::Stream, Some("acme".to_owned()))),
            ),
            ("/tasks", Some((Route::ListTasks, None))),
            ("/tasks/t1", Some((Route::GetTask("t1".into()), None))),
            ("/tasks/t1:cancel", Some((Route::Cancel("t1".into()), None))),
            (
                "/x/tasks/t1:subscribe",
                Some((Route::Subscribe("t1".into()), Some("x".to_owned()))),
            ),
            (
                "/tasks/t1/pushNotificationConfigs/c",
                Some((Route::PushConfig("t1".into(), "c".into()), None)),
            ),
            ("/tasks/t1:explode", None),
            ("/nothing/here/at/all", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path), expected, "{path}");
        }
    }
}
