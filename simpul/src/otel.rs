//! OpenTelemetry export of the gateways' spans, in a build with the `otel` feature: when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, every span
//! the log filter lets through is exported over OTLP/HTTP (protobuf) by a batch exporter on a
//! thread of its own, with the service name `simpul`; each exchange's span is in the trace
//! the member system sent (gateway's `tracectx`). The standard `OTEL_*` variables configure
//! the exporter (endpoint, headers, timeout).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::error::CliError;

/// The variables that turn the export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Flushes the spans still in the exporter's batch when the process ends.
pub(crate) struct Export(SdkTracerProvider);

impl Drop for Export {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("simpul: OpenTelemetry: the last spans were not exported: {e}");
        }
    }
}

/// The layer that exports spans to OpenTelemetry.
pub(crate) type SpanLayer<S> = OpenTelemetryLayer<S, SdkTracer>;

/// The layer that exports spans, and what flushes it at the end; `None` when no endpoint
/// variable is set.
///
/// # Errors
/// The exporter cannot be built from the `OTEL_*` variables.
pub(crate) fn layer<S>() -> Result<Option<(SpanLayer<S>, Export)>, CliError>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !ENDPOINT_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| {
            CliError::Usage(format!(
                "OpenTelemetry: cannot export to {}: {e}",
                ENDPOINT_VARS.join(" / ")
            ))
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("simpul").build())
        .build();
    let tracer = provider.tracer("simpul");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Export(provider),
    )))
}
