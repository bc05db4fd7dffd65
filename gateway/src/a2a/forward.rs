//! Forwarding one [`Call`] to its upstream and relaying the answer: choose the
//! interface, check task ownership, encode for the upstream's binding and
//! dialect, send with a bounded wait, decode (garbage, hangs and broken
//! streams become InvalidAgentResponse), remember the task ids seen (task
//! affinity), filter `ListTasks` to the caller's tasks, and encode for the
//! client. Streams are relayed event by event as they arrive, one body frame
//! per event (so hyper flushes each). A `SendStreamingMessage` stream is
//! recorded as it is relayed (`resume.rs`), and read to its end even after
//! its caller left; any other stream's upstream response is dropped, and
//! its connection closed, when the client's body is.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{
    header, HeaderMap, HeaderValue, Method as HttpMethod, Request, Response, StatusCode,
};
use bytes::Bytes;
use convergio_schemas::a2a::{
    self, A2aError, Method, ProtocolVersion, EXTENSIONS_HEADER, LEGACY_EXTENSIONS_HEADER,
    MEDIA_A2A_JSON, MEDIA_JSON, MEDIA_SSE, VERSION_HEADER,
};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use convergio_plugins::Direction;

use super::answer::Answer;
use super::client::GuardSettings;
use super::inbound::{context_id_of, task_id_of, Call, ClientSide};
use super::model_slots::stamp_caller;
use super::resume::{self, ends_stream, Recorder, Replayed};
use super::sse::{encode_event, SseParser};
use super::timeouts::upstream_timeout;
use super::{grpc, translate, A2aState, Incoming};
use crate::error::UpstreamFailure;
use crate::layers::{render_jsonrpc_error_value, render_rest_error_value, RequestId};
use crate::routes::{Binding, RouteTarget, TaskRoute, UpstreamInterface};
use crate::{GatewayError, Principal};

/// What is escaped in path segments and query values: all but RFC 3986
/// unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest SSE event the gateway buffers before calling the upstream broken.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// What the caller of [`forward`] gets back.
pub(crate) enum Reply {
    /// A whole 1.0 result.
    Unary(Answer),
    /// A relayed event stream, already encoded for the client.
    Stream(Body),
}

/// Forwards `call` to `target` on behalf of `request`'s principal (when
/// the caller connected from this machine, policy may weigh it when an
/// error ending a relayed stream decides how much to say).
pub(crate) async fn forward(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    call: Call,
    request: &Incoming,
) -> Result<Reply, GatewayError> {
    forward_keeping(state, target, call, request, None).await
}

/// The outcome of an idempotent peer call, to be kept (issue 18): where,
/// and under which key.
#[derive(Clone)]
pub(crate) struct KeptOutcome {
    pub(crate) federation: Arc<crate::federation::Federation>,
    pub(crate) key: convergio_registry::peer_calls::PeerCallKey,
}

