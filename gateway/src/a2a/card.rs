//! Agent cards served by the gateway: an upstream card with its interfaces
//! rewritten to the gateway, and the gateway's own card. The rewrite
//! invalidates the upstream's JWS signatures (they cover the interface URLs),
//! so `signatures` is dropped rather than passed on broken; with a card
//! signer configured ([`A2aConfig::card_signer`], the organisation's key),
//! the served card is re-signed by the gateway, so a client verifies it
//! against the gateway's published JWKS. The upstream's own signature was
//! checked by the registry when the card was stored (it decides `verified`).
//! Cards get an `ETag` (SHA-256 of the served bytes), `Cache-Control`, and
//! `304` on `If-None-Match`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use base64::Engine;
use convergio_schemas::a2a::MEDIA_JSON;
use serde_json::{json, Map, Value};

use super::{A2aConfig, CardSignerHandle};
use crate::routes::RouteTarget;

/// The gateway's public base URL for this request: `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `X-Forwarded-Prefix` when trusted, else the `Host`
/// header over http. Values with characters outside a URL authority or path
/// are ignored, so a header cannot inject text into a card.
pub fn gateway_base(headers: &HeaderMap, config: &A2aConfig) -> String {
    base_url(headers, config.trust_forwarded_headers)
}

/// [`gateway_base`], given whether forwarded headers are trusted.
fn base_url(headers: &HeaderMap, forwarded: bool) -> String {
    let first = |name: &str| -> Option<String> {
        let value = headers.get(name)?.to_str().ok()?;
        let first = value.split(',').next()?.trim();
        (!first.is_empty()).then(|| first.to_owned())
    };
    let authority_ok = |text: &String| {
        text.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]_".contains(&byte))
    };
    let proto = forwarded
        .then(|| first("x-forwarded-proto"))
        .flatten()
        .filter(|proto| proto == "http" || proto == "https")
        .unwrap_or_else(|| "http".to_owned());
    let host = forwarded
        .then(|| first("x-forwarded-host"))
        .flatten()
        .filter(authority_ok)
        .or_else(|| first("host").filter(authority_ok))
        .unwrap_or_else(|| "localhost".to_owned());
    let prefix = forwarded
        .then(|| first("x-forwarded-prefix"))
        .flatten()
        .filter(|prefix| {
            prefix.starts_with('/')
                && prefix
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte))
        })
        .map(|prefix| prefix.trim_end_matches('/').to_owned())
        .unwrap_or_default();
    format!("{proto}://{host}{prefix}")
}

/// The upstream card as the gateway serves it at `agent_url`: every
/// interface points at the gateway, which offers JSON-RPC, HTTP+JSON and
/// gRPC in 1.0 (it translates) and JSON-RPC in 0.3, in the upstream's order
/// of preference where it lists them; the gRPC interface is the gateway's
/// `host:port` with the agent's gateway name (`tenant`) as its tenant, which
/// gRPC clients copy into every request; upstream tenants and endpoints are
/// internal and dropped; `signatures` is dropped.
pub fn rewrite_card(card: &Value, agent_url: &str, tenant: &str) -> Value {
    let mut card = match card {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    card.remove("signatures");
    let upstream = card.remove("supportedInterfaces");
    for legacy in [
        "url",
        "preferredTransport",
        "additionalInterfaces",
        "protocolVersion",
    ] {
        card.remove(legacy);
    }
    let mut bindings: Vec<&str> = Vec::new();
    for entry in upstream
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(binding @ ("JSONRPC" | "HTTP+JSON" | "GRPC")) =
            entry.get("protocolBinding").and_then(Value::as_str)
        {
            if !bindings.contains(&binding) {
                bindings.push(binding);
            }
        }
    }
    for binding in ["JSONRPC", "HTTP+JSON", "GRPC"] {
        if !bindings.contains(&binding) {
            bindings.push(binding);
        }
    }
    let grpc_url = grpc_authority(agent_url);
    let mut interfaces: Vec<Value> = bindings
        .into_iter()
        .map(|binding| match binding {
            "GRPC" => json!({"url": grpc_url, "protocolBinding": binding, "protocolVersion": "1.0", "tenant": tenant}),
            _ => json!({"url": agent_url, "protocolBinding": binding, "protocolVersion": "1.0"}),
        })
        .collect();
    interfaces
        .push(json!({"url": agent_url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}));
    card.insert("supportedInterfaces".into(), Value::Array(interfaces));
    Value::Object(card)
}

