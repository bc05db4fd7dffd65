//! Issue 14: a failed upstream call says which way it failed — unreachable,
//! timed out, bad response or no usable interface — on both bindings and in
//! streams, keeping A2A's -32006. The cause (address, transport error) is
//! shown to callers who may read the agent's card; everyone else gets the
//! category only. Real sockets: a closed loopback port, the fake upstream
//! hanging, answering garbage or cutting a stream, and a gRPC-only card.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convergio_gateway::a2a::{A2aConfig, RouteTarget};
use convergio_gateway::authorize::{CallFacts, Gatekeeper};
use convergio_gateway::layers::{LimitsConfig, RequestId};
use convergio_gateway::{GatewayError, Principal};
use serde_json::{json, Value};

use support::{send_params, spawn_fake, spawn_gateway_gated, sse_events, FakeMode, Gateway};

/// The subject that may read every card; any other caller may not.
const CARD_READER: &str = "admin";
/// A caller that may call agents but not read their cards.
const RESTRICTED: &str = "guest";

/// Admits every call; lets only [`CARD_READER`] read cards.
struct CardReaders;

#[async_trait]
impl Gatekeeper for CardReaders {
    async fn admit(&self, _call: &CallFacts<'_>) -> Result<(), GatewayError> {
        Ok(())
    }

    fn may_discover(&self, _principal: &Principal, _target: &RouteTarget, _loopback: bool) -> bool {
        true
    }

    fn may_read_card(&self, principal: &Principal, _target: &RouteTarget, _loopback: bool) -> bool {
        principal.subject == CARD_READER
    }

    fn may_call(&self, _principal: &Principal, _target: &RouteTarget, _loopback: bool) -> bool {
        true
    }

    async fn record_listing(
        &self,
        _principal: &Principal,
        _request_id: Option<&RequestId>,
        _shown: usize,
        _hidden: usize,
    ) {
    }

    fn observe_reply(&self, _principal: &Principal, _result: &Value) {}

