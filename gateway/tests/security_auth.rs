//! Authentication end to end (issue 4): every credential the `Authenticate`
//! layer accepts yields its principal, every forgery the issue names gets a
//! 401 with `WWW-Authenticate` in the shape of the route, public paths stay
//! open, in-process principals are kept, caller credentials never travel
//! upstream, and the JWKS is refetched (once) for an unknown `kid`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use convergio_gateway::layers::{JwksSource, WWW_AUTHENTICATE_CHALLENGE};
use convergio_gateway::{AuthMethod, Principal};
use ring::hmac;
use serde_json::{json, Value};
use support::security::{
    b64, claims, now, spawn_secure_gateway, Issuer, SecureGateway, SecureOptions, ADMIN_TOKEN,
};
use support::{send_params, spawn_fake, FakeMode};
use tokio::net::TcpListener;
use tower::ServiceExt;

async fn secure() -> (SecureGateway, Issuer) {
    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    (gateway, issuer)
}

async fn whoami(gateway: &SecureGateway, header: (&str, &str)) -> (u16, Value) {
    let response = gateway
        .gateway
        .http
        .get(gateway.gateway.url("/whoami"))
        .header(header.0, header.1)
        .send()
        .await
        .expect("whoami");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_credential_yields_its_principal() {
    let (gateway, issuer) = secure().await;
    let bearer = format!("Bearer {}", issuer.token("alice", "acme.example"));
    let (status, principal) = whoami(&gateway, ("authorization", &bearer)).await;
    assert_eq!(status, 200, "{principal}");
    assert_eq!(principal["subject"], "alice");
    assert_eq!(principal["org"], "acme.example");
    assert_eq!(principal["method"], "jwt");

    let issued = gateway
        .api_keys
        .issue("ci-bot", Some("acme.example"), &["agents:call"], None)
        .expect("issue");
    for header in [
        ("authorization", format!("Bearer {}", issued.token)),
        ("x-api-key", issued.token.clone()),
    ] {
        let (status, principal) = whoami(&gateway, (header.0, &header.1)).await;
        assert_eq!(status, 200, "{}", header.0);
        assert_eq!(principal["subject"], "ci-bot");
        assert_eq!(principal["method"], "api_key");
    }

    let (status, principal) = whoami(
        &gateway,
        ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(principal["method"], "admin_token");
    assert_eq!(principal["scopes"], json!(["admin"]));
}

/// Every forged or stale token of the issue, by name.
fn forgeries(issuer: &Issuer) -> Vec<(&'static str, String)> {
    let mut expired = claims("alice", "acme.example");
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims("alice", "acme.example");
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_audience = claims("alice", "acme.example");
    wrong_audience["aud"] = json!("someone-else");
    let mut wrong_issuer = claims("alice", "acme.example");
    wrong_issuer["iss"] = json!("https://evil.example");

    let valid = issuer.token("alice", "acme.example");
    let mut parts: Vec<&str> = valid.split('.').collect();
    let tampered_claims = b64(claims("mallory", "acme.example").to_string().as_bytes());
    parts[1] = &tampered_claims;
    let tampered = parts.join(".");

    let none_header = b64(json!({"alg": "none", "kid": issuer.kid})
        .to_string()
        .as_bytes());
    let body = b64(claims("alice", "acme.example").to_string().as_bytes());
    let alg_none = format!("{none_header}.{body}.");

    // The classic confusion: HMAC keyed with the verifier's public key.
    let hs_header = b64(json!({"alg": "HS256", "kid": issuer.kid})
        .to_string()
        .as_bytes());
    let signed = format!("{hs_header}.{body}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, &issuer.public_key());
    let hmac_with_public_key = format!(
        "{signed}.{}",
        b64(hmac::sign(&key, signed.as_bytes()).as_ref())
    );

    let stranger = Issuer::new("key-unknown");
    vec![
        ("expired", issuer.sign(&expired)),
        ("not yet valid", issuer.sign(&not_yet)),
        ("wrong audience", issuer.sign(&wrong_audience)),
        ("wrong issuer", issuer.sign(&wrong_issuer)),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("hmac with the public key", hmac_with_public_key),
        ("unknown kid", stranger.token("alice", "acme.example")),
        (
            "right kid, foreign key",
            Issuer {
                key: stranger.key,
                kid: issuer.kid.clone(),
            }
            .token("alice", "acme.example"),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ]
}

#[tokio::test]
async fn forged_and_stale_tokens_get_401_with_a_challenge() {
    let (gateway, issuer) = secure().await;
    for (name, token) in forgeries(&issuer) {
        let response = gateway
            .gateway
            .http
            .get(gateway.gateway.url("/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("whoami");
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(
            response.headers()["www-authenticate"],
            WWW_AUTHENTICATE_CHALLENGE,
            "{name}"
        );
        let problem: Value = response.json().await.expect("problem json");
        assert_eq!(problem["status"], 401, "{name}");
        assert_eq!(
            problem["detail"], "authentication required",
            "{name}: the reason stays in the logs"
        );
    }
}

// Regression: issue #15, defect 5: tokens without `sub` all became one
// principal of their organisation, which read the others' tasks.
#[tokio::test]
async fn tokens_without_a_subject_get_401_unless_another_claim_names_the_caller() {
    let (gateway, issuer) = secure().await;
    let mut no_sub = claims("alice", "acme.example");
    no_sub.as_object_mut().expect("claims object").remove("sub");
    no_sub["client_id"] = json!("billing-service");
    let mut empty_sub = claims("", "acme.example");
    empty_sub["client_id"] = json!("billing-service");
    for (name, token) in [
        ("no sub", issuer.sign(&no_sub)),
        ("empty sub", issuer.sign(&empty_sub)),
    ] {
        let bearer = format!("Bearer {token}");
        let (status, body) = whoami(&gateway, ("authorization", &bearer)).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["detail"], "authentication required", "{name}");
    }

    // A deployment whose client-credential tokens name the caller in
    // `client_id` says so, and each client is then its own principal.
    let mut options = SecureOptions::new(&issuer);
    options.subject_claim = "client_id".to_owned();
    let by_client_id = spawn_secure_gateway(options).await;
    let bearer = format!("Bearer {}", issuer.sign(&no_sub));
    let (status, principal) = whoami(&by_client_id, ("authorization", &bearer)).await;
    assert_eq!(status, 200, "{principal}");
    assert_eq!(principal["subject"], "billing-service");
    assert_eq!(principal["org"], "acme.example");
}

#[tokio::test]
async fn revoked_and_unknown_api_keys_get_401() {
    let (gateway, _issuer) = secure().await;
    let issued = gateway
        .api_keys
        .issue("ci-bot", None, &[], None)
        .expect("issue");
    assert_eq!(whoami(&gateway, ("x-api-key", &issued.token)).await.0, 200);
    assert!(gateway.api_keys.revoke(&issued.record.id));
    for header in [
        ("x-api-key", issued.token.clone()),
        ("authorization", format!("Bearer {}", issued.token)),
        ("x-api-key", "cvg_0000_nope".to_owned()),
        ("authorization", "Basic YWxpY2U6c2VjcmV0".to_owned()),
    ] {
        assert_eq!(
            whoami(&gateway, (header.0, &header.1)).await.0,
            401,
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn missing_credentials_get_401_in_the_shape_of_the_route_and_public_paths_stay_open() {
    let (secure, _issuer) = secure().await;
    let fake = spawn_fake(FakeMode::V1).await;
    secure.gateway.register("echo", fake.card());
    let gateway = &secure.gateway;

    let rpc = gateway
        .http
        .post(gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": send_params("hi")}))
        .send()
        .await
        .expect("rpc");
    assert_eq!(rpc.status(), 401);
    assert!(rpc.headers().contains_key("www-authenticate"));
    let body: Value = rpc.json().await.expect("json");
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["error"]["code"].is_i64(), "{body}");

    let rest = gateway
        .http
        .get(gateway.url("/agents/echo/tasks"))
        .header("A2A-Version", "1.0")
        .send()
        .await
        .expect("rest");
    assert_eq!(rest.status(), 401);
    let body: Value = rest.json().await.expect("json");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{body}");

    for path in [
        "/healthz",
        "/.well-known/agent-card.json",
        "/agents/echo/.well-known/agent-card.json",
    ] {
        let response = gateway
            .http
            .get(gateway.url(path))
            .send()
            .await
            .expect(path);
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(fake.state.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn caller_credentials_never_travel_upstream() {
    let (secure, issuer) = secure().await;
    let fake = spawn_fake(FakeMode::V1).await;
    secure.gateway.register("echo", fake.card());
    let issued = secure
        .api_keys
        .issue("bot", None, &[], None)
        .expect("issue");
    let response = secure
        .gateway
        .http
        .post(secure.gateway.url("/agents/echo"))
        .header("A2A-Version", "1.0")
        .bearer_auth(issuer.token("alice", "acme.example"))
        .header("x-api-key", &issued.token)
        .header("cookie", "session=caller-cookie")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("hi")}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let headers = fake
        .state
        .last_headers
        .lock()
        .expect("lock")
        .clone()
        .expect("upstream saw the call");
    for name in ["authorization", "x-api-key", "cookie"] {
        assert!(headers.get(name).is_none(), "{name} was forwarded");
    }
}

#[tokio::test]
async fn in_process_principals_are_kept() {
    let issuer = Issuer::new("key-1");
    let options = SecureOptions::new(&issuer);
    let jwt = convergio_gateway::layers::JwtAuthConfig::new(
        convergio_auth::JwtConfig {
            issuer: support::security::ISSUER.to_owned(),
            audience: support::security::AUDIENCE.to_owned(),
            ..convergio_auth::JwtConfig::default()
        },
        options.jwks,
    );
    let authenticator = convergio_gateway::layers::Authenticator::new(
        convergio_gateway::layers::AuthenticateConfig {
            jwt: Some(jwt),
            ..Default::default()
        },
    )
    .await
    .expect("authenticator");
    let router = Router::new().route("/whoami", get(support::security::whoami));
    let app = convergio_gateway::layers::with_layers_auth(
        router,
        &options.limits,
        Arc::new(authenticator),
    );
    let principal = Principal {
        subject: "graph-caller".to_owned(),
        org: Some("acme.example".to_owned()),
        scopes: vec![],
        method: AuthMethod::Jwt,
    };
    let mut request = Request::get("/whoami")
        .body(Body::empty())
        .expect("request");
    request.extensions_mut().insert(principal.clone());
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let echoed: Principal = serde_json::from_slice(&bytes).expect("principal");
    assert_eq!(echoed, principal);

    let bare = Request::get("/whoami")
        .body(Body::empty())
        .expect("request");
    let response = app.oneshot(bare).await.expect("infallible");
    assert_eq!(response.status(), 401, "no principal, no credentials");
}

/// A JWKS endpoint whose key set can be swapped, counting fetches.
async fn spawn_jwks(initial: String) -> (String, Arc<Mutex<String>>, Arc<AtomicUsize>) {
    let document = Arc::new(Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (document.clone(), fetches.clone());
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let (served, counted) = (served.clone(), counted.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let text = served.lock().expect("lock").clone();
                ([("content-type", "application/json")], text)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}/jwks.json"), document, fetches)
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_for_an_unknown_kid() {
    let old = Issuer::new("old");
    let (url, document, fetches) = spawn_jwks(old.jwks()).await;
    let mut options = SecureOptions::new(&old);
    options.jwks = JwksSource::Url(url);
    options.min_refetch_interval = std::time::Duration::ZERO;
    let gateway = spawn_secure_gateway(options).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "loaded at startup");
    let bearer = format!("Bearer {}", old.token("alice", "acme.example"));
    assert_eq!(whoami(&gateway, ("authorization", &bearer)).await.0, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "known kid: cache hit");

    let new = Issuer::new("new");
    *document.lock().expect("lock") = new.jwks();
    let bearer = format!("Bearer {}", new.token("alice", "acme.example"));
    assert_eq!(whoami(&gateway, ("authorization", &bearer)).await.0, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one refetch");
    let bearer = format!("Bearer {}", old.token("alice", "acme.example"));
    assert_eq!(
        whoami(&gateway, ("authorization", &bearer)).await.0,
        401,
        "a key dropped from the set stops working"
    );
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let issuer = Issuer::new("known");
    let (url, _document, fetches) = spawn_jwks(issuer.jwks()).await;
    let mut options = SecureOptions::new(&issuer);
    options.jwks = JwksSource::Url(url);
    options.min_refetch_interval = std::time::Duration::from_secs(3600);
    let gateway = spawn_secure_gateway(options).await;
    for attempt in 0..20 {
        let stranger = Issuer::new(&format!("made-up-{attempt}"));
        let bearer = format!("Bearer {}", stranger.token("eve", "evil.example"));
        assert_eq!(whoami(&gateway, ("authorization", &bearer)).await.0, 401);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "made-up kids cost the issuer nothing within the interval"
    );
}

#[tokio::test]
async fn upstream_credentials_come_from_the_agents_config_only() {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.a2a.upstream_credentials.insert(
        "guarded".to_owned(),
        convergio_gateway::a2a::UpstreamCredential {
            bearer_token: Some("upstream-secret".to_owned()),
            ..Default::default()
        },
    );
    options.a2a.upstream_credentials.insert(
        "relayed".to_owned(),
        convergio_gateway::a2a::UpstreamCredential {
            forward_caller_authorization: true,
            ..Default::default()
        },
    );
    let secure = spawn_secure_gateway(options).await;
    let guarded = spawn_fake(FakeMode::V1).await;
    let open = spawn_fake(FakeMode::V1).await;
    let relayed = spawn_fake(FakeMode::V1).await;
    secure.gateway.register("guarded", guarded.card());
    secure.gateway.register("open", open.card());
    secure.gateway.register("relayed", relayed.card());
    let token = issuer.token("alice", "acme.example");
    for agent in ["guarded", "open", "relayed"] {
        let response = secure
            .gateway
            .http
            .post(secure.gateway.url(&format!("/agents/{agent}")))
            .header("A2A-Version", "1.0")
            .bearer_auth(&token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("hi")}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{agent}");
    }
    let seen = |fake: &support::FakeAgent| {
        fake.state
            .last_headers
            .lock()
            .expect("lock")
            .clone()
            .expect("upstream saw the call")
            .get("authorization")
            .map(|value| value.to_str().expect("ascii").to_owned())
    };
    assert_eq!(seen(&guarded).as_deref(), Some("Bearer upstream-secret"));
    assert_eq!(seen(&open), None, "no configured credential, none sent");
    assert_eq!(
        seen(&relayed),
        Some(format!("Bearer {token}")),
        "the agent's config forwards the caller's own"
    );
}