/// Registry records' cards for callers who may not see how the gateway
/// reaches an agent (`GET /v1/agents` and the record routes; see
/// [`convergio_registry::api::CardView`]): an unsigned card with its
/// interfaces pointing at the gateway, as `/agents/{name}` serves it but
/// not re-signed (a gateway signature would read, to a peer syncing the
/// listing, as the organisation vouching for a card nobody signed); a card
/// its owner signed as it is, since the signature covers its interfaces
/// and the signer chose what they say.
#[derive(Debug, Clone)]
pub struct ServedCards {
    trust_forwarded_headers: bool,
}

// === impl ServedCards ===

impl ServedCards {
    /// Cards pointing at the gateway as `config` serves it.
    pub fn new(config: &A2aConfig) -> Self {
        Self {
            trust_forwarded_headers: config.trust_forwarded_headers,
        }
    }
}

impl convergio_registry::api::CardView for ServedCards {
    fn served_card(&self, record: &convergio_registry::AgentRecord, headers: &HeaderMap) -> Value {
        if record.card.get("signatures").is_some() {
            return record.card.clone();
        }
        let base = base_url(headers, self.trust_forwarded_headers);
        let url = match &record.id {
            convergio_schemas::AgentId::External { org, name } => {
                format!("{base}/external/{org}/agents/{name}/")
            }
            convergio_schemas::AgentId::Internal { name } => format!("{base}/agents/{name}/"),
        };
        rewrite_card(&record.card, &url, &record.name)
    }
}

/// The `host:port` a gRPC client dials for `url` (gRPC interfaces carry no
/// scheme or path; the gateway serves gRPC on the same listener).
fn grpc_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// `card` signed by `signer` (its `signatures` replaced by one JWS of the
/// gateway's key), or unchanged without a signer.
pub fn sign_served(card: Value, signer: Option<&CardSignerHandle>) -> Value {
    match signer {
        // Signing fails only for a card that is not an object, which
        // `rewrite_card` and `gateway_card` never produce.
        Some(signer) => convergio_auth::sign_card(&card, signer.0.as_ref()).unwrap_or(card),
        None => card,
    }
}

/// The gateway's own card: Convergio as an A2A agent whose skills are the
/// agents the caller may reach. Its interfaces are `{base}/a2a` and gRPC on
/// the gateway's `host:port`, where the `tenant` field (or `/a2a/{tenant}/…`
/// prefix) names the agent.
pub fn gateway_card(base: &str, config: &A2aConfig, agents: &[RouteTarget]) -> Value {
    let skills: Vec<Value> = agents
        .iter()
        .map(|agent| {
            let name = agent.card.get("name").and_then(Value::as_str).unwrap_or(&agent.name);
            let mut tags = vec![Value::from("agent"), Value::from(agent.name.as_str())];
            for skill in agent.card.get("skills").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = skill.get("id").and_then(Value::as_str) {
                    tags.push(Value::from(format!("skill:{id}")));
                }
            }
            json!({
                "id": agent.name,
                "name": name,
                "description": format!(
                    "{} (reach it with tenant \"{}\", or through its own card at {base}/agents/{}/.well-known/agent-card.json)",
                    agent.description(), agent.name, agent.name
                ),
                "tags": tags,
            })
        })
        .collect();
    let url = format!("{base}/a2a");
    json!({
        "name": config.gateway_name,
        "description": config.gateway_description,
        "version": config.gateway_version,
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": grpc_authority(base), "protocolBinding": "GRPC", "protocolVersion": "1.0"},
        ],
        "capabilities": {"streaming": true, "pushNotifications": true},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}

/// Serves `card` with `ETag`, `Cache-Control` and `304` revalidation.
pub fn card_response(
    card: &Value,
    request_headers: &HeaderMap,
    cache_control: &str,
) -> Response<Body> {
    json_response(card, request_headers, cache_control, MEDIA_JSON)
}

