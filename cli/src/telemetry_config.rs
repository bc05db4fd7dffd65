//! The `telemetry:` section of the configuration (issue 18): where spans
//! are exported with OpenTelemetry (OTLP over HTTP/protobuf; off by
//! default). `telemetry.rs` runs the exporter these settings describe.
//!
//! ```yaml
//! telemetry:
//!   otlp:
//!     endpoint: http://collector:4318/v1/traces   # the traces URL, as is
//!     headers: { authorization: "Bearer …" }
//!     service_name: convergio                      # default
//!     sample_ratio: 1.0                            # of new traces; default 1
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config_error::{parse_env, ConfigError};
use crate::env;

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
        section.otlp.sample_ratio =
            parse_env(env::OTLP_SAMPLE_RATIO, value, "a number from 0 to 1")?;
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
