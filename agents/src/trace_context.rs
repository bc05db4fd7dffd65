//! W3C trace context on the agent side (issue 18). An agent server opens
//! an `a2a_server` span per request whose parent, when spans are exported
//! (see the gateway's `telemetry` module), is the caller's `traceparent`,
//! and a task's execution runs inside it; [`traceparent`] gives the current
//! span's header value for an agent's own outgoing calls (model providers).
//! Without the exporter both are no-ops.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Middleware: runs the request in its `a2a_server` span.
pub(crate) async fn adopt(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "a2a_server",
        otel.name = "a2a_server",
        otel.kind = "server",
        path = %request.uri().path(),
    );
    if let Some(parent) = remote_parent(request.headers()) {
        // Fails only without the exporter's layer: nothing to adopt then.
        let _ = span.set_parent(parent);
    }
    next.run(request).instrument(span).await
}

/// The caller's span as a remote parent, from a well-formed version-00
/// `traceparent`.
fn remote_parent(headers: &HeaderMap) -> Option<Context> {
    let text = headers.get(TRACEPARENT)?.to_str().ok()?;
    let fields: Vec<&str> = text.trim().split('-').collect();
    let [version, trace, span, flags] = fields.as_slice() else {
        return None;
    };
    if *version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(context))
}

/// The current span's `traceparent` header value, when spans are exported.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parent(value: &str) -> Option<Context> {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(value).expect("header"));
        remote_parent(&headers)
    }

    #[test]
    fn only_well_formed_traceparents_become_parents() {
        let good =
            parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("a parent");
        assert_eq!(
            good.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_the_exporter_there_is_no_traceparent() {
        assert_eq!(traceparent(), None);
    }
}