/// [`forward`], keeping a relayed stream's outcome in `keep`: the events
/// the caller was sent, folded into the answer a blocking call gives, once
/// the stream ended in a final state. Such a stream is read to its end
/// even after its caller left, so a peer that crashed mid-call and repeats
/// its key gets the outcome instead of a second run of the agent.
pub(crate) async fn forward_keeping(
    state: &A2aState,
    target: &Arc<RouteTarget>,
    mut call: Call,
    request: &Incoming,
    keep: Option<KeptOutcome>,
) -> Result<Reply, GatewayError> {
    let principal = &request.principal;
    let headers = &request.headers;
    let request_id = request.request_id.as_ref();
    let loopback = request.loopback;
    // An agent without push notifications answers every push-config call
    // with PushNotificationNotSupported whatever the task (a2a-sdk checks
    // the capability first too): give that answer, not the unknown-task one
    // the ownership check below would give for a task the gateway has not
    // seen. It depends on the card alone, so it tells nothing about tasks.
    if is_push_config(call.method) && !offers_push_notifications(&target.card) {
        return Err(GatewayError::PushNotificationNotSupported {
            agent: target.name.clone(),
        });
    }
    // Ownership is checked before anything reaches the upstream: another
    // caller's task id gets exactly the unknown-task answer (spec §3.3.2).
    if let Some(task_id) = task_id_of(call.method, call.params()) {
        let owned = state
            .routes
            .task_route(task_id)
            .await?
            .is_some_and(|route| {
                route.owner == principal.owner_key() && route.agent == target.name
            });
        if !owned {
            return Err(GatewayError::TaskNotFound {
                task_id: task_id.to_owned(),
            });
        }
    }
    // A reconnecting subscriber (issue 24) is answered from the record.
    let resume_from = match (call.method, &state.stream_log) {
        (Method::SubscribeToTask, Some(_)) => resume::last_event_id(headers)?
            .zip(task_id_of(call.method, call.params()).map(str::to_owned)),
        _ => None,
    };
    // Regression: issue #15, defect 4. A context belongs to the first
    // principal to use it at this agent; another caller naming it gets the
    // unknown-task answer before anything reaches the upstream, on every
    // binding (the envelope and streaming come through here too).
    if let Some(context_id) = context_id_of(call.method, call.params()) {
        let allowed = state
            .routes
            .claim_context(&principal.owner_key(), &target.name, context_id)
            .await?;
        if !allowed {
            return Err(GatewayError::ContextNotFound {
                context_id: context_id.to_owned(),
            });
        }
    }
    // Guardrails see the request after the gatekeeper admitted it and
    // before any byte reaches the upstream (issue 21).
    let guard_call = super::guard::GuardCall::new(state, target, &call, request);
    if matches!(
        call.method,
        Method::SendMessage | Method::SendStreamingMessage
    ) && super::guard::selects(state, &guard_call, Direction::Request)
    {
        // Boxed: a rare path's future would otherwise size every call's
        // state, which axum boxes and copies per request.
        let params = std::mem::take(call.params_mut());
        *call.params_mut() = Box::pin(super::guard::apply(
            state,
            &guard_call,
            Direction::Request,
            params,
        ))
        .await?;
    }
    // Whether a ListTasks answer can be the caller's whole result (see
    // `filter_list`): only a first page can.
    let first_page = call
        .params()
        .get("pageToken")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let mut interface = target
        .choose_interface(call.client.binding)
        .ok_or_else(|| GatewayError::NoUsableInterface {
            agent: target.name.clone(),
            detail: unusable_interfaces(&target.card),
        })?
        .clone();
    // A model agent this replica runs is reached on its own slot, not on
    // the socket another replica sharing the registry wrote in the card.
    if let Some(local) = state
        .config
        .model_slots
        .as_ref()
        .and_then(|slots| slots.local_url(&target.name, &interface.url))
    {
        interface.url = local;
    }
    // The tenant the client copied from the rewritten card is the
    // upstream interface's; normalise it to the interface chosen.
    let tenant = call.params().get("tenant");
    let normal = match &interface.tenant {
        Some(tenant_there) => tenant.and_then(Value::as_str) == Some(tenant_there.as_str()),
        None => tenant.is_none(),
    };
    if !normal {
        if let Value::Object(params) = call.params_mut() {
            match &interface.tenant {
                Some(tenant) => params.insert("tenant".into(), Value::from(tenant.as_str())),
                None => params.remove("tenant"),
            };
        }
    }
    let method = call.method;
    let (params, mut verbatim) = call.take_params();
    let mut params = match interface.version {
        ProtocolVersion::V1_0 => params,
        ProtocolVersion::V0_3 => {
            verbatim = None;
            translate::request_to_v03(method, params)?
        }
    };
    let agent = target.name.clone();
    // One of this process's model agents: it answers only our token, and
    // learns the verified caller's organisation from us, never the client.
    let slot = state
        .config
        .model_slots
        .as_ref()
        .filter(|slots| slots.serves(&interface.url));
    if slot.is_some() {
        stamp_caller(&mut params, principal.org.as_deref());
        verbatim = None;
    }
    let context = RelayContext::new(
        state,
        target,
        principal,
        &call.client,
        request_id,
        loopback,
        &interface,
        Arc::new(guard_call),
        keep,
    );
    if let (Some((after, task_id)), Some(log)) = (resume_from, &state.stream_log) {
        let idle = state.config.stream_idle_timeout;
        if let Some(replayed) =
            resume::open(Arc::clone(log), task_id, after, agent.clone(), idle).await?
        {
            let events = replayed.map(move |item| {
                Ok::<_, std::io::Error>(match item {
                    Replayed::Event { id, event } => context.encode_event(Some(id), event),
                    Replayed::Failed(error) => context.encode_error(&error),
                })
            });
            return Ok(Reply::Stream(Body::from_stream(events)));
        }
    }
    let mut admission = state
        .client
        .admit(&agent, &guard_settings(&state.config))
        .map_err(|detail| GatewayError::UpstreamUnavailable {
            agent: agent.clone(),
            detail: detail.to_owned(),
        })?;
    let retries = if is_safe_to_repeat(method) {
        state.config.upstream_retries
    } else {
        0
    };
    let timeout = upstream_timeout(&state.config, &agent, request.call_deadline);
    if let Some(deadline) = &request.deadline {
        // The head may wait as long as the upstream may take, plus a
        // moment to turn its silence into a 504 of our own.
        deadline.extend_to(tokio::time::Instant::now() + timeout + Duration::from_secs(1));
    }
    // A peer's agent gets a signed call: each attempt is signed afresh
    // (new nonce), so a retry is never a replay.
    let peer = state
        .federation
        .as_ref()
        .and_then(|federation| Some((federation, crate::federation::peer_of(&target.name)?)));
    let mut attempt = 0;
    let response = loop {
        // Only a call that may be repeated keeps a copy of its params.
        let (params_now, params_kept) = if attempt < retries {
            (params.clone(), Some(params))
        } else {
            (params, None)
        };
        let mut request = encode_upstream(
            &interface,
            method,
            Params {
                value: params_now,
                verbatim: verbatim.clone(),
            },
            headers,
            request_id,
            &target.name,
        )?;
        if let Some(slots) = slot {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, slots.authorization()?);
        } else if let Some(value) = upstream_authorization(state, &agent, headers)? {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        if let Some((federation, audience)) = &peer {
            request = federation
                .sign_request(request, audience, &principal.subject)
                .await?;
        }
        let pool = match interface.binding {
            Binding::Grpc => state.client.grpc_pool_for(&agent),
            Binding::JsonRpc | Binding::HttpJson => state.client.pool_for(&agent),
        };
        match tokio::time::timeout(timeout, pool.request(request)).await {
            Err(_) => {
                admission.failed();
                return Err(GatewayError::UpstreamTimeout {
                    agent,
                    detail: format!(
                        "no answer from {} within {}",
                        authority_of(&interface.url),
                        seconds(timeout)
                    ),
                });
            }
            Ok(Err(error)) => match params_kept {
                // A connect failure means nothing reached the upstream.
                Some(kept) if error.is_connect() => {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                    params = kept;
                }
                _ => {
                    admission.failed();
                    let doing = if error.is_connect() {
                        "connecting to"
                    } else {
                        "talking to"
                    };
                    return Err(GatewayError::UpstreamUnreachable {
                        agent,
                        detail: format!(
                            "{doing} {} failed: {}",
                            authority_of(&interface.url),
                            crate::fetch::error_chain(&error)
                        ),
                    });
                }
            },
            Ok(Ok(response)) => break response,
        }
    };
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(MEDIA_SSE));
    if interface.binding == Binding::Grpc {
        // A trailers-only answer (an error before any message) carries its
        // status in the head.
        if let Some(status) = tonic::Status::from_header_map(response.headers()) {
            if status.code() != tonic::Code::Ok {
                admission.succeeded();
                return Err(GatewayError::Upstream(Box::new(
                    grpc::status::to_upstream_failure(&status),
                )));
            }
        }
    }
    let relays = match interface.binding {
        Binding::Grpc => method.is_streaming(),
        Binding::JsonRpc | Binding::HttpJson => is_sse,
    };
    if relays && response.status().is_success() {
        admission.succeeded();
        let recorder = Recorder::new(
            state
                .stream_log
                .clone()
                .filter(|_| method == Method::SendStreamingMessage),
        );
        let events = relay_stream(context, response.into_body(), recorder, admission);
        return Ok(Reply::Stream(Body::from_stream(events)));
    }
    let status = response.status();
    // A result nothing will change (the client speaks what the agent
    // speaks, no guardrail reads it, no outcome is kept) passes through as
    // the agent's bytes (issue #25), on JSON-RPC and HTTP+JSON.
    let passes = interface.version == ProtocolVersion::V1_0
        && status.is_success()
        && matches!(
            method,
            Method::SendMessage | Method::GetTask | Method::CancelTask
        )
        && context.client.version == ProtocolVersion::V1_0
        && context.client.binding != Binding::Grpc
        && context.keep.is_none()
        && !super::guard::selects(state, &context.guard_call, Direction::Response);
    let (body, trailers) = match tokio::time::timeout(
        timeout,
        read_capped(response.into_body(), state.config.max_upstream_body_bytes),
    )
    .await
    {
        Err(_) => {
            admission.failed();
            return Err(GatewayError::UpstreamTimeout {
                agent,
                detail: format!(
                    "{} sent no whole answer within {}",
                    authority_of(&context.upstream_url),
                    seconds(timeout)
                ),
            });
        }
        Ok(Err(detail)) => {
            admission.failed();
            return Err(context.invalid(detail));
        }
        Ok(Ok(body)) => body,
    };
    let passed = match interface.binding {
        Binding::JsonRpc if passes => Answer::pass_jsonrpc(&body),
        Binding::HttpJson if passes => Answer::pass_result(&body),
        _ => None,
    };
    if let Some(answer) = passed {
        admission.succeeded();
        drop(admission);
        if method == Method::SendMessage {
            context.remember(answer.facts(), &mut HashSet::new()).await;
        }
        return Ok(Reply::Unary(answer));
    }
    let result = decode_unary(&context, method, status, &body, trailers.as_ref());
    match &result {
        Err(GatewayError::UpstreamInvalid { .. }) => admission.failed(),
        _ => admission.succeeded(),
    }
    drop(admission);
    let result = result?;
    let result = match interface.version {
        ProtocolVersion::V1_0 => result,
        ProtocolVersion::V0_3 => translate::result_to_v1(method, result),
    };
    let result = match method {
        Method::SendMessage | Method::SendStreamingMessage => {
            context.remember(&result, &mut HashSet::new()).await;
            result
        }
        Method::ListTasks => context.filter_list(result, first_page).await?,
        _ => result,
    };
    let result =
        super::guard::apply(state, &context.guard_call, Direction::Response, result).await?;
    Ok(Reply::Unary(result.into()))
}

