//! The `telemetry:` section of the configuration and the process's
//! `tracing` subscriber (issue 18): log lines to stderr, and, when
//! `telemetry.otlp.endpoint` is set, every span exported with OpenTelemetry
//! (OTLP over HTTP/protobuf). Export is off by default.
//!
//! ```yaml
//! telemetry:
//!   otlp:
//!     endpoint: http://collector:4318/v1/traces   # the traces URL, as is
//!     headers: { authorization: "Bearer …" }
//!     service_name: convergio                      # default
//!     sample_ratio: 1.0                            # of new traces; default 1
//! ```
//!
//! Spans are queued and sent by the SDK's batch processor on its own
//! thread, never on a request's path; the POST itself runs on the server's
//! runtime with the workspace's reqwest (rustls on ring). A full queue
//! drops spans rather than slow requests. The caller's sampling decision
//! (`traceparent` flags) is followed; `sample_ratio` applies to traces
//! this deployment starts. On shutdown the queue is flushed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config_error::ConfigError;
use crate::env;

/// Largest answer read from the collector.
const MAX_COLLECTOR_ANSWER_BYTES: usize = 64 * 1024;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `telemetry:` section as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// OpenTelemetry span export (OTLP over HTTP/protobuf). Default: off.
    pub otlp: OtlpSection,
}

/// The `telemetry.otlp:` section as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSection {
    /// The collector's traces URL, used as given (OTLP/HTTP's is
    /// `http://host:4318/v1/traces`). Default none: export off.
    /// `CONVERGIO_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Headers sent with every export (a collector's credentials).
    /// `CONVERGIO_OTLP_HEADERS` as `name=value,name=value`.
    pub headers: BTreeMap<String, String>,
    /// The `service.name` resource attribute. Default `convergio`.
    /// `CONVERGIO_OTLP_SERVICE_NAME`.
    pub service_name: String,
    /// Share of the traces this deployment starts that are recorded, 0 to
    /// 1; a caller's sampled `traceparent` is always followed. Default 1.
    /// `CONVERGIO_OTLP_SAMPLE_RATIO`.
    pub sample_ratio: f64,
}

impl Default for OtlpSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            headers: BTreeMap::new(),
            service_name: "convergio".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

/// The validated export settings (`None` in [`crate::config::Config`]:
/// export off).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The traces URL.
    pub endpoint: reqwest::Url,
    /// Headers of every export.
    pub headers: BTreeMap<String, String>,
    /// `service.name`.
    pub service_name: String,
    /// Share of new traces recorded.
    pub sample_ratio: f64,
}

/// Applies the `CONVERGIO_OTLP_*` overrides to `section`.
pub fn apply_environment(
    section: &mut TelemetrySection,
    environment: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let get = |key: &str| environment.get(key).filter(|value| !value.is_empty());
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: field.to_owned(),
        message,
    };
    if let Some(value) = get(env::OTLP_ENDPOINT) {
        section.otlp.endpoint = Some(value.clone());
    }
    if let Some(value) = get(env::OTLP_HEADERS) {
        let mut headers = BTreeMap::new();
        for pair in value.split(',').filter(|pair| !pair.trim().is_empty()) {
            let (name, header) = pair.split_once('=').ok_or_else(|| {
                invalid(
                    env::OTLP_HEADERS,
                    "expected name=value pairs separated by commas".to_owned(),
                )
            })?;
            headers.insert(name.trim().to_owned(), header.trim().to_owned());
        }
        section.otlp.headers = headers;
    }
    if let Some(value) = get(env::OTLP_SERVICE_NAME) {
        section.otlp.service_name = value.clone();
    }
    if let Some(value) = get(env::OTLP_SAMPLE_RATIO) {
        section.otlp.sample_ratio = value.parse().map_err(|_| {
            invalid(
                env::OTLP_SAMPLE_RATIO,
                format!("expected a number from 0 to 1, found {value:?}"),
            )
        })?;
    }
    Ok(())
}

/// Validates the section: `None` when export is off.
pub fn validate(section: TelemetrySection) -> Result<Option<OtlpSettings>, ConfigError> {
    let otlp = section.otlp;
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        field: format!("telemetry.otlp.{field}"),
        message,
    };
    if !(0.0..=1.0).contains(&otlp.sample_ratio) {
        return Err(invalid(
            "sample_ratio",
            format!("must be from 0 to 1, found {}", otlp.sample_ratio),
        ));
    }
    if otlp.service_name.is_empty() {
        return Err(invalid("service_name", "must not be empty".to_owned()));
    }
    for (name, value) in &otlp.headers {
        if reqwest::header::HeaderName::try_from(name.as_str()).is_err()
            || reqwest::header::HeaderValue::try_from(value.as_str()).is_err()
        {
            // The value may be a credential: never echoed.
            return Err(invalid(
                &format!("headers.{name}"),
                "not a valid HTTP header".to_owned(),
            ));
        }
    }
    let Some(endpoint) = otlp.endpoint.filter(|endpoint| !endpoint.is_empty()) else {
        return Ok(None);
    };
    let endpoint = reqwest::Url::parse(&endpoint)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            invalid(
                "endpoint",
                format!("expected an http(s) URL, found {endpoint:?}"),
            )
        })?;
    Ok(Some(OtlpSettings {
        endpoint,
        headers: otlp.headers,
        service_name: otlp.service_name,
        sample_ratio: otlp.sample_ratio,
    }))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(section: OtlpSection, field: Option<&str>) {
        let validated = validate(TelemetrySection { otlp: section });
        match (validated, field) {
            (Ok(_), None) => {}
            (Err(ConfigError::Invalid { field: found, .. }), Some(field)) => {
                assert_eq!(found, field)
            }
            (other, _) => panic!("unexpected {other:?} for {field:?}"),
        }
    }

    #[test]
    fn export_is_off_by_default_and_bad_settings_are_named() {
        assert_eq!(validate(TelemetrySection::default()).ok(), Some(None));
        let with = |endpoint: &str| OtlpSection {
            endpoint: Some(endpoint.to_owned()),
            ..OtlpSection::default()
        };
        check(with("http://127.0.0.1:4318/v1/traces"), None);
        check(with("ftp://collector"), Some("telemetry.otlp.endpoint"));
        check(
            OtlpSection {
                sample_ratio: 1.5,
                ..with("http://c/v1/traces")
            },
            Some("telemetry.otlp.sample_ratio"),
        );
        check(
            OtlpSection {
                headers: BTreeMap::from([("bad name".to_owned(), "x".to_owned())]),
                ..with("http://c/v1/traces")
            },
            Some("telemetry.otlp.headers.bad name"),
        );
    }

    #[test]
    fn the_environment_sets_endpoint_headers_and_ratio() {
        let mut section = TelemetrySection::default();
        let environment = HashMap::from([
            (
                env::OTLP_ENDPOINT.to_owned(),
                "http://c:4318/v1/traces".to_owned(),
            ),
            (env::OTLP_HEADERS.to_owned(), "a=1, b = 2".to_owned()),
            (env::OTLP_SAMPLE_RATIO.to_owned(), "0.5".to_owned()),
        ]);
        apply_environment(&mut section, &environment).expect("valid");
        assert_eq!(
            section.otlp.endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(section.otlp.headers.get("b").map(String::as_str), Some("2"));
        assert_eq!(section.otlp.sample_ratio, 0.5);
    }
}