/// Serves a discovery document (a card, a catalog) as `content_type` with
/// `ETag`, `Cache-Control` and `304` revalidation.
pub fn json_response(
    document: &Value,
    request_headers: &HeaderMap,
    cache_control: &str,
    content_type: &'static str,
) -> Response<Body> {
    let bytes = document.to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes.as_bytes());
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
    let etag = format!("\"{tag}\"");
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').map(str::trim).any(|candidate| {
                candidate == "*"
                    || candidate == etag
                    || candidate.strip_prefix("W/") == Some(etag.as_str())
            })
        });
    let mut response = if matches {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(Body::from(bytes));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(cache_control) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Host, X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Prefix"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> A2aConfig {
        A2aConfig::default()
    }

    #[test]
    fn base_url_honours_forwarded_headers_and_rejects_injection() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("gw.local:8080"));
        assert_eq!(gateway_base(&headers, &config()), "http://gw.local:8080");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("api.example.com, inner"),
        );
        headers.insert(
            "x-forwarded-prefix",
            HeaderValue::from_static("/convergio/"),
        );
        assert_eq!(
            gateway_base(&headers, &config()),
            "https://api.example.com/convergio"
        );
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil.com/\"x"));
        assert_eq!(
            gateway_base(&headers, &config()),
            "https://gw.local:8080/convergio"
        );
        let untrusting = A2aConfig {
            trust_forwarded_headers: false,
            ..config()
        };
        assert_eq!(gateway_base(&headers, &untrusting), "http://gw.local:8080");
    }

    #[test]
    fn rewrite_points_every_interface_at_the_gateway_and_drops_signatures() {
        let card = json!({
            "name": "echo", "description": "d", "version": "1", "futureField": {"kept": true},
            "supportedInterfaces": [
                {"url": "http://10.0.0.1:9/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0", "tenant": "t"},
                {"url": "10.0.0.1:10", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
            ],
            "signatures": [{"protected": "x", "signature": "y"}]
        });
        let served = rewrite_card(&card, "https://gw/agents/echo", "echo");
        assert!(served.get("signatures").is_none());
        assert_eq!(served["futureField"], json!({"kept": true}));
        let interfaces = served["supportedInterfaces"]
            .as_array()
            .expect("interfaces");
        assert_eq!(interfaces[0]["protocolBinding"], json!("HTTP+JSON"));
        assert_eq!(interfaces[1]["protocolBinding"], json!("GRPC"));
        assert_eq!(interfaces[1]["url"], json!("gw"));
        assert_eq!(interfaces[1]["tenant"], json!("echo"));
        assert_eq!(interfaces[2]["protocolBinding"], json!("JSONRPC"));
        let http: Vec<&Value> = interfaces
            .iter()
            .filter(|entry| entry["protocolBinding"] != json!("GRPC"))
            .collect();
        assert!(http
            .iter()
            .all(|entry| entry["url"] == json!("https://gw/agents/echo")));
        assert!(http.iter().all(|entry| entry.get("tenant").is_none()));
        assert!(!served.to_string().contains("10.0.0.1"));
    }

    #[test]
    fn served_card_is_re_signed_with_the_gateway_key() {
        use convergio_auth::card_signature::{verify_card, CardCheck, CardKey};
        use ring::signature::Ed25519KeyPair;
        use std::sync::Arc;

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let signer = convergio_auth::Ed25519CardSigner::new(Arc::new(pair), "gw-1");
        let key = CardKey::from_jwk(&signer.public_jwk()).expect("jwk");
        let card = json!({"name": "echo", "description": "d", "version": "1",
            "supportedInterfaces": [{"url": "http://10.0.0.1/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "signatures": [{"protected": "eA", "signature": "eA"}]});
        let served = rewrite_card(&card, "https://gw/agents/echo", "echo");
        assert_eq!(sign_served(served.clone(), None), served);
        let handle = CardSignerHandle(Arc::new(signer));
        let signed = sign_served(served, Some(&handle));
        assert!(matches!(
            verify_card(&signed, &[key], 0),
            CardCheck::Verified { .. }
        ));
    }

    #[test]
    fn card_revalidation_answers_304() {
        let card = json!({"name": "x"});
        let first = card_response(&card, &HeaderMap::new(), "public, max-age=60");
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers().get(header::ETAG).expect("etag").clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            card_response(&card, &headers, "public").status(),
            StatusCode::NOT_MODIFIED
        );
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(
            card_response(&card, &headers, "public").status(),
            StatusCode::OK
        );
    }
}