/// `host:port` of an upstream URL (the URL itself if it has none), for
/// causes: it names where the gateway went without paths or queries.
fn authority_of(url: &str) -> String {
    url.parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| {
            let authority = uri.authority()?;
            Some(match authority.port_u16() {
                Some(_) => authority.as_str().to_owned(),
                None => {
                    let port = if uri.scheme_str() == Some("https") {
                        443
                    } else {
                        80
                    };
                    format!("{}:{port}", authority.host())
                }
            })
        })
        .unwrap_or_else(|| url.to_owned())
}

/// A duration as people read it in an error (`1.5 s`).
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// What a card without a forwardable interface offers, and what the
/// gateway would need.
fn unusable_interfaces(card: &Value) -> String {
    let offered: Vec<String> = card
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|entry| {
            let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("?");
            format!(
                "{} {} at {}",
                text("protocolBinding"),
                text("protocolVersion"),
                text("url")
            )
        })
        .collect();
    let offered = if offered.is_empty() {
        "no interfaces".to_owned()
    } else {
        offered.join(", ")
    };
    format!(
        "the card offers {offered}; the gateway forwards JSONRPC (1.0, 0.3) and HTTP+JSON (1.0) \
         to http(s) urls, and GRPC (1.0) to host:port or http(s) urls"
    )
}

fn guard_settings(config: &super::A2aConfig) -> GuardSettings {
    GuardSettings {
        concurrency: config.upstream_concurrency,
        breaker_failures: config.breaker_failures,
        breaker_cooldown: config.breaker_cooldown,
    }
}

/// The four push-notification config methods.
pub(super) fn is_push_config(method: Method) -> bool {
    matches!(
        method,
        Method::CreateTaskPushNotificationConfig
            | Method::GetTaskPushNotificationConfig
            | Method::ListTaskPushNotificationConfigs
            | Method::DeleteTaskPushNotificationConfig
    )
}

/// Whether a registered card (1.0 or 0.3: the capability has the same
/// name in both) lets the agent take push-notification configs. A card
/// without `capabilities` (a peer organisation's agent, whose card the
/// peer's gateway holds) is not judged here: its own gateway answers.
pub(super) fn offers_push_notifications(card: &Value) -> bool {
    match card.get("capabilities") {
        Some(capabilities) => capabilities
            .get("pushNotifications")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        None => true,
    }
}

/// Calls the gateway may send twice: reads, and SendMessage, which A2A
/// agents de-duplicate by `messageId` (a repeat carries the same one).
fn is_safe_to_repeat(method: Method) -> bool {
    matches!(
        method,
        Method::GetTask
            | Method::ListTasks
            | Method::GetTaskPushNotificationConfig
            | Method::ListTaskPushNotificationConfigs
            | Method::GetExtendedAgentCard
            | Method::SendMessage
    )
}

/// Exponential backoff (50 ms, 100 ms, …, at most 1.6 s) plus up to as
/// much again of random jitter, so retrying callers do not stampede.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(50) * 2u32.saturating_pow(attempt.saturating_sub(1).min(5));
    let jitter_fraction = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    base + base * jitter_fraction / 1000
}

