//! One trace across organisations (issue 18): the spans the gateway opens
//! and the W3C trace context it reads and writes.
//!
//! The spans are ordinary `tracing` spans. When `convergio serve` exports
//! OpenTelemetry (`telemetry.otlp` in the config), `tracing-opentelemetry`
//! turns them into OTel spans: the `otel.name` and `otel.kind` fields name
//! them and set their kind, every other field becomes an attribute. The
//! names follow the OpenTelemetry GenAI semantic conventions for agents
//! (still marked development): `invoke_agent {agent}` with
//! `gen_ai.operation.name`, `gen_ai.agent.name`, `gen_ai.conversation.id`,
//! and `invoke_workflow {graph}` for a graph run; A2A facts are `a2a.*`
//! attributes and the agent's organisation is `convergio.org`.
//!
//! Without the exporter the spans are only log context, every
//! [`OpenTelemetrySpanExt`] call below is a no-op, and the trace id is the
//! caller's (`traceparent`) or the run's own, as before.

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state header.
pub const TRACESTATE: &str = "tracestate";

/// Makes `headers`' W3C trace context (if well formed) the parent of
/// `span`, which must not have been entered or asked for its context yet.
pub fn adopt_parent(span: &Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only without the OTel layer (nothing to do then) or once
        // the span has started (a caller's bug, caught by tests).
        let _ = span.set_parent(parent);
    }
}

/// Makes the `traceparent` text the parent of `span` (see [`adopt_parent`]).
pub fn adopt_traceparent(span: &Span, traceparent: &str) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(traceparent) {
        headers.insert(TRACEPARENT, value);
        adopt_parent(span, &headers);
    }
}

/// The OTel trace id of `span` (32 hex digits), when spans are exported.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Replaces `headers`' trace context with `span`'s, so the next hop's spans
/// are its children; returns whether it did (spans are exported). Without
/// the exporter the headers are left as they are.
pub fn inject(span: &Span, headers: &mut HeaderMap) -> bool {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return false;
    }
    headers.remove(TRACESTATE);
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    true
}

/// `span`'s `traceparent` header value, when spans are exported.
pub fn traceparent(span: &Span) -> Option<String> {
    let mut headers = HeaderMap::new();
    if !inject(span, &mut headers) {
        return None;
    }
    headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The `invoke_agent {agent}` span of one A2A call the gateway forwards:
/// a client span (the agent runs elsewhere), with the task and context ids
/// the call names (recorded from the answer when the agent assigns them,
/// see [`record_reply`]).
pub fn invoke_agent_span(
    agent: &str,
    agent_org: Option<&str>,
    method: &str,
    task_id: Option<&str>,
    context_id: Option<&str>,
) -> Span {
    let task_id = task_id.unwrap_or_default();
    let context_id = context_id.unwrap_or_default();
    tracing::info_span!(
        "invoke_agent",
        otel.name = %format!("invoke_agent {agent}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = %agent,
        gen_ai.conversation.id = %context_id,
        a2a.method = %method,
        a2a.task_id = %task_id,
        a2a.context_id = %context_id,
        convergio.org = %agent_org.unwrap_or_default(),
    )
}

/// Records on `span` the task and context ids an agent's answer assigned,
/// and marks it failed when the answer is an error.
pub fn record_reply(span: &Span, result: &Value) {
    if span.is_disabled() {
        return;
    }
    let task = result.get("task").unwrap_or(result);
    if let Some(id) = task.get("id").and_then(Value::as_str) {
        span.record("a2a.task_id", id);
    }
    let context = task
        .get("contextId")
        .or_else(|| result.get("message")?.get("contextId"))
        .and_then(Value::as_str);
    if let Some(id) = context {
        span.record("a2a.context_id", id);
        span.record("gen_ai.conversation.id", id);
    }
}

/// Marks `span` (declared with an empty `otel.status_code`) as failed.
pub fn record_error(span: &Span) {
    span.record("otel.status_code", "ERROR");
}

/// The `invoke_workflow {graph}` span of one graph run (the GenAI
/// conventions name a workflow by `gen_ai.agent.name` too).
pub fn invoke_workflow_span(graph: &str, org: &str) -> Span {
    tracing::info_span!(
        "invoke_workflow",
        otel.name = %format!("invoke_workflow {graph}"),
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_workflow",
        gen_ai.agent.name = %graph,
        convergio.org = %org,
        convergio.run_id = tracing::field::Empty,
    )
}

/// The task id an A2A request names: the message's `taskId`, or `id` for
/// the task methods.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_exporter_nothing_is_injected() {
        let span = tracing::info_span!("plain");
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("kept"));
        assert!(!inject(&span, &mut headers));
        assert_eq!(
            headers.get(TRACEPARENT).map(|v| v.as_bytes()),
            Some(&b"kept"[..])
        );
        assert_eq!(trace_id(&span), None);
    }
}
