//! The process's `tracing` subscriber (issue 18): log lines to stderr,
//! and, when `telemetry.otlp.endpoint` is set (`telemetry_config.rs`),
//! every span exported with OpenTelemetry (OTLP over HTTP/protobuf).
//! Export is off by default.
//!
//! Spans are queued and sent by the SDK's batch processor on its own
//! thread, never on a request's path; the POST itself runs on the server's
//! runtime with the workspace's reqwest (rustls on ring). A full queue
//! drops spans rather than slow requests. The caller's sampling decision
//! (`traceparent` flags) is followed; `sample_ratio` applies to traces
//! this deployment starts. On shutdown the queue is flushed.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::telemetry_config::OtlpSettings;

/// Largest answer read from the collector.
const MAX_COLLECTOR_ANSWER_BYTES: usize = 64 * 1024;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running exporter; [`Telemetry::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    log_filter: LogFilter,
}

/// The log lines' filter, replaceable while the process runs (a reload,
/// issue 22). Inert when this process's subscriber is not the one
/// [`Telemetry::init`] installed.
#[derive(Debug, Clone, Default)]
pub struct LogFilter(Option<reload::Handle<EnvFilter, Registry>>);

// === impl LogFilter ===

impl LogFilter {
    /// Parses `directives` strictly (start-up falls back to `info` on a
    /// bad filter; a reload refuses it instead).
    pub fn parse(directives: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
        EnvFilter::try_new(directives)
    }

    /// Filters log lines with `filter` from now on.
    pub fn replace(&self, filter: EnvFilter) {
        if let Some(handle) = &self.0 {
            if let Err(error) = handle.reload(filter) {
                tracing::warn!(%error, "the log filter could not be replaced");
            }
        }
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Installs the process's subscriber: log lines (`log_filter`, one
    /// JSON object per line when `json_logs`) and, with `otlp`, span export. Must run inside the
    /// Tokio runtime (exports are sent on it). A second call (tests that
    /// run `serve` twice in one process) keeps the first subscriber.
    pub fn init(
        log_filter: &str,
        json_logs: bool,
        otlp: Option<&OtlpSettings>,
    ) -> anyhow::Result<Self> {
        let filter = EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(filter);
        let logs = match json_logs {
            true => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .boxed(),
            false => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed(),
        }
        .with_filter(filter);
        let provider = otlp.map(provider).transpose()?;
        let spans = provider.as_ref().map(|provider| {
            // Our own spans at info and above; other crates' only when
            // they warn (their events then land on our spans).
            let targets = Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target("convergio", LevelFilter::INFO);
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("convergio"))
                .with_filter(targets)
        });
        let installed = tracing_subscriber::registry()
            .with(logs)
            .with(spans)
            .try_init()
            .is_ok();
        Ok(Self {
            provider,
            log_filter: LogFilter(installed.then_some(handle)),
        })
    }

    /// The handle that replaces the log filter.
    pub fn log_filter(&self) -> LogFilter {
        self.log_filter.clone()
    }

    /// Sends what is queued and stops the exporter (bounded by the
    /// exporter's own timeout).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK blocks this thread until its batch thread has exported,
        // and the export runs on this runtime: off the async workers.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: flushing the spans failed: {error}"),
            Err(error) => eprintln!("warning: flushing the spans failed: {error}"),
        }
    }
}

/// The tracer provider exporting to `settings`' collector.
fn provider(settings: &OtlpSettings) -> anyhow::Result<SdkTracerProvider> {
    let client = ExportClient {
        client: reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        runtime: tokio::runtime::Handle::try_current()?,
    };
    let headers: HashMap<String, String> = settings
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(settings.endpoint.as_str())
        .with_headers(headers)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: the workspace's reqwest, driven on the
/// server's runtime (the SDK's batch thread only waits for it).
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let mut answer = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await? {
                if answer.len() + chunk.len() > MAX_COLLECTOR_ANSWER_BYTES {
                    break;
                }
                answer.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, answer))
        });
        let (status, answer) = sent.await??;
        Ok(Response::builder()
            .status(status)
            .body(Bytes::from(answer))?)
    }
}