/// Encodes a unary 1.0 result for the client: a passed-through result as
/// the agent's bytes when the client speaks 1.0.
pub(crate) fn unary_response(
    client: &ClientSide,
    method: Method,
    answer: Answer,
) -> Result<Response<Body>, GatewayError> {
    if let (Some(raw), ProtocolVersion::V1_0, false) =
        (answer.raw(), client.version, method.is_streaming())
    {
        let body = match client.binding {
            Binding::JsonRpc => Some(format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                client.id,
                raw.get()
            )),
            Binding::HttpJson => Some(raw.get().to_owned()),
            Binding::Grpc => None,
        };
        if let Some(body) = body {
            return Ok(content_typed(client, body));
        }
    }
    let result = answer.into_value()?;
    let result = match client.version {
        ProtocolVersion::V1_0 => result,
        ProtocolVersion::V0_3 => translate::result_to_v03(method, result),
    };
    if method.is_streaming() {
        // The upstream answered a stream request with one JSON result: give
        // the client the one-event stream it asked for.
        let event = client_event_json(client, result);
        let mut response = Response::new(Body::from(encode_event(None, &event)));
        set_sse_headers(response.headers_mut());
        return Ok(response);
    }
    let body = match client.binding {
        Binding::JsonRpc => json!({"jsonrpc": "2.0", "id": client.id, "result": result}),
        // A gRPC client's call is answered by `grpc::service` from the
        // Reply itself; this arm only keeps the match whole.
        Binding::HttpJson | Binding::Grpc => result,
    };
    Ok(content_typed(client, body.to_string()))
}

