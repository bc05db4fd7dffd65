//! Credentials never appear in logs (issue 4): with every target logging at
//! TRACE into a buffer, requests carrying a bearer JWT, an API key (in both
//! headers), the admin token and refused variants of each leave no secret in
//! the captured output. Its own test binary, because the subscriber is
//! process-global.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::security::{spawn_secure_gateway, Issuer, SecureOptions, ADMIN_TOKEN};
use support::{send_params, spawn_fake, FakeMode};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn credentials_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let issuer = Issuer::new("key-1");
    let gateway = spawn_secure_gateway(SecureOptions::new(&issuer)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.gateway.register("echo", fake.card());
    let token = issuer.token("alice", "acme.example");
    let issued = gateway
        .api_keys
        .issue("bot", None, &[], None)
        .expect("issue");
    let key_secret = issued
        .token
        .rsplit('_')
        .next()
        .expect("secret part")
        .to_owned();
    let mut expired = support::security::claims("alice", "acme.example");
    expired["exp"] = json!(1);
    let expired_token = issuer.sign(&expired);

    let headers: Vec<(&str, String)> = vec![
        ("authorization", format!("Bearer {token}")),
        ("authorization", format!("Bearer {}", issued.token)),
        ("x-api-key", issued.token.clone()),
        ("authorization", format!("Bearer {ADMIN_TOKEN}")),
        ("authorization", format!("Bearer {expired_token}")),
        ("authorization", format!("Bearer {}x", issued.token)),
    ];
    for (name, value) in &headers {
        for path in ["/agents/echo", "/whoami"] {
            let _ = gateway
                .gateway
                .http
                .post(gateway.gateway.url(path))
                .header("A2A-Version", "1.0")
                .header(*name, value)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": send_params("hi")}))
                .send()
                .await
                .expect("request");
        }
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(!logs.is_empty(), "the capture works");
    let signature = token.rsplit('.').next().expect("signature").to_owned();
    for secret in [
        token.as_str(),
        signature.as_str(),
        key_secret.as_str(),
        ADMIN_TOKEN,
        expired_token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}
