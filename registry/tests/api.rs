//! The REST API, driven through the router with tower's `oneshot`: the happy
//! paths (each response checked against the OpenAPI document's schema), every
//! error as a problem document (with the stored data checked unchanged
//! afterwards), and the OpenAPI document kept true to the routes.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use convergio_registry::api::{openapi_document, router, ApiConfig};
use convergio_registry::{AnyUpstream, Registry, RegistryConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-admin-token";
const WEATHER: &str = "/v1/agents/weather";
const WEATHER_FULL: &str = "/v1/agents/convergio%3A%2F%2Fagents%2Fweather";

struct Harness {
    router: Router,
    doc: Value,
    _backend: support::Backend,
}

async fn harness() -> Harness {
    let backend = support::sqlite().await;
    let registry = Registry::new(
        backend.store.clone(),
        RegistryConfig::default(),
        Arc::new(AnyUpstream),
    );
    let router = router(
        registry,
        ApiConfig {
            admin_token: Some(TOKEN.to_owned()),
            max_body_bytes: 64 * 1024,
        },
    );
    let doc = serde_json::to_value(openapi_document()).expect("openapi JSON");
    Harness {
        router,
        doc,
        _backend: backend,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request builds");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body collects")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn write(
        &self,
        method: Method,
        uri: &str,
        extra: &[(&str, &str)],
        body: &Value,
    ) -> Reply {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.send(
            method,
            uri,
            &headers,
            Some(serde_json::to_vec(body).expect("json")),
        )
        .await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, &[], None).await
    }

    /// Checks `reply` against the schema the document declares for
    /// `path` / `method` / its status.
    fn check(&self, path: &str, method: &str, reply: &Reply) {
        let status = reply.status.as_u16().to_string();
        let response = &self.doc["paths"][path][method]["responses"][&status];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which the document does not list"
        );
        let (media, _) = response["content"]
            .as_object()
            .and_then(|content| content.iter().next())
            .expect("response content");
        let content_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with(media.as_str()),
            "{content_type} is not {media}"
        );
        // JSON pointer escaping, then URI escaping of the braces in `{id}`.
        let escape = |s: &str| {
            s.replace('~', "~0")
                .replace('/', "~1")
                .replace('{', "%7B")
                .replace('}', "%7D")
        };
        let mut root = self.doc.clone();
        root["$ref"] = json!(format!(
            "#/paths/{}/{method}/responses/{status}/content/{}/schema",
            escape(path),
            escape(media)
        ));
        let validator = jsonschema::validator_for(&root).expect("document schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&reply.body)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {errors:?}\n{}",
            reply.body
        );
    }

    /// What a read-only client sees of the registry, to compare before and after.
    async fn snapshot(&self) -> Value {
        json!({
            "agents": self.get("/v1/agents?include_deleted=true&page_size=100").await.body,
            "weather_versions": self.get(&format!("{WEATHER}/versions")).await.body,
            "weather_trust": self.get(&format!("{WEATHER}/trust")).await.body,
        })
    }
}

fn weather_card() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cards/weather.json"
    ))
    .expect("example card");
    serde_json::from_str(&text).expect("card JSON")
}

fn etag(reply: &Reply) -> String {
    reply
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}