/// A unary answer's response with its binding's media type.
fn content_typed(client: &ClientSide, body: String) -> Response<Body> {
    let content_type = match client.binding {
        Binding::JsonRpc => MEDIA_JSON,
        Binding::HttpJson | Binding::Grpc => MEDIA_A2A_JSON,
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Encodes a relayed stream for the client.
pub(crate) fn stream_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    set_sse_headers(response.headers_mut());
    response
}

fn set_sse_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_SSE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells reverse proxies in front of the gateway not to buffer either.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

fn client_event_json(client: &ClientSide, event: Value) -> String {
    match client.binding {
        Binding::JsonRpc => json!({"jsonrpc": "2.0", "id": client.id, "result": event}).to_string(),
        // gRPC clients get the bare StreamResponse, which `grpc::service`
        // decodes into its message.
        Binding::HttpJson | Binding::Grpc => event.to_string(),
    }
}

fn encode_query(pairs: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| item.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.push(if out.is_empty() { '?' } else { '&' });
        out.extend(utf8_percent_encode(key, COMPONENT));
        out.push('=');
        out.extend(utf8_percent_encode(&text, COMPONENT));
    }
    out
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// The `Authorization` presented to `agent`: its configured bearer token,
/// else the caller's own header where the agent's config forwards it, else
/// none. Marked sensitive, which keeps it out of hyper's debug output and
/// HPACK tables.
fn upstream_authorization(
    state: &A2aState,
    agent: &str,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, GatewayError> {
    let credentials = state.config.upstream_credentials.current();
    let Some(credential) = credentials.get(agent) else {
        return Ok(None);
    };
    let mut value = match &credential.bearer_token {
        Some(token) => HeaderValue::try_from(format!("Bearer {token}")).map_err(|error| {
            GatewayError::internal(
                format!("putting the upstream credential of {agent} in a header"),
                error,
            )
        })?,
        None if credential.forward_caller_authorization => {
            match headers.get(header::AUTHORIZATION) {
                Some(value) => value.clone(),
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    value.set_sensitive(true);
    Ok(Some(value))
}

/// A call's params for the upstream: the value, and the client's bytes of
/// it when they say the same (see [`Call::take_params`]).
struct Params {
    value: Value,
    verbatim: Option<Bytes>,
}

/// The upstream HTTP request for a call.
fn encode_upstream(
    interface: &UpstreamInterface,
    method: Method,
    params: Params,
    headers: &HeaderMap,
    request_id: Option<&RequestId>,
    agent: &str,
) -> Result<Request<Body>, GatewayError> {
    let base = interface.url.trim_end_matches('/');
    let Params {
        value: params,
        verbatim,
    } = params;
    let (http_method, uri, body, content_type) = match interface.binding {
        Binding::JsonRpc => {
            let name = match interface.version {
                ProtocolVersion::V1_0 => method.v1_name(),
                ProtocolVersion::V0_3 => {
                    method
                        .v03_name()
                        .ok_or_else(|| GatewayError::UnsupportedOperation {
                            detail: format!("{} does not exist in A2A 0.3", method.v1_name()),
                        })?
                }
            };
            let id = request_id
                .map(|id| Value::from(id.as_str()))
                .unwrap_or(Value::from(1));
            (
                HttpMethod::POST,
                interface.url.clone(),
                Some(jsonrpc_request(&id, name, &params, verbatim.as_deref())?),
                MEDIA_JSON,
            )
        }
        Binding::HttpJson => {
            let Value::Object(mut fields) = params else {
                return Err(GatewayError::InvalidParams {
                    detail: "params must be an object".into(),
                });
            };
            let prefix = match fields.remove("tenant").as_ref().and_then(Value::as_str) {
                Some(tenant) => format!("{base}/{}", segment(tenant)),
                None => base.to_owned(),
            };
            let mut take = |key: &str| -> String {
                fields
                    .remove(key)
                    .and_then(|value| value.as_str().map(segment))
                    .unwrap_or_default()
            };
            let (http_method, path, with_body) = match method {
                Method::SendMessage => (HttpMethod::POST, "/message:send".to_owned(), true),
                Method::SendStreamingMessage => {
                    (HttpMethod::POST, "/message:stream".to_owned(), true)
                }
                Method::GetTask => (HttpMethod::GET, format!("/tasks/{}", take("id")), false),
                Method::ListTasks => (HttpMethod::GET, "/tasks".to_owned(), false),
                Method::CancelTask => (
                    HttpMethod::POST,
                    format!("/tasks/{}:cancel", take("id")),
                    true,
                ),
                Method::SubscribeToTask => (
                    HttpMethod::GET,
                    format!("/tasks/{}:subscribe", take("id")),
                    false,
                ),
                Method::CreateTaskPushNotificationConfig => (
                    HttpMethod::POST,
                    format!("/tasks/{}/pushNotificationConfigs", take("taskId")),
                    true,
                ),
                Method::ListTaskPushNotificationConfigs => (
                    HttpMethod::GET,
                    format!("/tasks/{}/pushNotificationConfigs", take("taskId")),
                    false,
                ),
                Method::GetTaskPushNotificationConfig => {
                    let task_id = take("taskId");
                    (
                        HttpMethod::GET,
                        format!("/tasks/{task_id}/pushNotificationConfigs/{}", take("id")),
                        false,
                    )
                }
                Method::DeleteTaskPushNotificationConfig => {
                    let task_id = take("taskId");
                    (
                        HttpMethod::DELETE,
                        format!("/tasks/{task_id}/pushNotificationConfigs/{}", take("id")),
                        false,
                    )
                }
                Method::GetExtendedAgentCard => {
                    (HttpMethod::GET, "/extendedAgentCard".to_owned(), false)
                }
            };
            let (query, body) = if with_body {
                (
                    String::new(),
                    Some(Bytes::from(Value::Object(fields).to_string())),
                )
            } else {
                (encode_query(&fields), None)
            };
            (
                http_method,
                format!("{prefix}{path}{query}"),
                body,
                MEDIA_A2A_JSON,
            )
        }
        Binding::Grpc => (
            HttpMethod::POST,
            grpc::upstream::method_url(&interface.url, method),
            Some(grpc::upstream::encode_request(method, params)?),
            grpc::upstream::CONTENT_TYPE,
        ),
    };
    let mut builder = Request::builder().method(http_method).uri(&uri);
    builder = if interface.binding == Binding::Grpc {
        // gRPC over HTTP/2 needs `te: trailers`; the status comes in them.
        builder.header(header::TE, "trailers")
    } else {
        builder.header(
            header::ACCEPT,
            if method.is_streaming() {
                MEDIA_SSE
            } else {
                content_type
            },
        )
    };
    if interface.version == ProtocolVersion::V1_0 {
        builder = builder.header(VERSION_HEADER, a2a::VERSION_1_0);
    }
    // Extensions are forwarded under the name the upstream's dialect uses;
    // the caller's Authorization (and every other header but the trace
    // context below) is never forwarded.
    let extensions = headers
        .get(EXTENSIONS_HEADER)
        .or_else(|| headers.get(LEGACY_EXTENSIONS_HEADER));
    if let Some(extensions) = extensions {
        let name = match interface.version {
            ProtocolVersion::V1_0 => EXTENSIONS_HEADER,
            ProtocolVersion::V0_3 => LEGACY_EXTENSIONS_HEADER,
        };
        builder = builder.header(name, extensions.clone());
    }
    if let Some(request_id) = request_id {
        builder = builder.header(crate::layers::REQUEST_ID_HEADER, request_id.as_str());
    }
    // W3C trace context is forwarded so a graph's (or caller's) trace
    // continues in the agent.
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = headers.get(name) {
            builder = builder.header(name, value.clone());
        }
    }
    // With spans exported, the agent's parent is this call's span instead
    // (same trace id, issue 18).
    if let Some(headers) = builder.headers_mut() {
        crate::telemetry::inject(&tracing::Span::current(), headers);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            Body::from(body)
        }
        None => Body::empty(),
    };
    builder
        .body(body)
        .map_err(|error| GatewayError::UpstreamInvalid {
            agent: agent.to_owned(),
            detail: format!("cannot build the upstream request for {uri}: {error}"),
        })
}

/// A JSON-RPC request's bytes, written around its params in one buffer
/// (not built as a map and encoded again: issue #25): the client's own
/// bytes of them (`verbatim`) when the call kept them, else `params` encoded.
fn jsonrpc_request(
    id: &Value,
    method: &str,
    params: &Value,
    verbatim: Option<&[u8]>,
) -> Result<Bytes, GatewayError> {
    let mut body = Vec::with_capacity(verbatim.map_or(1024, |bytes| bytes.len() + 128));
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    let written = serde_json::to_writer(&mut body, id)
        .and_then(|()| {
            body.extend_from_slice(br#","method":"#);
            serde_json::to_writer(&mut body, method)
        })
        .and_then(|()| {
            body.extend_from_slice(br#","params":"#);
            match verbatim {
                Some(bytes) => {
                    body.extend_from_slice(bytes);
                    Ok(())
                }
                None => serde_json::to_writer(&mut body, params),
            }
        });
    written.map_err(|error| GatewayError::internal("encoding the upstream request", error))?;
    body.push(b'}');
    Ok(Bytes::from(body))
}

/// The whole upstream body, and its trailers (where gRPC puts its status).
async fn read_capped(
    body: hyper::body::Incoming,
    cap: usize,
) -> Result<(Bytes, Option<HeaderMap>), String> {
    let limited = http_body_util::Limited::new(body, cap);
    limited
        .collect()
        .await
        .map(|collected| {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers)
        })
        .map_err(|error| format!("reading the upstream body failed: {error}"))
}

/// Everything the relay needs after the request is sent.
#[derive(Clone)]
struct RelayContext {
    state: A2aState,
    agent: String,
    owner: String,
    /// The caller, whose budgets count the usage streamed events report.
    principal: Principal,
    interface_binding: Binding,
    interface_version: ProtocolVersion,
    client: ClientSide,
    request_id: Option<RequestId>,
    /// The agent, for the policy question an error ending the stream asks.
    target: Arc<RouteTarget>,
    /// Whether the caller connected from this machine.
    loopback: bool,
    /// The upstream endpoint, for causes (only its `host:port` is shown).
    upstream_url: String,
    /// What the guardrails select on, for each streamed event.
    guard_call: Arc<super::guard::GuardCall>,
    /// Where an idempotent peer call's outcome is kept.
    keep: Option<KeptOutcome>,
}

// === impl RelayContext ===

impl RelayContext {
    #[allow(clippy::too_many_arguments)] // the relay's whole context, once
    fn new(
        state: &A2aState,
        target: &Arc<RouteTarget>,
        principal: &Principal,
        client: &ClientSide,
        request_id: Option<&RequestId>,
        loopback: bool,
        interface: &UpstreamInterface,
        guard_call: Arc<super::guard::GuardCall>,
        keep: Option<KeptOutcome>,
    ) -> Self {
        Self {
            state: state.clone(),
            agent: target.name.clone(),
            owner: principal.owner_key(),
            principal: principal.clone(),
            interface_binding: interface.binding,
            interface_version: interface.version,
            client: client.clone(),
            request_id: request_id.cloned(),
            target: Arc::clone(target),
            loopback,
            upstream_url: interface.url.clone(),
            guard_call,
            keep,
        }
    }

    fn invalid(&self, detail: impl Into<String>) -> GatewayError {
        GatewayError::UpstreamInvalid {
            agent: self.agent.clone(),
            detail: format!("{}: {}", authority_of(&self.upstream_url), detail.into()),
        }
    }

    /// Records every task id in a 1.0 result or event as owned by the
    /// caller, and the context it names as the caller's unless another
    /// principal holds it already.
    async fn remember(&self, value: &Value, seen: &mut HashSet<String>) {
        if let Some(context_id) = context_id_in(value) {
            // The prefix keeps context ids apart from task ids in `seen`.
            if seen.insert(format!("context\0{context_id}")) {
                if let Err(error) = self
                    .state
                    .routes
                    .claim_context(&self.owner, &self.agent, context_id)
                    .await
                {
                    tracing::warn!(agent = %self.agent, %error, "could not remember a context");
                }
            }
        }
        let found = if let Some(task) = value.get("task") {
            task.get("id")
                .and_then(Value::as_str)
                .map(|id| (id, task.get("contextId")))
        } else if let Some(message) = value.get("message") {
            message
                .get("taskId")
                .and_then(Value::as_str)
                .map(|id| (id, message.get("contextId")))
        } else {
            value
                .get("statusUpdate")
                .or_else(|| value.get("artifactUpdate"))
                .and_then(|update| {
                    update
                        .get("taskId")
                        .and_then(Value::as_str)
                        .map(|id| (id, update.get("contextId")))
                })
        };
        let Some((task_id, context_id)) = found else {
            return;
        };
        if !seen.insert(task_id.to_owned()) {
            return;
        }
        let route = TaskRoute {
            task_id: task_id.to_owned(),
            agent: self.agent.clone(),
            owner: self.owner.clone(),
            context_id: context_id.and_then(Value::as_str).map(str::to_owned),
        };
        if let Err(error) = self.state.routes.remember_task(route).await {
            tracing::warn!(agent = %self.agent, %error, "could not remember a task route");
        }
    }

    /// Keeps only the caller's tasks on this agent. The upstream's paging is
    /// kept: a page may come back shorter than `pageSize` (even empty) while
    /// `nextPageToken` still points further.
    ///
    /// Only the ids on this page are looked up (issue #15, defect 2: every
    /// page used to load all of the caller's task routes), and `totalSize`
    /// is always the caller's own (defect 3: the upstream's counts every
    /// caller's tasks): the tasks kept when this page is the whole result,
    /// else the caller's tasks on this agent (exact without filters, an
    /// upper bound with `status` or `contextId` filters).
    async fn filter_list(
        &self,
        mut result: Value,
        first_page: bool,
    ) -> Result<Value, GatewayError> {
        let Some(Value::Array(tasks)) = result.get_mut("tasks") else {
            return Err(self.invalid("ListTasks result has no tasks array"));
        };
        let ids: Vec<String> = tasks
            .iter()
            .filter_map(|task| task.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let owned = self
            .state
            .routes
            .owned_tasks(&self.owner, &self.agent, &ids)
            .await?;
        tasks.retain(|task| {
            task.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| owned.contains(id))
        });
        let kept = tasks.len();
        let last_page = result
            .get("nextPageToken")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        let total = if first_page && last_page {
            u64::try_from(kept).unwrap_or(u64::MAX)
        } else {
            self.state
                .routes
                .count_tasks(&self.owner, &self.agent)
                .await?
        };
        result["totalSize"] = Value::from(total);
        Ok(result)
    }

    /// Decodes one upstream SSE payload to a 1.0 StreamResponse.
    fn decode_event(&self, data: &str) -> Result<Value, GatewayError> {
        let value: Value = serde_json::from_str(data)
            .map_err(|error| self.invalid(format!("stream event is not JSON: {error}")))?;
        let event = match self.interface_binding {
            Binding::JsonRpc => jsonrpc_result(value).map_err(|error| match error {
                Some(failure) => GatewayError::Upstream(Box::new(failure)),
                None => self.invalid("stream event is not a JSON-RPC response"),
            })?,
            Binding::HttpJson | Binding::Grpc => match value.get("error") {
                Some(_) => {
                    return Err(GatewayError::Upstream(Box::new(rest_failure(
                        StatusCode::BAD_REQUEST,
                        &value,
                    ))))
                }
                None => value,
            },
        };
        let event = match self.interface_version {
            ProtocolVersion::V1_0 => event,
            ProtocolVersion::V0_3 => translate::event_to_v1(event),
        };
        if !event.is_object() {
            return Err(self.invalid("stream event is not an object"));
        }
        Ok(event)
    }

    /// `event` encoded for the client, with its recorded id if it has one.
    fn encode_event(&self, id: Option<u64>, event: Value) -> Bytes {
        let event = match self.client.version {
            ProtocolVersion::V1_0 => event,
            ProtocolVersion::V0_3 => translate::event_to_v03(event),
        };
        encode_event(id, &client_event_json(&self.client, event))
    }

    fn encode_error(&self, error: &GatewayError) -> Bytes {
        // Asked only now: most streams end well and never need the answer.
        let disclose = error.upstream_problem().is_some()
            && self
                .state
                .gatekeeper
                .may_read_card(&self.principal, &self.target, self.loopback);
        let value = match self.client.binding {
            Binding::JsonRpc => render_jsonrpc_error_value(
                error,
                self.client.id.clone(),
                self.request_id.as_ref(),
                disclose,
            ),
            // `grpc::service` turns an HTTP+JSON error event into a status.
            Binding::HttpJson | Binding::Grpc => {
                render_rest_error_value(error, self.request_id.as_ref(), disclose)
            }
        };
        if error.is_internal() {
            tracing::warn!(
                request_id = self.request_id.as_ref().map(RequestId::as_str).unwrap_or("-"),
                error = %error,
                "stream ended with an error"
            );
        }
        encode_event(None, &value.to_string())
    }
}

/// The context a 1.0 result or stream event names.
fn context_id_in(value: &Value) -> Option<&str> {
    ["task", "message", "statusUpdate", "artifactUpdate"]
        .iter()
        .find_map(|key| value.get(*key)?.get("contextId")?.as_str())
        .filter(|context_id| !context_id.is_empty())
}

/// The client's side of a relayed stream. The relay runs inline in the
/// response body while the caller reads it (no task or channel per stream:
/// issue #16 measured them in the gateway's memory per open stream); when
/// the caller leaves mid-stream and the rest must still be read (it is
/// being recorded for resumption, or an idempotent call's outcome is
/// kept), the relay moves to a task of its own, which holds the upstream
/// slot and reads on to the end, so a client that resumes, or a peer that
/// repeats the call, gets every event. That reading is bounded by the idle
/// timeout between events and by `max_upstream_timeout` in all, so streams
/// nobody listens to cannot pile up.
fn relay_stream(
    context: RelayContext,
    body: hyper::body::Incoming,
    recorder: Recorder,
    admission: super::client::Admission,
) -> Relay {
    Relay {
        unattended: context.state.config.max_upstream_timeout,
        // An idempotent call's stream is read to its end from its first
        // byte: its caller may go away before any event arrives.
        recording: context.keep.is_some(),
        events: Some(Box::pin(relay_events(context, body, recorder))),
        admission: Some(admission),
        runtime: tokio::runtime::Handle::try_current().ok(),
    }
}

/// The client's chunks of an upstream stream, each with whether the
/// stream is recorded (see [`relay_events`]).
type RelayEvents = Pin<Box<dyn Stream<Item = (Bytes, bool)> + Send>>;

/// See [`relay_stream`].
struct Relay {
    /// `None` once the stream ended.
    events: Option<RelayEvents>,
    /// Whether the rest must be read if the caller leaves.
    recording: bool,
    unattended: Duration,
    /// The upstream slot, held until the stream ends.
    admission: Option<super::client::Admission>,
    /// Where a relay its caller left goes on.
    runtime: Option<tokio::runtime::Handle>,
}

// === impl Relay ===

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let Some(events) = self.events.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        match events.as_mut().poll_next(cx) {
            std::task::Poll::Ready(Some((chunk, recording))) => {
                self.recording = recording;
                std::task::Poll::Ready(Some(Ok(chunk)))
            }
            std::task::Poll::Ready(None) => {
                self.events = None;
                self.admission = None;
                std::task::Poll::Ready(None)
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Drop for Relay {
    /// The caller left (the body is dropped before the stream's end).
    fn drop(&mut self) {
        let Some(mut events) = self.events.take() else {
            return;
        };
        if !self.recording {
            return;
        }
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let admission = self.admission.take();
        let unattended = self.unattended;
        runtime.spawn(async move {
            let _slot = admission;
            let rest = async {
                while let Some((_, recording)) = events.next().await {
                    if !recording {
                        break;
                    }
                }
            };
            if tokio::time::timeout(unattended, rest).await.is_err() {
                tracing::warn!(
                    "stopped recording a stream its caller left {} s ago",
                    unattended.as_secs()
                );
            }
        });
    }
}

/// The client's chunks of an upstream stream, each with whether the
/// stream is being recorded.
fn relay_events(
    context: RelayContext,
    mut body: hyper::body::Incoming,
    mut recorder: Recorder,
) -> impl Stream<Item = (Bytes, bool)> + Send + 'static {
    async_stream::stream! {
        let idle = context.state.config.stream_idle_timeout;
        let mut parser = SseParser::new();
        let grpc = context.interface_binding == Binding::Grpc;
        let mut frames = grpc::upstream::FrameDecoder::default();
        let mut seen = HashSet::new();
        let mut ended = false;
        let mut failure: Option<GatewayError> = None;
        // An idempotent call's stream is read to its end and its outcome
        // kept, whether or not its caller stays.
        let keeps = context.keep.is_some();
        let mut outcome = keeps.then(convergio_orchestrator::StreamFold::new);
        'frames: loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    failure = Some(GatewayError::UpstreamTimeout {
                        agent: context.agent.clone(),
                        detail: format!(
                            "no event from {} for {}",
                            authority_of(&context.upstream_url),
                            seconds(idle)
                        ),
                    });
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    failure = Some(context.invalid(format!("stream broke: {error}")));
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // gRPC ends its stream with the status in trailers.
                    let status = frame.into_trailers().ok().and_then(|trailers| {
                        tonic::Status::from_header_map(&trailers)
                    });
                    if let Some(status) = status.filter(|status| status.code() != tonic::Code::Ok) {
                        failure = Some(GatewayError::Upstream(Box::new(
                            grpc::status::to_upstream_failure(&status),
                        )));
                        break;
                    }
                    continue;
                }
            };
            let decoded: Vec<Result<Value, GatewayError>> = if grpc {
                match frames.push(&data) {
                    Ok(messages) => messages
                        .iter()
                        .map(|message| {
                            grpc::upstream::decode_event(message)
                                .map_err(|detail| context.invalid(detail))
                        })
                        .collect(),
                    Err(detail) => vec![Err(context.invalid(detail))],
                }
            } else {
                parser
                    .push(&data)
                    .iter()
                    .map(|payload| context.decode_event(payload))
                    .collect()
            };
            for decoded in decoded {
                match decoded {
                    Ok(event) => {
                        context.remember(&event, &mut seen).await;
                        // Budgets count what each streamed event reports,
                        // as they count a unary reply's.
                        context.state.gatekeeper.observe_reply(&context.principal, &event);
                        ended = ends_stream(&event);
                        // Each event passes the guardrails before the caller
                        // sees it; a refusal ends the stream with its error.
                        let guarded = super::guard::apply(
                            &context.state, &context.guard_call, Direction::Response, event,
                        ).await;
                        let event = match guarded {
                            Ok(event) => event,
                            Err(error) => {
                                failure = Some(error);
                                break 'frames;
                            }
                        };
                        // Recorded before it is sent: a client that saw
                        // an id can always resume after it.
                        let id = recorder.record(&event).await;
                        if let Some(outcome) = &mut outcome {
                            outcome.push(&event);
                        }
                        yield (context.encode_event(id, event), keeps || recorder.is_recording());
                    }
                    Err(error) => {
                        failure = Some(error);
                        break 'frames;
                    }
                }
            }
            if parser.pending() > MAX_EVENT_BYTES {
                failure = Some(context.invalid("stream event over the size limit"));
                break;
            }
        }
        if failure.is_none() && !ended {
            failure = Some(context.invalid("upstream closed the stream before a final state"));
        }
        if let Some(error) = failure {
            recorder.failed(&error).await;
            yield (context.encode_error(&error), false);
        } else if let (Some(keep), Some(outcome)) =
            (&context.keep, outcome.and_then(convergio_orchestrator::StreamFold::finish))
        {
            keep.federation.remember_outcome(&keep.key, &outcome).await;
        }
    }
}

