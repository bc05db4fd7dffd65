//! TLS toward upstream agents (issue 4): an `https://` agent is reached
//! with the CA bundle and the mTLS client certificate of its own config,
//! unary and streaming; without the client certificate, or without the CA,
//! the call fails with the broken-upstream answer and the gateway stays up.
//! The upstream is the fake agent behind the product's own TLS accept loop,
//! requiring client certificates from the test CA.

mod support;

use std::sync::Arc;
use std::time::Duration;

use convergio_gateway::a2a::{A2aConfig, UpstreamCredential};
use convergio_gateway::layers::LimitsConfig;
use convergio_gateway::tls::{upstream_client_config, ClientAuth, TlsConfig, UpstreamTlsFiles};
use serde_json::{json, Value};
use support::security::fixture;
use support::{
    send_params, spawn_fake, spawn_fake_tls, spawn_gateway_with, sse_events, FakeAgent, FakeMode,
    Gateway,
};

/// The upstream's listener: the fixtures' `localhost` certificate, client
/// certificates from the test CA required.
fn upstream_listener() -> TlsConfig {
    TlsConfig {
        cert_file: fixture("server.pem"),
        key_file: fixture("server.key"),
        client_ca_file: Some(fixture("ca.pem")),
        client_auth: ClientAuth::Required,
    }
}

fn credential(files: UpstreamTlsFiles) -> UpstreamCredential {
    UpstreamCredential {
        tls: Some(Arc::new(
            upstream_client_config(&files).expect("tls config"),
        )),
        ..Default::default()
    }
}

fn with_client_certificate() -> UpstreamTlsFiles {
    UpstreamTlsFiles {
        ca_file: Some(fixture("ca.pem")),
        client_cert_file: Some(fixture("client-dns.pem")),
        client_key_file: Some(fixture("client-dns.key")),
    }
}

/// A gateway where `mtls` has the full settings, `no-cert` only the CA and
/// `no-ca` nothing (the public web PKI, which does not know the test CA);
/// all three are the same TLS upstream.
async fn gateway_and_upstream() -> (Gateway, FakeAgent) {
    let upstream = spawn_fake_tls(FakeMode::V1, &upstream_listener()).await;
    let mut config = A2aConfig {
        upstream_timeout: Duration::from_secs(5),
        upstream_retries: 0,
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    config
        .upstream_credentials
        .insert("mtls".into(), credential(with_client_certificate()));
    config.upstream_credentials.insert(
        "no-cert".into(),
        credential(UpstreamTlsFiles {
            ca_file: Some(fixture("ca.pem")),
            ..Default::default()
        }),
    );
    let gateway = spawn_gateway_with(config, LimitsConfig::default()).await;
    for name in ["mtls", "no-cert", "no-ca"] {
        gateway.register(name, upstream.card());
    }
    (gateway, upstream)
}

#[tokio::test]
async fn an_https_agent_is_reached_with_its_own_ca_and_client_certificate() {
    let (gateway, upstream) = gateway_and_upstream().await;
    let reply = gateway
        .rpc("mtls", "alice", "SendMessage", send_params("over tls"))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert_eq!(
        reply["result"]["task"]["status"]["state"],
        json!("TASK_STATE_COMPLETED"),
        "{reply}"
    );
    assert!(
        upstream
            .state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );

    let response = gateway
        .http
        .post(gateway.url("/agents/mtls"))
        .header("A2A-Version", "1.0")
        .header("x-test-subject", "alice")
        .json(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "SendStreamingMessage",
                      "params": send_params("stream over tls")}),
        )
        .send()
        .await
        .expect("stream");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(response).await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().all(|event| event.get("error").is_none()));
}

#[tokio::test]
async fn without_the_client_certificate_or_the_ca_the_call_fails_cleanly() {
    let (gateway, _upstream) = gateway_and_upstream().await;
    for agent in ["no-cert", "no-ca"] {
        let reply = gateway
            .rpc(agent, "alice", "SendMessage", send_params("refused"))
            .await;
        assert_eq!(reply["error"]["code"], json!(-32006), "{agent}: {reply}");
        let text = reply.to_string();
        assert!(
            !text.contains("BEGIN") && !text.contains(".key"),
            "no key material or paths in the answer: {text}"
        );
    }
    // The gateway is up and the configured agent still works.
    let reply = gateway
        .rpc("mtls", "alice", "SendMessage", send_params("still up"))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
}

#[tokio::test]
async fn plain_http_agents_still_work_beside_tls_ones() {
    let (gateway, _upstream) = gateway_and_upstream().await;
    let plain = spawn_fake(FakeMode::V1).await;
    gateway.register("plain", plain.card());
    let reply: Value = gateway
        .rpc("plain", "alice", "SendMessage", send_params("plain"))
        .await;
    assert!(reply.get("error").is_none(), "{reply}");
}

#[test]
fn a_certificate_without_its_key_is_a_configuration_error() {
    let files = UpstreamTlsFiles {
        client_cert_file: Some(fixture("client-dns.pem")),
        ..Default::default()
    };
    let error = upstream_client_config(&files).expect_err("half an identity");
    assert!(error.to_string().contains("client_key_file"), "{error}");
    let missing = UpstreamTlsFiles {
        ca_file: Some(fixture("does-not-exist.pem")),
        ..Default::default()
    };
    let error = upstream_client_config(&missing).expect_err("missing file");
    assert!(error.to_string().contains("does-not-exist.pem"), "{error}");
}