#[tokio::test]
async fn agent_lifecycle_answers_match_the_openapi_document() {
    let h = harness().await;
    let created = h
        .write(Method::POST, "/v1/agents", &[], &weather_card())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    h.check("/v1/agents", "post", &created);
    assert_eq!(created.headers["location"], WEATHER_FULL);
    assert_eq!(created.body["id"], "convergio://agents/weather");
    assert_eq!(created.body["trust"], "registered");
    assert_eq!(
        created.body["upstreams"][1]["protocol_binding"],
        "HTTP+JSON"
    );

    let by_name = h.get(WEATHER).await;
    let by_id = h.get(WEATHER_FULL).await;
    assert_eq!(by_name.status, StatusCode::OK);
    h.check("/v1/agents/{id}", "get", &by_name);
    assert_eq!(by_name.body, by_id.body);
    assert_eq!(etag(&by_name), etag(&created));

    let registration = json!({
        "card": weather_card(),
        "role": "router",
        "upstreams": [{"url": "http://127.0.0.1:9999/a2a", "protocol_binding": "JSONRPC", "protocol_version": "1.0"}]
    });
    let updated = h
        .write(
            Method::PUT,
            WEATHER,
            &[("if-match", &etag(&created))],
            &registration,
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    h.check("/v1/agents/{id}", "put", &updated);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["role"], "router");

    let page = h.get("/v1/agents?q=forecast&role=router&page_size=5").await;
    assert_eq!(page.status, StatusCode::OK);
    h.check("/v1/agents", "get", &page);
    assert_eq!(page.body["agents"][0]["id"], "convergio://agents/weather");
    assert_eq!(page.body["next_page_token"], Value::Null);

    let trusted = h
        .write(
            Method::PUT,
            &format!("{WEATHER}/trust"),
            &[],
            &json!({"level": "trusted", "reason": "reviewed by the platform team"}),
        )
        .await;
    assert_eq!(trusted.status, StatusCode::OK, "{}", trusted.body);
    h.check("/v1/agents/{id}/trust", "put", &trusted);
    assert_eq!(trusted.body["trust"], "trusted");

    let history = h.get(&format!("{WEATHER}/trust")).await;
    h.check("/v1/agents/{id}/trust", "get", &history);
    assert_eq!(history.body["changes"][0]["actor"]["subject"], "admin");
    assert_eq!(history.body["changes"][0]["from"], "registered");

    let deleted = h
        .send(
            Method::DELETE,
            WEATHER,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    h.check("/v1/agents/{id}", "delete", &deleted);
    assert!(deleted.body["deleted_at"].is_string());

    let versions = h.get(&format!("{WEATHER}/versions")).await;
    h.check("/v1/agents/{id}/versions", "get", &versions);
    assert_eq!(versions.body["versions"].as_array().map(Vec::len), Some(4));

    let gone = h.get(WEATHER).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    h.check("/v1/agents/{id}", "get", &gone);
    let first = h.get(&format!("{WEATHER}?version=1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body, created.body);

    let doc = h.get("/v1/openapi.json").await;
    h.check("/v1/openapi.json", "get", &doc);
    assert_eq!(doc.body["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_error_is_a_problem_document_and_changes_nothing() {
    let h = harness().await;
    let created = h
        .write(Method::POST, "/v1/agents", &[], &weather_card())
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let current = etag(&created);
    let before = h.snapshot().await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_str());
    let json_type = ("content-type", "application/json");

    let mut bad_card = weather_card();
    bad_card["supportedInterfaces"][0]["protocolVersion"] = json!("one");
    bad_card["defaultOutputModes"] = json!([]);
    let mut renamed = weather_card();
    renamed["name"] = json!("Weather 2");
    let big = json!({"card": {"name": "x".repeat(70 * 1024)}});
    let stale = "\"0000000000000000-v1\"".to_owned();
    let body = |value: &Value| Some(serde_json::to_vec(value).expect("json"));

    struct Case {
        name: &'static str,
        method: Method,
        uri: String,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        status: u16,
        kind: &'static str,
    }
    let case =
        |name, method, uri: &str, headers: Vec<(&'static str, &str)>, body, status, kind| Case {
            name,
            method,
            uri: uri.to_owned(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect(),
            body,
            status,
            kind,
        };
    let cases = vec![
        case(
            "schema failure",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            body(&bad_card),
            400,
            "invalid-input",
        ),
        case(
            "duplicate id",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            body(&weather_card()),
            409,
            "conflict",
        ),
        case(
            "unknown id",
            Method::GET,
            "/v1/agents/nobody",
            vec![],
            None,
            404,
            "not-found",
        ),
        case(
            "unknown version",
            Method::GET,
            "/v1/agents/weather?version=9",
            vec![],
            None,
            404,
            "not-found",
        ),
        case(
            "stale If-Match",
            Method::PUT,
            WEATHER,
            vec![auth, json_type, ("if-match", &stale)],
            body(&weather_card()),
            412,
            "precondition-failed",
        ),
        case(
            "foreign If-Match",
            Method::PUT,
            WEATHER,
            vec![auth, json_type, ("if-match", "\"abc\"")],
            body(&weather_card()),
            412,
            "precondition-failed",
        ),
        case(
            "missing If-Match",
            Method::PUT,
            WEATHER,
            vec![auth, json_type],
            body(&weather_card()),
            428,
            "precondition-failed",
        ),
        case(
            "body over limit",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            body(&big),
            413,
            "payload-too-large",
        ),
        case(
            "malformed JSON",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            Some(b"{\"card\": ".to_vec()),
            400,
            "malformed-body",
        ),
        case(
            "wrong content type",
            Method::POST,
            "/v1/agents",
            vec![auth, ("content-type", "text/plain")],
            body(&weather_card()),
            415,
            "unsupported-media-type",
        ),
        case(
            "no content type",
            Method::PUT,
            "/v1/agents/weather/trust",
            vec![auth],
            body(&json!({"level": "trusted", "reason": "x"})),
            415,
            "unsupported-media-type",
        ),
        case(
            "unknown field",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            body(&json!({"card": renamed, "colour": "red"})),
            400,
            "invalid-input",
        ),
        case(
            "unknown trust level",
            Method::PUT,
            "/v1/agents/weather/trust",
            vec![auth, json_type],
            body(&json!({"level": "superuser", "reason": "x"})),
            400,
            "invalid-input",
        ),
        case(
            "empty reason",
            Method::PUT,
            "/v1/agents/weather/trust",
            vec![auth, json_type],
            body(&json!({"level": "trusted", "reason": "  "})),
            400,
            "invalid-input",
        ),
        case(
            "verified without signature check",
            Method::PUT,
            "/v1/agents/weather/trust",
            vec![auth, json_type],
            body(&json!({"level": "verified", "reason": "signed"})),
            403,
            "forbidden",
        ),
        case(
            "registration above registered",
            Method::POST,
            "/v1/agents",
            vec![auth, json_type],
            body(&json!({"card": renamed, "trust": "trusted"})),
            403,
            "forbidden",
        ),
        case(
            "missing admin token",
            Method::PUT,
            "/v1/agents/weather/trust",
            vec![json_type],
            body(&json!({"level": "trusted", "reason": "x"})),
            401,
            "unauthenticated",
        ),
        case(
            "wrong admin token",
            Method::DELETE,
            WEATHER,
            vec![("authorization", "Bearer nope")],
            None,
            403,
            "forbidden",
        ),
        case(
            "unknown route",
            Method::GET,
            "/v1/nothing",
            vec![],
            None,
            404,
            "not-found",
        ),
        case(
            "wrong method",
            Method::PATCH,
            WEATHER,
            vec![auth],
            None,
            405,
            "invalid-input",
        ),
        case(
            "bad query value",
            Method::GET,
            "/v1/agents?min_trust=godlike",
            vec![],
            None,
            400,
            "invalid-input",
        ),
        case(
            "unknown query parameter",
            Method::GET,
            "/v1/agents?colour=red",
            vec![],
            None,
            400,
            "invalid-input",
        ),
        case(
            "page size too large",
            Method::GET,
            "/v1/agents?page_size=1000",
            vec![],
            None,
            400,
            "invalid-input",
        ),
        case(
            "bad page token",
            Method::GET,
            "/v1/agents?page_token=zzz",
            vec![],
            None,
            400,
            "invalid-input",
        ),
        case(
            "bad agent id",
            Method::GET,
            "/v1/agents/bad%20name",
            vec![],
            None,
            400,
            "invalid-input",
        ),
    ];
    for case in cases {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = h
            .send(case.method.clone(), &case.uri, &headers, case.body)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            reply.body
        );
        let content_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            content_type,
            Some("application/problem+json"),
            "{}",
            case.name
        );
        assert_eq!(
            reply.body["type"],
            format!("https://convergio.dev/problems/{}", case.kind),
            "{}: {}",
            case.name,
            reply.body
        );
        assert_eq!(reply.body["status"], case.status, "{}", case.name);
        if case.name == "schema failure" {
            let pointers: Vec<&str> = reply.body["violations"]
                .as_array()
                .expect("violations listed")
                .iter()
                .filter_map(|v| v["pointer"].as_str())
                .collect();
            assert!(
                pointers.contains(&"/supportedInterfaces/0/protocolVersion"),
                "{pointers:?}"
            );
            assert!(pointers.contains(&"/defaultOutputModes"), "{pointers:?}");
        }
        if case.name == "missing admin token" {
            assert!(reply.headers.contains_key("www-authenticate"));
        }
        assert_eq!(
            h.snapshot().await,
            before,
            "{} changed the stored data",
            case.name
        );
    }
    // The untouched agent still accepts a correct conditional update.
    let ok = h
        .write(
            Method::PUT,
            WEATHER,
            &[("if-match", &current)],
            &weather_card(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test]
async fn registration_violations_point_into_the_registration_body() {
    let h = harness().await;
    let mut card = weather_card();
    card["skills"][0]["tags"] = json!([]);
    let reply = h
        .write(Method::POST, "/v1/agents", &[], &json!({"card": card}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    h.check("/v1/agents", "post", &reply);
    assert_eq!(
        reply.body["violations"][0]["pointer"],
        "/card/skills/0/tags"
    );
}

// Regression: issue #15, defect 6: `.` and `..` were accepted, and the
// served card's interface URL became `/agents/..`.
#[tokio::test]
async fn registration_refuses_names_that_are_not_one_plain_path_segment() {
    let h = harness().await;
    // (explicit name or card name, where the 400 points, accepted)
    let cases: &[(Option<&str>, &str, Option<&str>)] = &[
        (Some("."), "Weather", Some("/name")),
        (Some(".."), "Weather", Some("/name")),
        (Some(".hidden"), "Weather", Some("/name")),
        (Some(""), "Weather", Some("/name")),
        (Some("a/b"), "Weather", Some("/name")),
        (Some("..%2f"), "Weather", Some("/name")),
        (Some("%2e%2e"), "Weather", Some("/name")),
        (Some("a\\b"), "Weather", Some("/name")),
        // A card name defaults the agent name; one that leaves nothing
        // usable points at the card's name.
        (None, "..", Some("/card/name")),
        (None, "...", Some("/card/name")),
        (Some("ok-name.v1"), "Weather", None),
        (None, ".NET Weather", None),
    ];
    for (name, card_name, refused_at) in cases {
        let mut card = weather_card();
        card["name"] = json!(card_name);
        let mut body = json!({"card": card});
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let reply = h.write(Method::POST, "/v1/agents", &[], &body).await;
        match refused_at {
            Some(pointer) => {
                assert_eq!(
                    reply.status,
                    StatusCode::BAD_REQUEST,
                    "{name:?}: {}",
                    reply.body
                );
                h.check("/v1/agents", "post", &reply);
                assert_eq!(
                    reply.body["violations"][0]["pointer"], *pointer,
                    "{name:?}: {}",
                    reply.body
                );
            }
            None => assert_eq!(
                reply.status,
                StatusCode::CREATED,
                "{name:?}: {}",
                reply.body
            ),
        }
    }
}

/// Every route of the registry's router, written out here to compare with
/// the generated document (axum cannot list a router's routes).
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/agents"),
    ("GET", "/v1/agents"),
    ("GET", "/v1/agents/{id}"),
    ("PUT", "/v1/agents/{id}"),
    ("DELETE", "/v1/agents/{id}"),
    ("GET", "/v1/agents/{id}/versions"),
    ("GET", "/v1/agents/{id}/trust"),
    ("PUT", "/v1/agents/{id}/trust"),
    ("GET", "/v1/openapi.json"),
];

#[tokio::test]
async fn openapi_document_lists_exactly_the_routed_paths_and_methods() {
    let h = harness().await;
    let mut documented = BTreeSet::new();
    for (path, item) in h.doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if method != "parameters" {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    // Probe the router itself: a documented method is routed, any other
    // method on a documented path is 405.
    for (_, path) in &routed {
        let uri = path.replace("{id}", "weather");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let reply = h.send(method.clone(), &uri, &[], None).await;
            let is_documented = routed.contains(&(method.to_string(), path.clone()));
            assert_eq!(
                reply.status == StatusCode::METHOD_NOT_ALLOWED,
                !is_documented,
                "{method} {uri} answered {}",
                reply.status
            );
        }
    }
}

#[tokio::test]
async fn conditional_get_answers_304_until_the_agent_changes() {
    let h = harness().await;
    let created = h
        .write(Method::POST, "/v1/agents", &[], &weather_card())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let tag = etag(&created);

    let cached = h
        .send(
            Method::GET,
            WEATHER,
            &[("if-none-match", tag.as_str())],
            None,
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.body, Value::Null);
    assert_eq!(etag(&cached), tag);
    assert!(h.doc["paths"]["/v1/agents/{id}"]["get"]["responses"]["304"].is_object());

    let stale = h
        .send(
            Method::GET,
            WEATHER,
            &[("if-none-match", "\"other-v9\"")],
            None,
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    // A trust change is a new version, so the old tag no longer matches.
    let changed = h
        .write(
            Method::PUT,
            &format!("{WEATHER}/trust"),
            &[],
            &json!({"level": "trusted", "reason": "reviewed"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let after = h
        .send(
            Method::GET,
            WEATHER,
            &[("if-none-match", tag.as_str())],
            None,
        )
        .await;
    assert_eq!(after.status, StatusCode::OK);
    assert_ne!(etag(&after), tag);
}

/// Issue 14: a misspelled `protocolBinding` (`JSON-RPC`) was stored, and
/// every later call failed with an opaque -32006.
#[tokio::test]
async fn registration_refuses_bindings_the_gateway_cannot_speak() {
    let h = harness().await;
    let mut misspelled = weather_card();
    misspelled["supportedInterfaces"][0]["protocolBinding"] = json!("JSON-RPC");
    let reply = h
        .write(
            Method::POST,
            "/v1/agents",
            &[],
            &json!({"card": misspelled.clone()}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    h.check("/v1/agents", "post", &reply);
    let violation = &reply.body["violations"][0];
    assert_eq!(
        violation["pointer"],
        "/card/supportedInterfaces/0/protocolBinding"
    );
    let message = violation["message"].as_str().unwrap_or_default();
    for named in ["\"JSON-RPC\"", "JSONRPC", "HTTP+JSON", "GRPC"] {
        assert!(message.contains(named), "{named} missing from {message}");
    }

    // An explicit upstream is checked the same way, under its own pointer.
    let explicit = json!({"card": weather_card(), "upstreams": [
        {"url": "https://weather.agents.example/a2a", "protocol_binding": "jsonrpc", "protocol_version": "1.0"}
    ]});
    let reply = h.write(Method::POST, "/v1/agents", &[], &explicit).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(
        reply.body["violations"][0]["pointer"],
        "/upstreams/0/protocol_binding"
    );

    // gRPC 0.3 is legal A2A but not forwarded: kept beside a usable
    // interface, refused alone (gRPC 1.0 is forwarded, issue 24).
    let mut grpc_only = weather_card();
    grpc_only["supportedInterfaces"] = json!([
        {"url": "weather.agents.example:443", "protocolBinding": "GRPC", "protocolVersion": "0.3"}
    ]);
    let reply = h
        .write(Method::POST, "/v1/agents", &[], &json!({"card": grpc_only}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(
        reply.body["violations"][0]["pointer"],
        "/card/supportedInterfaces"
    );
    let mut with_grpc = weather_card();
    with_grpc["supportedInterfaces"]
        .as_array_mut()
        .expect("interfaces")
        .push(json!({"url": "weather.agents.example:443", "protocolBinding": "GRPC", "protocolVersion": "1.0"}));
    let created = h
        .write(Method::POST, "/v1/agents", &[], &json!({"card": with_grpc}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // An update is held to the same rule, and changes nothing when refused.
    let current = etag(&created);
    let reply = h
        .write(
            Method::PUT,
            WEATHER,
            &[("if-match", &current)],
            &json!({"card": misspelled}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(
        reply.body["violations"][0]["pointer"],
        "/card/supportedInterfaces/0/protocolBinding"
    );
    assert_eq!(h.get(WEATHER).await.body["version"], 1);
}