/// Splits a JSON-RPC response into its result or its error (`None` when the
/// value is not a JSON-RPC response at all).
fn jsonrpc_result(value: Value) -> Result<Value, Option<UpstreamFailure>> {
    let Value::Object(mut object) = value else {
        return Err(None);
    };
    if let Some(error) = object.remove("error") {
        let code = error.get("code").and_then(Value::as_i64);
        let Some(code) = code else { return Err(None) };
        return Err(Some(UpstreamFailure {
            code,
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error")
                .to_owned(),
            details: error.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    object.remove("result").ok_or(None)
}

/// Reads an HTTP+JSON error body into a relayable failure.
fn rest_failure(status: StatusCode, value: &Value) -> UpstreamFailure {
    let error = value.get("error").cloned().unwrap_or(Value::Null);
    let details = error.get("details").cloned().unwrap_or(Value::Null);
    let reason = details
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|detail| detail.get("reason").and_then(Value::as_str));
    let code = reason
        .and_then(A2aError::from_reason)
        .map(A2aError::code)
        .unwrap_or(match status.as_u16() {
            404 => A2aError::TaskNotFound.code(),
            400 | 422 => a2a::JSONRPC_INVALID_PARAMS,
            _ => a2a::JSONRPC_INTERNAL_ERROR,
        });
    UpstreamFailure {
        code,
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("upstream error")
            .to_owned(),
        details,
    }
}

fn decode_unary(
    context: &RelayContext,
    method: Method,
    status: StatusCode,
    body: &[u8],
    trailers: Option<&HeaderMap>,
) -> Result<Value, GatewayError> {
    match context.interface_binding {
        Binding::Grpc => {
            match trailers.and_then(tonic::Status::from_header_map) {
                Some(grpc_status) if grpc_status.code() != tonic::Code::Ok => {
                    return Err(GatewayError::Upstream(Box::new(
                        grpc::status::to_upstream_failure(&grpc_status),
                    )))
                }
                Some(_) => {}
                None => return Err(context.invalid(format!("status {status} without grpc-status"))),
            }
            let mut frames = grpc::upstream::FrameDecoder::default();
            let messages = frames
                .push(body)
                .map_err(|detail| context.invalid(detail))?;
            match messages.as_slice() {
                [message] if !frames.has_partial() => {
                    grpc::upstream::decode_result(method, message)
                        .map_err(|detail| context.invalid(detail))
                }
                _ => Err(context.invalid(format!(
                    "expected one gRPC message, got {} ",
                    messages.len()
                ))),
            }
        }
        Binding::JsonRpc => {
            let value: Value = serde_json::from_slice(body).map_err(|error| {
                context.invalid(format!("status {status}, body is not JSON: {error}"))
            })?;
            jsonrpc_result(value).map_err(|error| match error {
                Some(failure) => GatewayError::Upstream(Box::new(failure)),
                None => context.invalid(format!("status {status}, not a JSON-RPC response")),
            })
        }
        Binding::HttpJson => {
            if status.is_success() && body.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            let value: Value = serde_json::from_slice(body).map_err(|error| {
                context.invalid(format!("status {status}, body is not JSON: {error}"))
            })?;
            if status.is_success() {
                Ok(value)
            } else if value.get("error").is_some_and(Value::is_object) {
                Err(GatewayError::Upstream(Box::new(rest_failure(
                    status, &value,
                ))))
            } else {
                Err(context.invalid(format!("status {status} without an A2A error body")))
            }
        }
    }
}

/// The configured default for [`super::A2aConfig::upstream_timeout`].
pub(crate) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jsonrpc_request_is_the_envelope_around_its_params() {
        let params =
            json!({"message": {"parts": [{"text": "caf\u{e9} \"quoted\"\n"}], "z": 1, "a": [1.5]}});
        for id in [json!("req-1"), json!(7), json!("with \"quotes\"")] {
            let body = jsonrpc_request(&id, "message/send", &params, None).expect("encodes");
            let expected =
                json!({"jsonrpc": "2.0", "id": id, "method": "message/send", "params": params});
            assert_eq!(body, Bytes::from(expected.to_string()));
        }
    }

    #[test]
    fn streams_end_on_messages_and_final_states() {
        let cases = [
            (json!({"message": {}}), true),
            (
                json!({"task": {"status": {"state": "TASK_STATE_SUBMITTED"}}}),
                false,
            ),
            (
                json!({"task": {"status": {"state": "TASK_STATE_COMPLETED"}}}),
                true,
            ),
            (
                json!({"statusUpdate": {"status": {"state": "TASK_STATE_WORKING"}}}),
                false,
            ),
            (
                json!({"statusUpdate": {"status": {"state": "TASK_STATE_INPUT_REQUIRED"}}}),
                true,
            ),
            (json!({"artifactUpdate": {}}), false),
        ];
        for (event, ends) in cases {
            assert_eq!(ends_stream(&event), ends, "{event}");
        }
    }

    #[test]
    fn rest_errors_map_to_a2a_codes_by_reason_then_status() {
        let body = json!({"error": {"code": 400, "status": "FAILED_PRECONDITION", "message": "m",
            "details": [{"reason": "TASK_NOT_CANCELABLE"}]}});
        assert_eq!(rest_failure(StatusCode::BAD_REQUEST, &body).code, -32002);
        let body = json!({"error": {"code": 404, "message": "gone"}});
        assert_eq!(rest_failure(StatusCode::NOT_FOUND, &body).code, -32001);
    }

    #[test]
    fn queries_are_percent_encoded() {
        let mut fields = Map::new();
        fields.insert("contextId".into(), json!("a b&c"));
        fields.insert("pageSize".into(), json!(5));
        assert_eq!(encode_query(&fields), "?contextId=a%20b%26c&pageSize=5");
    }
}
