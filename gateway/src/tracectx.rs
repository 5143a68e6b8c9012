//! An exchange's span in the member system's W3C trace (PROTOCOL.md §3.8). Without the
//! `otel` feature nothing exports spans, and the context sent on names a fresh random span of
//! this gateway; with it, the span joins the trace that came in (its OpenTelemetry parent is
//! the sender's span), and the context sent on names that span, so the next hop's spans hang
//! under it in the operator's tracing system.

use contracts::trace::TraceContext;

/// Makes `span` — new, not yet entered — a span of `trace` where spans are exported, and
/// returns the context to send on from it.
pub(crate) fn join(span: &tracing::Span, trace: &TraceContext) -> TraceContext {
    #[cfg(feature = "otel")]
    {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let flags = if trace.sampled() {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let sender = SpanContext::new(
            TraceId::from_bytes(trace.trace_id_bytes()),
            SpanId::from_bytes(trace.parent_id_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        // Refused when no exporter is installed, or the span is filtered out or already
        // entered: then it is not exported, and a random id serves as well.
        if span
            .set_parent(opentelemetry::Context::new().with_remote_span_context(sender))
            .is_ok()
        {
            let own = span.context().span().span_context().clone();
            if own.is_valid() && own.trace_id().to_bytes() == trace.trace_id_bytes() {
                return trace.with_span_id(own.span_id().to_bytes());
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    let _ = span;
    trace.child()
}