    async fn admit_run(
        &self,
        _principal: &Principal,
        _graph: &str,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn decide_graph(
        &self,
        _principal: &Principal,
        _action: convergio_gateway::authorize::GraphAction,
        _graph: &str,
        _org: &str,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> bool {
        true
    }

    async fn admit_metrics(
        &self,
        _principal: &Principal,
        _loopback: bool,
        _request_id: Option<&RequestId>,
    ) -> Result<(), GatewayError> {
        Ok(())
    }
}

async fn gateway(upstream_timeout: Duration) -> Gateway {
    let config = A2aConfig {
        upstream_timeout,
        upstream_retries: 0,
        upstream_allow: convergio_gateway::ssrf::AllowList::loopback(),
        ..A2aConfig::default()
    };
    spawn_gateway_gated(config, LimitsConfig::default(), Arc::new(CardReaders)).await
}

/// A loopback port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    port
}

fn card_at(url: &str) -> Value {
    json!({
        "name": "dead", "description": "nobody home", "version": "1",
        "supportedInterfaces": [
            {"url": format!("{url}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": format!("{url}/rest"), "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "x", "name": "x", "description": "x", "tags": ["x"]}]
    })
}

/// The Convergio ErrorInfo of an error's details (JSON-RPC `data` or
/// HTTP+JSON `details`).
fn upstream_info(details: &Value) -> Value {
    details
        .as_array()
        .into_iter()
        .flatten()
        .find(|info| info["domain"] == "convergio.dev")
        .cloned()
        .unwrap_or_else(|| panic!("no convergio.dev ErrorInfo in {details}"))
}

/// Checks a JSON-RPC error object: -32006, the A2A ErrorInfo first, the
/// category in message and details, and the cause only when `with_cause`
/// contains something to look for.
fn check_jsonrpc_error(
    error: &Value,
    reason: &str,
    phrase: &str,
    cause_has: Option<&[&str]>,
    secret: &str,
) {
    assert_eq!(error["code"], -32006, "{error}");
    assert_eq!(
        error["data"][0]["reason"], "INVALID_AGENT_RESPONSE",
        "{error}"
    );
    assert_eq!(error["data"][0]["domain"], "a2a-protocol.org", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(phrase), "{message}");
    check_info(
        &upstream_info(&error["data"]),
        reason,
        cause_has,
        secret,
        error,
    );
}

fn check_info(info: &Value, reason: &str, cause_has: Option<&[&str]>, secret: &str, whole: &Value) {
    assert_eq!(info["reason"], reason, "{whole}");
    match cause_has {
        Some(words) => {
            let cause = info["metadata"]["cause"].as_str().unwrap_or_default();
            for word in words {
                assert!(
                    cause.to_lowercase().contains(&word.to_lowercase()),
                    "cause {cause:?} lacks {word:?}"
                );
            }
        }
        None => {
            assert!(info["metadata"].get("cause").is_none(), "{whole}");
            assert!(
                !whole.to_string().contains(secret),
                "{secret} leaked: {whole}"
            );
        }
    }
}

#[tokio::test]
async fn unreachable_upstream_names_the_cause_to_card_readers_only() {
    let gateway = gateway(Duration::from_secs(5)).await;
    let port = closed_port().await;
    let address = format!("127.0.0.1:{port}");
    gateway.register("dead", card_at(&format!("http://{address}")));

    let answer = gateway
        .rpc("dead", CARD_READER, "SendMessage", send_params("hi"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_UNREACHABLE",
        "upstream unreachable",
        Some(&[&address, "refused"]),
        &address,
    );
    assert_eq!(
        upstream_info(&answer["error"]["data"])["metadata"]["category"],
        "unreachable"
    );

    let answer = gateway
        .rpc("dead", RESTRICTED, "SendMessage", send_params("hi"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_UNREACHABLE",
        "upstream unreachable",
        None,
        &address,
    );

    // HTTP+JSON: the A2A REST error, HTTP 500, the same two ErrorInfos.
    for (subject, cause) in [(CARD_READER, true), (RESTRICTED, false)] {
        let response = gateway
            .http
            .post(gateway.url("/agents/dead/message:send"))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", subject)
            .json(&send_params("hi"))
            .send()
            .await
            .expect("rest call");
        assert_eq!(response.status(), 500);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["status"], "INTERNAL", "{body}");
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "INVALID_AGENT_RESPONSE"
        );
        let words: &[&str] = &[&address, "refused"];
        check_info(
            &upstream_info(&body["error"]["details"]),
            "UPSTREAM_UNREACHABLE",
            cause.then_some(words),
            &address,
            &body,
        );
    }
}

#[tokio::test]
async fn hanging_upstream_times_out_with_its_category() {
    let gateway = gateway(Duration::from_millis(300)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("slow", fake.card());
    let address = fake.base_url.trim_start_matches("http://").to_owned();

    let answer = gateway
        .rpc("slow", CARD_READER, "SendMessage", send_params("hang"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_TIMEOUT",
        "upstream timed out",
        Some(&[&address, "0.3 s"]),
        &address,
    );
    let answer = gateway
        .rpc("slow", RESTRICTED, "SendMessage", send_params("hang"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_TIMEOUT",
        "upstream timed out",
        None,
        &address,
    );
}

#[tokio::test]
async fn garbage_from_the_upstream_is_a_bad_response() {
    let gateway = gateway(Duration::from_secs(5)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("broken", fake.card());
    let address = fake.base_url.trim_start_matches("http://").to_owned();

    let answer = gateway
        .rpc("broken", CARD_READER, "SendMessage", send_params("garbage"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_BAD_RESPONSE",
        "upstream sent a bad response",
        Some(&[&address, "not JSON"]),
        &address,
    );
    let answer = gateway
        .rpc("broken", RESTRICTED, "SendMessage", send_params("garbage"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "UPSTREAM_BAD_RESPONSE",
        "upstream sent a bad response",
        None,
        &address,
    );
}

#[tokio::test]
async fn a_broken_stream_ends_with_the_category_and_the_cause_for_card_readers() {
    let gateway = gateway(Duration::from_secs(5)).await;
    let fake = spawn_fake(FakeMode::V1).await;
    gateway.register("cutter", fake.card());
    let address = fake.base_url.trim_start_matches("http://").to_owned();

    for (subject, cause) in [(CARD_READER, true), (RESTRICTED, false)] {
        // JSON-RPC stream: the last event is the JSON-RPC error.
        let response = gateway
            .http
            .post(gateway.url("/agents/cutter"))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", subject)
            .json(
                &json!({"jsonrpc": "2.0", "id": 3, "method": "SendStreamingMessage",
                "params": send_params("cut")}),
            )
            .send()
            .await
            .expect("stream");
        let events = sse_events(response).await;
        let last = events.last().expect("an error event");
        let words: &[&str] = &[&address, "stream"];
        check_jsonrpc_error(
            &last["error"],
            "UPSTREAM_BAD_RESPONSE",
            "upstream sent a bad response",
            cause.then_some(words),
            &address,
        );

        // HTTP+JSON stream: the last event is the A2A REST error.
        let response = gateway
            .http
            .post(gateway.url("/agents/cutter/message:stream"))
            .header("A2A-Version", "1.0")
            .header("x-test-subject", subject)
            .json(&send_params("cut"))
            .send()
            .await
            .expect("rest stream");
        let events = sse_events(response).await;
        let last = events.last().expect("an error event");
        assert_eq!(
            last["error"]["details"][0]["reason"], "INVALID_AGENT_RESPONSE",
            "{last}"
        );
        check_info(
            &upstream_info(&last["error"]["details"]),
            "UPSTREAM_BAD_RESPONSE",
            cause.then_some(words),
            &address,
            last,
        );
    }
}

#[tokio::test]
async fn a_card_without_a_usable_interface_says_so_and_grpc_beside_one_is_harmless() {
    let gateway = gateway(Duration::from_secs(5)).await;
    let fake = spawn_fake(FakeMode::V1JsonRpcOnly).await;
    // gRPC 1.0 is forwarded (tests/grpc.rs); the 0.3 gRPC service is not.
    let mut grpc_only = fake.card();
    grpc_only["supportedInterfaces"] =
        json!([{"url": "127.0.0.1:50051", "protocolBinding": "GRPC", "protocolVersion": "0.3"}]);
    gateway.register("grpc", grpc_only);

    let answer = gateway
        .rpc("grpc", CARD_READER, "SendMessage", send_params("hi"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "NO_USABLE_INTERFACE",
        "agent has no usable interface",
        Some(&["GRPC 0.3 at 127.0.0.1:50051", "JSONRPC"]),
        "50051",
    );
    let answer = gateway
        .rpc("grpc", RESTRICTED, "SendMessage", send_params("hi"))
        .await;
    check_jsonrpc_error(
        &answer["error"],
        "NO_USABLE_INTERFACE",
        "agent has no usable interface",
        None,
        "50051",
    );

    // gRPC listed first, JSON-RPC second: the call goes over JSON-RPC.
    let mut mixed = fake.card();
    mixed["supportedInterfaces"]
        .as_array_mut()
        .expect("interfaces")
        .insert(
            0,
            json!({"url": "127.0.0.1:50051", "protocolBinding": "GRPC", "protocolVersion": "1.0"}),
        );
    gateway.register("mixed", mixed);
    let answer = gateway
        .rpc("mixed", RESTRICTED, "SendMessage", send_params("hi"))
        .await;
    assert!(answer.get("result").is_some(), "{answer}");
}
