//! Federation end to end (issue 6): two real `convergio serve` processes on
//! loopback acting as two organisations, `a.example` and `b.example`, each
//! with its own database and signing key. A calls B's agents through
//! `external://b.example/agents/…` (blocking, streaming, the envelope); B's
//! policy decides what A may call; B refuses forged, expired, replayed and
//! misaddressed signed calls, crafted here with the auth crate's signer;
//! with B down, A answers quickly and opens the circuit. Part 3: A's
//! federated discovery merges B's allowed agents with provenance (B down or
//! slow: `partial`), revalidates B's answer with its ETag, and sync pulls
//! B's catalogue into A as external agents (CLI, API and periodic).

mod support;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use convergio_agents::{ExampleAgent, RunningAgent, ServeOptions};
use convergio_auth::peer_call::{sign_call, PeerCallClaims, SIGNATURE_HEADER};
use convergio_auth::OrgSigningKey;
use serde_json::{json, Value};
use support::{admin_token, cli, start_with, Server};

/// Two federated organisations and B's opted-in agent.
struct Federated {
    a: Server,
    b: Server,
    a_dir: tempfile::TempDir,
    _b_dir: tempfile::TempDir,
    a_token: String,
    b_token: String,
    http: reqwest::Client,
    _partner: RunningAgent,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn send_message(text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
        "messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
        "parts": [{"text": text}]}}})
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let response = http
        .post(url)
        .bearer_auth(bearer)
        .header("A2A-Version", "1.0")
        .json(body)
        .send()
        .await
        .expect("request answered");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Starts both organisations. B registers `partner-echo` (tagged `external`,
/// trusted) and knows A by its JWKS URL; A pins B's key. B's copy of A's key
/// is pending until `approve` says otherwise.
async fn federate(approve: bool) -> Federated {
    federate_with(approve, &[], None).await
}

/// [`federate`] with extra environment for A and the trust A gives B
/// (default: the peer default, `verified`).
async fn federate_with(
    approve: bool,
    a_environment: &[(&str, &str)],
    b_trust: Option<&str>,
) -> Federated {
    let a_dir = tempfile::tempdir().expect("temp dir");
    let b_dir = tempfile::tempdir().expect("temp dir");
    let mut a_env = vec![
        ("CONVERGIO_ORG_DOMAIN", "a.example"),
        ("CONVERGIO_EXAMPLES", "false"),
    ];
    a_env.extend_from_slice(a_environment);
    let a = start_with(a_dir.path(), &a_env);
    let b = start_with(b_dir.path(), &[("CONVERGIO_ORG_DOMAIN", "b.example")]);
    let (a_token, b_token) = (admin_token(a_dir.path()), admin_token(b_dir.path()));
    let http = reqwest::Client::new();

    // B's opted-in agent: an echo agent registered with the `external` tag.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let partner = convergio_agents::spawn(ExampleAgent::Echo, listener, ServeOptions::default())
        .await
        .expect("echo agent");
    let mut card = partner.card();
    card["name"] = json!("partner-echo");
    for skill in card["skills"].as_array_mut().expect("skills") {
        skill["tags"] = json!(["external"]);
    }
    let (status, registered) = post(
        &http,
        &format!("{}/v1/agents", b.base),
        &b_token,
        &json!({"name": "partner-echo", "card": card}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let id = registered["id"].as_str().expect("agent id").to_owned();
    let trust = http
        .put(format!(
            "{}/v1/agents/{}/trust",
            b.base,
            percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
        ))
        .bearer_auth(&b_token)
        .json(&json!({"level": "trusted", "reason": "federation test partner"}))
        .send()
        .await
        .expect("trust set");
    assert!(trust.status().is_success(), "{}", trust.status());

    // B learns A from A's published JWKS: the fetched key is pending.
    let (status, peer) = post(
        &http,
        &format!("{}/v1/peers", b.base),
        &b_token,
        &json!({"domain": "a.example", "url": a.base,
                "jwks_url": format!("{}/.well-known/jwks.json", a.base)}),
    )
    .await;
    assert_eq!(status, 201, "{peer}");
    assert_eq!(peer["keys"][0]["state"], "pending", "{peer}");
    if approve {
        let (status, peer) = post(
            &http,
            &format!("{}/v1/peers/a.example/approve", b.base),
            &b_token,
            &json!({}),
        )
        .await;
        assert_eq!(status, 200, "{peer}");
        assert_eq!(peer["keys"][0]["state"], "approved");
    }

    // A pins B's key, read from B's JWKS by its administrator.
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", b.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let (status, peer) = post(
        &http,
        &format!("{}/v1/peers", a.base),
        &a_token,
        &json!({"domain": "b.example", "url": b.base, "keys": jwks["keys"], "trust": b_trust}),
    )
    .await;
    assert_eq!(status, 201, "{peer}");
    assert_eq!(peer["keys"][0]["state"], "approved");

    Federated {
        a,
        b,
        a_dir,
        _b_dir: b_dir,
        a_token,
        b_token,
        http,
        _partner: partner,
    }
}

#[tokio::test]
async fn a_calls_b_blocking_streaming_and_by_envelope_as_b_policy_allows() {
    let fed = federate(false).await;
    let partner = format!("{}/external/b.example/agents/partner-echo", fed.a.base);

    // Pending keys verify nothing: B refuses A until an administrator approves.
    let (_, refused) = post(&fed.http, &partner, &fed.a_token, &send_message("early")).await;
    assert!(refused.get("result").is_none(), "{refused}");
    let (status, _) = post(
        &fed.http,
        &format!("{}/v1/peers/a.example/approve", fed.b.base),
        &fed.b_token,
        &json!({"kids": []}),
    )
    .await;
    assert_eq!(status, 400, "an empty kid list approves nothing");
    let (status, _) = post(
        &fed.http,
        &format!("{}/v1/peers/a.example/approve", fed.b.base),
        &fed.b_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);

    // Blocking.
    let (status, answer) = post(
        &fed.http,
        &partner,
        &fed.a_token,
        &send_message("hello federation"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(answer.to_string().contains("hello federation"), "{answer}");

    // Streaming: the relayed event stream ends with the echo.
    let mut stream = send_message("streamed across");
    stream["method"] = json!("SendStreamingMessage");
    let response = fed
        .http
        .post(&partner)
        .bearer_auth(&fed.a_token)
        .header("A2A-Version", "1.0")
        .json(&stream)
        .send()
        .await
        .expect("stream answered");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream")));
    let events = response.text().await.expect("stream body");
    assert!(events.contains("data:"), "{events}");
    assert!(events.contains("streamed across"), "{events}");

    // The envelope endpoint (and so graph nodes) reaches the peer too.
    let (status, envelope) = post(
        &fed.http,
        &format!("{}/v1/envelope", fed.a.base),
        &fed.a_token,
        &json!({"protocol": "a2a/1.0", "from": "convergio://agents/tester",
                "to": "external://b.example/agents/partner-echo",
                "action": "ping", "payload": {"text": "enveloped"}}),
    )
    .await;
    assert_eq!(status, 200, "{envelope}");
    assert_eq!(envelope["from"], "external://b.example/agents/partner-echo");
    assert!(
        envelope["payload"].to_string().contains("enveloped"),
        "{envelope}"
    );

    // B's policy: its own `echo` did not opt in, so A cannot even see it.
    let echo = format!("{}/external/b.example/agents/echo", fed.a.base);
    let (_, denied) = post(&fed.http, &echo, &fed.a_token, &send_message("no")).await;
    assert!(denied.get("result").is_none(), "{denied}");
    // B's JSON-RPC error is relayed as B gave it: the unknown-agent answer.
    assert_eq!(
        denied["error"]["data"][0]["reason"], "AGENT_NOT_FOUND",
        "{denied}"
    );

    // An organisation A has no peer record for is an unknown agent.
    let unknown = format!("{}/external/c.example/agents/x", fed.a.base);
    let (status, _) = post(&fed.http, &unknown, &fed.a_token, &send_message("x")).await;
    assert_eq!(status, 404);
}

/// Sends a crafted signed call to B's `partner-echo`.
fn crafted(key: &OrgSigningKey, edit: impl FnOnce(&mut PeerCallClaims)) -> (String, Vec<u8>) {
    let body = serde_json::to_vec(&send_message("crafted")).expect("json");
    let mut claims = PeerCallClaims::new(
        "a.example",
        "b.example",
        "mallory",
        "POST",
        "/agents/partner-echo",
        &body,
        now(),
    );
    edit(&mut claims);
    (sign_call(key, &claims), body)
}

async fn deliver(fed: &Federated, token: &str, body: Vec<u8>) -> (reqwest::StatusCode, Value) {
    let response = fed
        .http
        .post(format!("{}/agents/partner-echo", fed.b.base))
        .header(SIGNATURE_HEADER, token)
        .header("content-type", "application/json")
        .header("A2A-Version", "1.0")
        .body(body)
        .send()
        .await
        .expect("answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn b_rejects_forged_expired_replayed_and_misaddressed_signed_calls() {
    let fed = federate(true).await;
    let pem = std::fs::read_to_string(fed.a_dir.path().join("federation-key.pem"))
        .expect("a's generated key");
    let a_key = OrgSigningKey::from_pem(&pem).expect("a's key parses");

    // A well-formed call signed with A's key is accepted once ...
    let (token, body) = crafted(&a_key, |_| {});
    let (status, answer) = deliver(&fed, &token, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("result").is_some(), "{answer}");
    // ... and refused when replayed.
    let (status, replayed) = deliver(&fed, &token, body).await;
    assert_eq!(status, 401, "{replayed}");

    let stranger = OrgSigningKey::generate().expect("key");
    let forged = {
        // Signed by another key, claiming A's kid.
        let (token, body) = crafted(&stranger, |_| {});
        let (_, rest) = token.split_once('.').expect("jws");
        let header = json!({"alg": "EdDSA", "kid": a_key.kid(), "typ": "convergio-call+jws"});
        use base64::Engine as _;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
        (format!("{header}.{rest}"), body)
    };
    let cases = [
        ("forged signature", forged),
        ("unknown key", crafted(&stranger, |_| {})),
        (
            "expired",
            crafted(&a_key, |claims| claims.iat = now() - 3600),
        ),
        (
            "wrong audience",
            crafted(&a_key, |claims| claims.aud = "c.example".into()),
        ),
        (
            "another path",
            crafted(&a_key, |claims| claims.htp = "/agents/echo".into()),
        ),
        (
            "unknown issuer",
            crafted(&a_key, |claims| claims.iss = "c.example".into()),
        ),
    ];
    for (case, (token, body)) in cases {
        let (status, refused) = deliver(&fed, &token, body).await;
        assert_eq!(status, 401, "{case}: {refused}");
        assert!(refused.get("result").is_none(), "{case}");
        // The body never says which check failed.
        let text = refused.to_string();
        for leak in ["audience", "expired", "signature", "replay", "nonce", "key"] {
            assert!(
                !text.contains(leak),
                "{case}: 401 body names {leak}: {text}"
            );
        }
    }
    // A tampered body (digest mismatch) is refused too.
    let (token, _) = crafted(&a_key, |_| {});
    let tampered = serde_json::to_vec(&send_message("tampered")).expect("json");
    let (status, _) = deliver(&fed, &token, tampered).await;
    assert_eq!(status, 401);
    // B never relays A's call to a third organisation under B's signature:
    // for a peer, every external agent is unknown (B knows c.example, whose
    // gateway is down, so an attempted relay would answer differently).
    let (status, added) = post(
        &fed.http,
        &format!("{}/v1/peers", fed.b.base),
        &fed.b_token,
        &json!({"domain": "c.example", "url": "http://127.0.0.1:9",
                "keys": [stranger.public_jwk()]}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let relay = serde_json::to_vec(&send_message("relay me")).expect("json");
    let claims = PeerCallClaims::new(
        "a.example",
        "b.example",
        "mallory",
        "POST",
        "/external/c.example/agents/x",
        &relay,
        now(),
    );
    let response = fed
        .http
        .post(format!("{}/external/c.example/agents/x", fed.b.base))
        .header(SIGNATURE_HEADER, sign_call(&a_key, &claims))
        .header("content-type", "application/json")
        .header("A2A-Version", "1.0")
        .body(relay)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    let refused: Value = response.json().await.expect("json");
    assert_eq!(
        refused["error"]["data"][0]["reason"], "AGENT_NOT_FOUND",
        "{refused}"
    );
    // A peer never administers B, even with a valid signature.
    let body = b"{}".to_vec();
    let claims = PeerCallClaims::new(
        "a.example",
        "b.example",
        "mallory",
        "GET",
        "/v1/peers",
        &body,
        now(),
    );
    let response = fed
        .http
        .get(format!("{}/v1/peers", fed.b.base))
        .header(SIGNATURE_HEADER, sign_call(&a_key, &claims))
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_answers_quickly_and_opens_the_circuit_when_b_is_down() {
    let fed = federate(true).await;
    let partner = format!("{}/external/b.example/agents/partner-echo", fed.a.base);
    let (status, _) = post(&fed.http, &partner, &fed.a_token, &send_message("up")).await;
    assert_eq!(status, 200, "b is up first");
    let Federated {
        a,
        b,
        a_token,
        http,
        a_dir,
        ..
    } = fed;
    drop(b);
    // Each call fails at connect (nothing listens), five in a row open the
    // circuit, and the next is refused without trying: 503.
    let mut statuses = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..7 {
        let (status, answer) = post(&http, &partner, &a_token, &send_message("down")).await;
        assert!(answer.get("result").is_none(), "{answer}");
        statuses.push(status.as_u16());
        answers.push(answer);
    }
    // The first five reach for B and fail with the A2A "invalid agent
    // response" error; then the circuit is open and A refuses at once with
    // 503 UPSTREAM_UNAVAILABLE.
    for answer in &answers[..5] {
        assert_eq!(answer["error"]["code"], -32006, "{answer}");
    }
    assert_eq!(statuses[5..], [503, 503], "{statuses:?}");
    assert_eq!(
        answers[6]["error"]["data"][0]["reason"], "UPSTREAM_UNAVAILABLE",
        "{}",
        answers[6]
    );
    drop((a, a_dir));
}

/// Runs `convergio peers …` against `server` with the admin token of `data_dir`.
fn peers_cli(server: &Server, data_dir: &Path, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = std::iter::once("peers")
        .chain(args.iter().copied())
        .collect();
    let (ok, stdout, stderr) = cli(Some((server, data_dir)), &args);
    (ok, format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn a_peer_url_on_a_private_address_is_refused_without_the_allow_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No allow-list at all (the harness allow-lists loopback by default).
    let server = start_with(
        dir.path(),
        &[
            ("CONVERGIO_ORG_DOMAIN", "b.example"),
            ("CONVERGIO_EXAMPLES", "false"),
            ("CONVERGIO_NETWORK_ALLOW_CIDRS", ""),
        ],
    );
    let key_file = dir.path().join("x-key.json");
    let pinned = OrgSigningKey::generate().expect("key");
    std::fs::write(&key_file, pinned.jwks().to_string()).expect("key file");
    let key_path = key_file.to_str().expect("utf-8 path");
    for url in [
        "http://127.0.0.1:9",
        "http://10.1.2.3:8080",
        "http://169.254.169.254",
        "http://[::1]:8080",
        "http://localhost:8080",
    ] {
        let (ok, out) = peers_cli(
            &server,
            dir.path(),
            &["add", "x.example", "--url", url, "--key-file", key_path],
        );
        assert!(!ok, "{url} is refused: {out}");
        assert!(
            out.contains("400") || out.to_lowercase().contains("not"),
            "{url}: {out}"
        );
    }
    // A JWKS URL is guarded the same way.
    let (ok, out) = peers_cli(
        &server,
        dir.path(),
        &[
            "add",
            "x.example",
            "--url",
            "https://x.example",
            "--jwks-url",
            "http://192.168.1.1/jwks.json",
        ],
    );
    assert!(!ok, "a private jwks url is refused: {out}");
    let (ok, out) = peers_cli(&server, dir.path(), &["list"]);
    assert!(
        ok && !out.contains("x.example"),
        "nothing was stored: {out}"
    );
}

#[tokio::test]
async fn peers_are_added_approved_and_removed_from_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_with(
        dir.path(),
        &[
            ("CONVERGIO_ORG_DOMAIN", "b.example"),
            ("CONVERGIO_EXAMPLES", "false"),
        ],
    );
    let key_file = dir.path().join("x-key.json");
    let pinned = OrgSigningKey::generate().expect("key");
    std::fs::write(&key_file, pinned.jwks().to_string()).expect("key file");
    let key_path = key_file.to_str().expect("utf-8 path");

    let (ok, out) = peers_cli(
        &server,
        dir.path(),
        &[
            "add",
            "x.example",
            "--url",
            "http://127.0.0.1:9",
            "--key-file",
            key_path,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(pinned.kid()) && out.contains("approved"),
        "{out}"
    );
    // Keys from a JWKS URL (here this server's own) wait for approval.
    let jwks_url = format!("{}/.well-known/jwks.json", server.base);
    let (ok, out) = peers_cli(
        &server,
        dir.path(),
        &[
            "add",
            "y.example",
            "--url",
            "http://127.0.0.1:9",
            "--jwks-url",
            &jwks_url,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("pending"), "{out}");
    let (ok, out) = peers_cli(&server, dir.path(), &["list"]);
    assert!(
        ok && out.contains("x.example") && out.contains("y.example"),
        "{out}"
    );
    let (ok, out) = peers_cli(&server, dir.path(), &["approve", "y.example"]);
    assert!(
        ok && out.contains("approved") && !out.contains("pending"),
        "{out}"
    );
    let (ok, out) = peers_cli(&server, dir.path(), &["show", "y.example"]);
    assert!(ok && out.contains("approved"), "{out}");
    // Mistakes are refused with the server's reason.
    let (ok, out) = peers_cli(
        &server,
        dir.path(),
        &[
            "add",
            "x.example",
            "--url",
            "http://127.0.0.1:9",
            "--key-file",
            key_path,
        ],
    );
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = peers_cli(
        &server,
        dir.path(),
        &[
            "add",
            "z.example",
            "--url",
            "ftp://z",
            "--key-file",
            key_path,
        ],
    );
    assert!(!ok && out.contains("http"), "{out}");
    let (ok, out) = peers_cli(&server, dir.path(), &["remove", "x.example"]);
    assert!(ok, "{out}");
    let (ok, out) = peers_cli(&server, dir.path(), &["remove", "x.example"]);
    assert!(!ok, "{out}");
    let (_, out) = peers_cli(&server, dir.path(), &["list"]);
    assert!(
        !out.contains("x.example") && out.contains("y.example"),
        "{out}"
    );
}

// --- federated discovery and sync (issue 6, part 3) ---

fn encoded(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn get(http: &reqwest::Client, url: &str, bearer: &str) -> (reqwest::StatusCode, Value) {
    let response = http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request answered");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Registers an agent named `name` at `server` (its card from the echo
/// agent's, pointing nowhere in particular).
async fn register_local(fed: &Federated, base: &str, token: &str, name: &str) {
    let mut card = fed._partner.card();
    card["name"] = json!(name);
    let (status, registered) = post(
        &fed.http,
        &format!("{base}/v1/agents"),
        token,
        &json!({"name": name, "card": card}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
}

fn ids(listing: &Value) -> Vec<String> {
    listing["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|agent| agent["id"].as_str().expect("id").to_owned())
        .collect()
}

fn agent<'a>(listing: &'a Value, id: &str) -> &'a Value {
    listing["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {listing}"))
}

#[tokio::test]
async fn federated_discovery_merges_b_allowed_agents_with_provenance_and_revalidates() {
    let fed = federate(true).await;
    register_local(&fed, &fed.a.base, &fed.a_token, "a-local").await;
    let url = format!("{}/v1/agents?federated=true", fed.a.base);
    let (status, listing) = get(&fed.http, &url, &fed.a_token).await;
    assert_eq!(status, 200, "{listing}");
    let found = ids(&listing);
    // A's own agent, marked local.
    let local = agent(&listing, "convergio://agents/a-local");
    assert_eq!(local["provenance"]["source"], "local", "{listing}");
    // B's opted-in agent, as A can call it, trust capped at what A gives B.
    let partner = agent(&listing, "external://b.example/agents/partner-echo");
    assert_eq!(partner["org"], "b.example");
    assert_eq!(partner["provenance"]["org"], "b.example");
    assert_eq!(partner["provenance"]["source"], "peer");
    assert_eq!(partner["provenance"]["trust_at_peer"], "trusted");
    assert_eq!(partner["provenance"]["peer_trust"], "verified");
    assert_eq!(partner["trust"], "verified", "capped: {partner}");
    assert!(
        partner.get("upstreams").is_none(),
        "b's internals: {partner}"
    );
    // B's own example agents did not opt in: B does not let A discover them.
    assert!(
        !found
            .iter()
            .any(|id| id.starts_with("external://b.example/agents/echo")),
        "{found:?}"
    );
    assert_eq!(listing["partial"], json!([]), "{listing}");
    assert_eq!(listing["peers"][0]["peer"], "b.example");
    assert_eq!(listing["peers"][0]["cache"], "fresh", "{listing}");

    // The same query again: A revalidates its cached answer with B's ETag
    // and B answers 304.
    let (status, again) = get(&fed.http, &url, &fed.a_token).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["peers"][0]["cache"], "revalidated", "{again}");
    assert_eq!(ids(&again), found);
    // Filters reach the peer: a tag nobody has finds nothing anywhere.
    let (status, none) = get(
        &fed.http,
        &format!("{}/v1/agents?federated=true&tag=nothing-here", fed.a.base),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["agents"], json!([]), "{none}");
    assert_eq!(none["peers"][0]["cache"], "fresh");

    // B's listing carries an ETag and honours If-None-Match.
    let response = fed
        .http
        .get(format!("{}/v1/agents", fed.b.base))
        .bearer_auth(&fed.b_token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let etag = response
        .headers()
        .get("etag")
        .expect("listing etag")
        .to_str()
        .expect("ascii")
        .to_owned();
    let response = fed
        .http
        .get(format!("{}/v1/agents", fed.b.base))
        .bearer_auth(&fed.b_token)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 304);

    // Without credentials there is no federated discovery; a bad value is
    // the registry's 400.
    let response = fed.http.get(&url).send().await.expect("answered");
    assert_eq!(response.status(), 401);
    let (status, _) = get(
        &fed.http,
        &format!("{}/v1/agents?federated=maybe", fed.a.base),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 400);

    // Synced with the default peer trust (`verified`), the registry refuses
    // `verified` for a card without a verifiable signature: the agent is
    // synced at `registered` and the refusal is reported.
    let (ok, out) = peers_cli(&fed.a, fed.a_dir.path(), &["sync", "b.example"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("problem partner-echo: trust verified"),
        "{out}"
    );
    let (status, synced) = get(
        &fed.http,
        &format!(
            "{}/v1/agents/{}",
            fed.a.base,
            encoded("external://b.example/agents/partner-echo")
        ),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["trust"], "registered", "{synced}");
}

/// Registers at B an agent named `name` whose skills carry `tags`,
/// trusted there.
async fn register_at_b(fed: &Federated, name: &str, tags: &[&str]) {
    let mut card = fed._partner.card();
    card["name"] = json!(name);
    for skill in card["skills"].as_array_mut().expect("skills") {
        skill["tags"] = json!(tags);
    }
    let (status, registered) = post(
        &fed.http,
        &format!("{}/v1/agents", fed.b.base),
        &fed.b_token,
        &json!({"name": name, "card": card}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let id = registered["id"].as_str().expect("agent id");
    let trust = fed
        .http
        .put(format!("{}/v1/agents/{}/trust", fed.b.base, encoded(id)))
        .bearer_auth(&fed.b_token)
        .json(&json!({"level": "trusted", "reason": "federated discovery test"}))
        .send()
        .await
        .expect("trust set");
    assert!(trust.status().is_success(), "{}", trust.status());
}

/// Issue 18: federated discovery pages through each peer (B answers one
/// agent per page here), and the caller's own policy filters what the
/// peer let through.
#[tokio::test]
async fn federated_discovery_pages_through_a_peer_and_hides_what_the_caller_may_not_discover() {
    let fed = federate(true).await;
    register_at_b(&fed, "partner-two", &["external"]).await;
    register_at_b(&fed, "partner-secret", &["external", "restricted"]).await;
    let url = format!("{}/v1/agents?federated=true&page_size=1", fed.a.base);
    let peer_ids = |listing: &Value| -> Vec<String> {
        let mut found: Vec<String> = ids(listing)
            .into_iter()
            .filter(|id| id.starts_with("external://b.example/"))
            .collect();
        found.sort();
        found
    };
    let (status, listing) = get(&fed.http, &url, &fed.a_token).await;
    assert_eq!(status, 200, "{listing}");
    // B's three opted-in agents, one page each: its second and third pages
    // were read.
    assert_eq!(
        peer_ids(&listing),
        [
            "external://b.example/agents/partner-echo",
            "external://b.example/agents/partner-secret",
            "external://b.example/agents/partner-two",
        ],
        "{listing}"
    );
    assert_eq!(listing["peers"][0]["agents"], 3, "{listing}");
    // Again: every page revalidated with its own ETag.
    let (_, again) = get(&fed.http, &url, &fed.a_token).await;
    assert_eq!(again["peers"][0]["cache"], "revalidated", "{again}");
    assert_eq!(peer_ids(&again), peer_ids(&listing));

    // A's policy now forbids discovering agents tagged `restricted`: B
    // still lets A see it, but A's caller is not shown it.
    let example = include_str!("../../policies/example.cedar");
    let policies = format!(
        "{example}\n@id(\"hide-restricted\")\nforbid (principal, action == Action::\"discover\", resource is Agent)\nwhen {{ resource.tags.contains(\"restricted\") }};\n"
    );
    let response = fed
        .http
        .put(format!("{}/v1/policies", fed.a.base))
        .bearer_auth(&fed.a_token)
        .json(&json!({"policies": policies, "reason": "hide restricted agents"}))
        .send()
        .await
        .expect("answers");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let (status, filtered) = get(&fed.http, &url, &fed.a_token).await;
    assert_eq!(status, 200, "{filtered}");
    assert_eq!(
        peer_ids(&filtered),
        [
            "external://b.example/agents/partner-echo",
            "external://b.example/agents/partner-two",
        ],
        "{filtered}"
    );
    assert_eq!(filtered["peers"][0]["agents"], 2, "{filtered}");
}

#[tokio::test]
async fn federated_discovery_lists_down_and_slow_peers_as_partial() {
    let fed = federate_with(
        true,
        &[("CONVERGIO_FEDERATION_DISCOVERY_TIMEOUT_MS", "500")],
        None,
    )
    .await;
    register_local(&fed, &fed.a.base, &fed.a_token, "a-local").await;
    // c.example accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let stranger = OrgSigningKey::generate().expect("key");
    let (status, added) = post(
        &fed.http,
        &format!("{}/v1/peers", fed.a.base),
        &fed.a_token,
        &json!({"domain": "c.example", "url": silent_url, "keys": [stranger.public_jwk()]}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let Federated {
        a,
        b,
        a_token,
        http,
        ..
    } = fed;
    drop(b);
    let (status, listing) = get(
        &http,
        &format!("{}/v1/agents?federated=true", a.base),
        &a_token,
    )
    .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(ids(&listing), ["convergio://agents/a-local"], "{listing}");
    let partial = listing["partial"].as_array().expect("partial");
    let reason = |peer: &str| {
        partial
            .iter()
            .find(|entry| entry["peer"] == peer)
            .and_then(|entry| entry["reason"].as_str())
            .unwrap_or_else(|| panic!("{peer} partial in {listing}"))
            .to_owned()
    };
    assert_eq!(reason("b.example"), "unreachable");
    assert!(reason("c.example").contains("500 ms"), "{listing}");
    held.abort();
}

#[tokio::test]
async fn sync_pulls_b_allowed_agents_as_external_agents_and_drops_removed_ones() {
    let fed = federate_with(true, &[], Some("trusted")).await;
    // B has a second opted-in agent, to be removed later.
    let mut card = fed._partner.card();
    card["name"] = json!("partner-two");
    for skill in card["skills"].as_array_mut().expect("skills") {
        skill["tags"] = json!(["external"]);
    }
    let (status, two) = post(
        &fed.http,
        &format!("{}/v1/agents", fed.b.base),
        &fed.b_token,
        &json!({"name": "partner-two", "card": card}),
    )
    .await;
    assert_eq!(status, 201, "{two}");
    let two_id = two["id"].as_str().expect("id").to_owned();
    let trusted = fed
        .http
        .put(format!(
            "{}/v1/agents/{}/trust",
            fed.b.base,
            encoded(&two_id)
        ))
        .bearer_auth(&fed.b_token)
        .json(&json!({"level": "trusted", "reason": "second partner"}))
        .send()
        .await
        .expect("trust set");
    assert!(trusted.status().is_success());

    // The CLI triggers a sync now.
    let (ok, out) = peers_cli(&fed.a, fed.a_dir.path(), &["sync", "b.example"]);
    assert!(ok, "{out}");
    assert!(out.contains("2 seen") && out.contains("2 added"), "{out}");

    let partner_id = "external://b.example/agents/partner-echo";
    let (status, partner) = get(
        &fed.http,
        &format!("{}/v1/agents/{}", fed.a.base, encoded(partner_id)),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 200, "{partner}");
    assert_eq!(partner["org"], "b.example");
    // Trusted at B, and A trusts B: trusted here.
    assert_eq!(partner["trust"], "trusted", "{partner}");
    // B's own (non-opted-in) agents were not pulled.
    let (_, listing) = get(
        &fed.http,
        &format!("{}/v1/agents?org=b.example", fed.a.base),
        &fed.a_token,
    )
    .await;
    let mut synced = ids(&listing);
    synced.sort();
    assert_eq!(
        synced,
        [partner_id, "external://b.example/agents/partner-two"],
        "{listing}"
    );
    // The synced agent is callable through the external routing.
    let (status, answer) = post(
        &fed.http,
        &format!("{}/external/b.example/agents/partner-echo", fed.a.base),
        &fed.a_token,
        &send_message("synced hello"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.to_string().contains("synced hello"), "{answer}");

    // A sync with nothing new changes nothing.
    let (status, report) = post(
        &fed.http,
        &format!("{}/v1/peers/b.example:sync", fed.a.base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["added"], &report["updated"], &report["removed"]),
        (&json!(0), &json!(0), &json!(0)),
        "{report}"
    );

    // B removes partner-two: the next sync (API) deregisters it at A.
    let removed = fed
        .http
        .delete(format!("{}/v1/agents/{}", fed.b.base, encoded(&two_id)))
        .bearer_auth(&fed.b_token)
        .send()
        .await
        .expect("deregistered");
    assert!(removed.status().is_success());
    let (status, report) = post(
        &fed.http,
        &format!("{}/v1/peers/b.example:sync", fed.a.base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], 1, "{report}");
    let (status, _) = get(
        &fed.http,
        &format!(
            "{}/v1/agents/{}",
            fed.a.base,
            encoded("external://b.example/agents/partner-two")
        ),
        &fed.a_token,
    )
    .await;
    assert_eq!(status, 404);

    // Sync is administration: unknown peers are 404, peers may not ask.
    let (status, _) = post(
        &fed.http,
        &format!("{}/v1/peers/z.example:sync", fed.a.base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &fed.http,
        &format!("{}/v1/peers/b.example:nope", fed.a.base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn periodic_sync_pulls_b_agents_without_being_asked() {
    let fed = federate_with(
        true,
        &[("CONVERGIO_FEDERATION_SYNC_INTERVAL_SECONDS", "1")],
        Some("trusted"),
    )
    .await;
    let url = format!(
        "{}/v1/agents/{}",
        fed.a.base,
        encoded("external://b.example/agents/partner-echo")
    );
    // Waits for the first tick after the peer was added (a bounded wait,
    // not a speed assertion: every answer before that is a 404).
    let mut found = Value::Null;
    for _ in 0..600 {
        let (status, body) = get(&fed.http, &url, &fed.a_token).await;
        if status == 200 {
            found = body;
            break;
        }
        assert_eq!(status, 404, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found["trust"], "trusted", "synced within a minute: {found}");
}

#[tokio::test]
async fn a_card_its_organisation_signed_is_verified_when_synced() {
    // A gives B the default peer trust, `verified`; that is only what B's
    // agents may reach, a signature by B's key is what earns it.
    let fed = federate_with(true, &[], None).await;
    let pem = std::fs::read_to_string(fed._b_dir.path().join("federation-key.pem"))
        .expect("B's generated key");
    let b_key = OrgSigningKey::from_pem(&pem).expect("parses");
    let mut card = fed._partner.card();
    card["name"] = json!("signed-partner");
    for skill in card["skills"].as_array_mut().expect("skills") {
        skill["tags"] = json!(["external"]);
    }
    let signed = convergio_auth::sign_card(&card, &b_key).expect("signs");
    let (status, registered) = post(
        &fed.http,
        &format!("{}/v1/agents", fed.b.base),
        &fed.b_token,
        &json!({"name": "signed-partner", "card": signed}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(
        registered["trust"], "verified",
        "B verifies its own signature"
    );

    let (status, report) = post(
        &fed.http,
        &format!("{}/v1/peers/b.example:sync", fed.a.base),
        &fed.a_token,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let trust_at_a = |name: &str| {
        let url = format!(
            "{}/v1/agents/{}",
            fed.a.base,
            encoded(&format!("external://b.example/agents/{name}"))
        );
        let (http, token) = (fed.http.clone(), fed.a_token.clone());
        async move {
            let (status, record) = get(&http, &url, &token).await;
            assert_eq!(status, 200, "{record}");
            record["trust"].as_str().unwrap_or_default().to_owned()
        }
    };
    assert_eq!(
        trust_at_a("signed-partner").await,
        "verified",
        "signed by its organisation's approved key"
    );
    assert_eq!(
        trust_at_a("partner-echo").await,
        "registered",
        "unsigned: the peer's trust alone does not make it verified"
    );
}
