//! Logs and traces, both through `tracing`.
//!
//! Logs: human-readable by default, JSON lines with `--log-format json`; levels from RUST_LOG
//! (default `info`). Logs go to stderr, so that client commands keep stdout for their JSON output.
//! Colour (ANSI escape codes) only when stderr is a terminal and `NO_COLOR` is not set, so that a
//! redirected log file holds plain text.
//!
//! Traces (OpenTelemetry, for `serve` and `adapter`): on when an OTLP endpoint is given
//! (`--otlp-endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and
//! then idminter's spans are exported over OTLP/gRPC, configured by the standard `OTEL_*` variables
//! (service name, resource attributes, sampler, batch settings, timeout, headers). An incoming W3C
//! `traceparent` is continued ([`remote_parent`], [`with_parent`]) and the adapter passes its own on to the minter
//! ([`inject`]). Off, there is no exporter, no OpenTelemetry layer, and the spans only traces need
//! (DEBUG level, such as the database's) stay disabled at their call sites.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, filter, fmt};

use crate::config::LogFormat;

/// Set once traces are exported: the per-call work of propagation is skipped while it is not.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Where and as what a long-running command exports its traces.
#[derive(Debug, Clone)]
pub struct Traces {
    /// `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`), e.g. `http://collector:4317`.
    pub endpoint: Option<String>,
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
    pub service_name: &'static str,
}

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "shut down to export the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (a no-op when traces are off).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocks until the export finishes, which needs this runtime's other threads.
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = stopped {
                eprintln!("idminter: exporting the last traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber for logs only; a second call (as in tests) is ignored.
pub fn init(format: LogFormat) {
    let _logs_only = init_with_traces(format, None);
}

/// Installs the global subscriber: logs, and traces when `traces` is given and an endpoint is
/// configured. A second call (as in tests) installs nothing.
pub fn init_with_traces(format: LogFormat, traces: Option<Traces>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = traces.and_then(|t| match tracer_provider(&t) {
        Ok(provider) => provider,
        Err(e) => {
            eprintln!("idminter: traces are off: {e}");
            None
        }
    });
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("idminter"))
            // Asked at every span and event rather than once per call site: with a per-call-site
            // answer, spans created after the first at a call site were sometimes left out of
            // the traces (their per-layer filter state was not recomputed).
            .with_filter(filter::dynamic_filter_fn(|metadata, _| traced(metadata)))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACING.store(true, Ordering::Relaxed);
    }
    Telemetry {
        provider: provider.filter(|_| installed),
    }
}

/// What traces carry: idminter's spans down to DEBUG (the database's are DEBUG, so that they cost
/// nothing while traces are off), and its events from INFO (which become span events).
fn traced(metadata: &Metadata<'_>) -> bool {
    let level = if metadata.is_span() {
        Level::DEBUG
    } else {
        Level::INFO
    };
    metadata.target().starts_with("idminter") && *metadata.level() <= level
}

/// The OTLP/gRPC exporter behind a batching provider, or `None` when no endpoint is configured
/// (or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
fn tracer_provider(traces: &Traces) -> anyhow::Result<Option<SdkTracerProvider>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    // The signal's own variable first, as the OTLP exporter specification orders them.
    let Some(endpoint) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| traces.endpoint.clone().filter(|e| !e.trim().is_empty()))
    else {
        return Ok(None);
    };
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let detectors: [Box<dyn ResourceDetector>; 2] = [
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let mut resource = Resource::builder_empty()
        .with_service_name(traces.service_name)
        .with_detectors(&detectors);
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(name);
    }
    // The sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; parent-based always-on by
    // default) and the batch settings (OTEL_BSP_*) come from the environment.
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_batch_exporter(exporter)
            .build(),
    ))
}

/// The W3C `traceparent` context of an incoming call's `headers`; `None` when they carry none,
/// and while traces are off (nothing is read then).
pub fn remote_parent(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt as _;
    if !TRACING.load(Ordering::Relaxed) {
        return None;
    }
    // From an empty context, not this worker thread's current one, which belongs to no call.
    let context = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers))
    });
    context.span().span_context().is_valid().then_some(context)
}

/// `span` (an incoming call's), continuing the trace of `parent` (from [`remote_parent`]) when
/// the call carried one.
pub fn with_parent(span: tracing::Span, parent: Option<opentelemetry::Context>) -> tracing::Span {
    if let Some(parent) = parent {
        // Fails only when the span is disabled, which then has no trace to continue.
        let _ = span.set_parent(parent);
    }
    span
}

/// Adds the current span's context (`traceparent`) to an outgoing call's metadata, so that the
/// server's spans join this trace. Nothing is written while traces are off.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but the empty string
/// (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colour(true, None));
        assert!(colour(true, empty));
        assert!(!colour(true, set));
        assert!(!colour(false, None));
        assert!(!colour(false, set));
    }
}
