//! The policy REST API over a SQLite store, driven in-process with
//! `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::{Extension, Router};
use convergio_policy::engine::EXAMPLE_POLICIES;
use convergio_policy::{router, PolicyAdmin, PolicyApi, PolicyEngine};
use convergio_schemas::{AuthMethod, Principal};
use convergio_store::policy::PolicyStore;
use convergio_store::{Db, DbConfig};
use convergio_tests::db::TestPlace;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    admin: PolicyAdmin,
    _place: TestPlace,
}

async fn app() -> App {
    let place = TestPlace::sqlite();
    let db = Db::open(place.url(), &DbConfig::default())
        .await
        .expect("database opens");
    let engine = Arc::new(PolicyEngine::with_defaults().expect("defaults"));
    App {
        admin: PolicyAdmin::new(engine, Arc::new(PolicyStore::new(db))),
        _place: place,
    }
}

fn root() -> Principal {
    Principal {
        subject: "root".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: vec!["admin".to_owned()],
        method: AuthMethod::AdminToken,
    }
}

fn alice() -> Principal {
    Principal {
        subject: "alice".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: Vec::new(),
        method: AuthMethod::Jwt,
    }
}

async fn call(
    app: &App,
    principal: Option<Principal>,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut service: Router = router(PolicyApi {
        admin: app.admin.clone(),
    });
    if let Some(principal) = principal {
        service = service.layer(Extension(principal));
    }
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(match body {
            Some(body) => Body::from(body.to_string()),
            None => Body::empty(),
        })
        .expect("request builds");
    let response = service.oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, value)
}

#[tokio::test]
async fn put_creates_a_version_and_get_lists_it() {
    let app = app().await;
    let (status, _, body) = call(
        &app,
        Some(root()),
        Method::PUT,
        "/v1/policies",
        Some(json!({"policies": EXAMPLE_POLICIES, "reason": "initial"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1);
    let (status, _, list) = call(&app, Some(root()), Method::GET, "/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["active"], 1);
    assert_eq!(list["versions"][0]["reason"], "initial");
    let (status, _, one) = call(&app, Some(root()), Method::GET, "/v1/policies/1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["text"], EXAMPLE_POLICIES);
}

#[tokio::test]
async fn invalid_cedar_is_a_problem_with_line_and_column() {
    let app = app().await;
    let (status, content_type, body) = call(
        &app,
        Some(root()),
        Method::PUT,
        "/v1/policies",
        Some(json!({"policies": "// x\npermit (principal is Robot, action, resource);", "reason": "bad"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    let message = body["violations"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.starts_with("line 2, column "), "{body}");
    assert!(message.contains("Robot"), "{body}");
    assert_eq!(app.admin.engine().active_version(), None);
}

#[tokio::test]
async fn non_administrators_may_not_write() {
    let app = app().await;
    for principal in [Some(alice()), None] {
        let (status, content_type, _) = call(
            &app,
            principal,
            Method::PUT,
            "/v1/policies",
            Some(json!({"policies": EXAMPLE_POLICIES})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(content_type, "application/problem+json");
    }
}

#[tokio::test]
async fn lock_out_attempt_is_refused() {
    let app = app().await;
    let (status, _, body) = call(
        &app,
        Some(root()),
        Method::PUT,
        "/v1/policies",
        Some(json!({"policies": "@id(\"d\") permit (principal, action == Action::\"discover\", resource);"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains("lock"));
}

#[tokio::test]
async fn rollback_to_a_missing_version_is_not_found() {
    let app = app().await;
    let (status, _, body) = call(
        &app,
        Some(root()),
        Method::POST,
        "/v1/policies:rollback",
        Some(json!({"version": 7})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn delete_leaves_administrators_only() {
    let app = app().await;
    let (status, _, body) = call(&app, Some(root()), Method::DELETE, "/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&app, Some(root()), Method::GET, "/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn check_answers_with_the_determining_policies() {
    let app = app().await;
    let (status, _, body) = call(
        &app,
        Some(root()),
        Method::POST,
        "/v1/policies:check",
        Some(json!({
            "principal": {"subject": "alice", "org": "acme.example", "scopes": [], "method": "jwt"},
            "action": "send_message",
            "resource": {"type": "agent", "id": "convergio://agents/echo", "org": "acme.example", "trust": "registered"},
            "context": {"a2a_method": "SendMessage"}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["determining"], json!(["internal-same-org"]));
}

#[tokio::test]
async fn check_with_missing_fields_names_them() {
    let app = app().await;
    let (status, _, body) = call(
        &app,
        Some(root()),
        Method::POST,
        "/v1/policies:check",
        Some(json!({"action": "discover"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let pointers: Vec<&str> = body["violations"]
        .as_array()
        .map(|violations| {
            violations
                .iter()
                .filter_map(|v| v["pointer"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pointers, vec!["/principal", "/resource"], "{body}");
}

#[tokio::test]
async fn audit_lists_decisions_and_verifies() {
    let app = app().await;
    call(&app, Some(alice()), Method::GET, "/v1/policies", None).await;
    call(&app, Some(root()), Method::GET, "/v1/policies", None).await;
    let (status, _, page) = call(
        &app,
        Some(root()),
        Method::GET,
        "/v1/audit?decision=deny&limit=10",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let records = page["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 1, "{page}");
    assert_eq!(records[0]["subject"], "alice");
    assert_eq!(records[0]["action"], "administer_policy");
    let (status, _, verified) =
        call(&app, Some(root()), Method::GET, "/v1/audit:verify", None).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert!(verified["records"].as_i64().unwrap_or_default() >= 3);
    let (status, _, _) = call(&app, Some(root()), Method::GET, "/v1/audit?limit=x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
