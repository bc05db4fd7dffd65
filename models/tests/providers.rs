//! The provider clients against the fake providers on loopback: streamed
//! and whole answers, retries honouring `Retry-After`, errors that name the
//! key's reference, and dropping a stream closing the connection.

mod support;

use std::time::Duration;

use convergio_models::fake::FakeReply;
use convergio_models::{
    provider, ApiKey, ChatEvent, ChatMessage, ChatRequest, ProviderError, ProviderKind, StopReason,
    ToolCall, ToolSpec, Usage,
};
use futures_util::StreamExt;
use serde_json::json;
use support::*;

fn request(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "fake-model".into(),
        system: Some("Be brief.".into()),
        messages: vec![ChatMessage::user("Hello")],
        tools: vec![ToolSpec {
            name: "weather".into(),
            description: "Weather".into(),
            input_schema: ToolSpec::agent_input_schema(),
        }],
        max_tokens: 64,
        temperature: Some(0.2),
        stream,
        response_schema: None,
    }
}

fn key() -> ApiKey {
    ApiKey::new(KEY_REFERENCE, KEY)
}

async fn collect(
    kind: ProviderKind,
    base_url: &str,
    request: ChatRequest,
) -> Result<Vec<ChatEvent>, ProviderError> {
    let client = provider::client(kind, base_url, settings()).expect("client");
    let mut stream = client.chat(request, &key()).await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

#[tokio::test]
async fn streamed_and_whole_answers_decode_to_the_same_events() {
    for kind in KINDS {
        let fake = fake(kind).await;
        let call = FakeReply::tool_call(
            "call_9",
            "weather",
            json!({"text": "Oslo"}),
            Usage {
                input_tokens: 30,
                output_tokens: 12,
            },
        );
        fake.push([call.clone(), call]);
        let streamed = collect(kind, fake.base_url(), request(true))
            .await
            .expect("streamed");
        let whole = collect(kind, fake.base_url(), request(false))
            .await
            .expect("whole");
        let expected = vec![
            ChatEvent::ToolCall(ToolCall {
                id: "call_9".into(),
                name: "weather".into(),
                arguments: json!({"text": "Oslo"}),
            }),
            ChatEvent::Done {
                usage: Usage {
                    input_tokens: 30,
                    output_tokens: 12,
                },
                stop_reason: StopReason::ToolUse,
            },
        ];
        assert_eq!(streamed, expected, "{kind} streamed");
        assert_eq!(whole, expected, "{kind} whole");
        let sent = &fake.requests()[0].body;
        assert_eq!(sent["max_tokens"], 64);
        assert_eq!(sent["temperature"], 0.2);
    }
}

#[tokio::test]
async fn retries_a_429_after_the_wait_its_retry_after_asks_for() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([
            FakeReply::Status {
                status: 429,
                retry_after: Some("1".into()),
            },
            FakeReply::text("Finally.", 1, Usage::default()),
        ]);
        let events = collect(kind, fake.base_url(), request(true))
            .await
            .expect("answer");
        assert_eq!(events[0], ChatEvent::TextDelta("Finally.".into()));
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let waited = requests[1].at.duration_since(requests[0].at);
        // The client's own first backoff is 10 ms; the provider asked for 1 s.
        assert!(
            waited >= Duration::from_secs(1),
            "{kind}: retried after {waited:?}"
        );
    }
}

#[tokio::test]
async fn gives_up_on_server_errors_after_the_last_attempt() {
    let kind = ProviderKind::OpenAi;
    let fake = fake(kind).await;
    fake.set_fallback(FakeReply::Status {
        status: 503,
        retry_after: None,
    });
    let error = collect(kind, fake.base_url(), request(true))
        .await
        .expect_err("unavailable");
    assert!(
        matches!(
            error,
            ProviderError::Unavailable {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_refused_key_error_names_the_reference_and_not_the_key() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.require_key("sk-another-key");
        let error = collect(kind, fake.base_url(), request(true))
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, ProviderError::KeyRefused { status: 401, key_reference } if key_reference == KEY_REFERENCE),
            "{error:?}"
        );
        for text in [
            error.to_string(),
            format!("{error:?}"),
            format!("{:?}", key()),
        ] {
            assert!(!text.contains(KEY), "{text}");
        }
    }
}

#[tokio::test]
async fn a_rejected_request_quotes_the_provider_without_the_key() {
    let kind = ProviderKind::OpenAi;
    let fake = fake(kind).await;
    fake.push([FakeReply::Status {
        status: 400,
        retry_after: None,
    }]);
    let error = collect(kind, fake.base_url(), request(true))
        .await
        .expect_err("rejected");
    assert!(
        matches!(&error, ProviderError::Rejected { status: 400, message } if message == "The request is invalid"),
        "{error:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    for kind in KINDS {
        let fake = fake(kind).await;
        fake.push([FakeReply::Hang {
            chunks: vec!["Partial".into()],
        }]);
        let client = provider::client(kind, fake.base_url(), settings()).expect("client");
        let mut stream = client.chat(request(true), &key()).await.expect("accepted");
        let first = tokio::time::timeout(TIMEOUT, stream.next())
            .await
            .expect("a first event");
        assert!(
            matches!(first, Some(Ok(ChatEvent::TextDelta(_)))),
            "{first:?}"
        );
        drop(stream);
        tokio::time::timeout(TIMEOUT, fake.wait_for_disconnects(1))
            .await
            .expect("the fake saw the connection close");
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let base_url = format!("http://{address}/v1");
    let error = collect(ProviderKind::OpenAi, &base_url, request(true))
        .await
        .expect_err("unreachable");
    assert!(matches!(error, ProviderError::Connect { .. }), "{error:?}");
}

/// Resolves every name to `to`, or refuses every name (`None`), counting.
struct FixedResolver {
    to: Option<std::net::SocketAddr>,
    asked: std::sync::atomic::AtomicUsize,
}

impl reqwest::dns::Resolve for FixedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let to = self.to;
        Box::pin(async move {
            match to {
                Some(address) => Ok(Box::new(std::iter::once(address)) as reqwest::dns::Addrs),
                None => Err("refused by the guard".into()),
            }
        })
    }
}

#[tokio::test]
async fn every_connection_resolves_through_the_configured_resolver() {
    let fake = fake(ProviderKind::OpenAi).await;
    fake.set_fallback(FakeReply::text(
        "ok",
        1,
        Usage {
            input_tokens: 1,
            output_tokens: 1,
        },
    ));
    let port = url_port(fake.base_url());
    // A name only the resolver knows: the answer proves it was asked.
    let base_url = format!("http://provider.invalid:{port}/v1");
    for (to, works) in [
        (Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))), true),
        (None, false),
    ] {
        let resolver = std::sync::Arc::new(FixedResolver {
            to,
            asked: Default::default(),
        });
        let settings = convergio_models::ClientSettings {
            resolver: Some(provider::Resolver(resolver.clone())),
            ..settings()
        };
        let client = provider::client(ProviderKind::OpenAi, &base_url, settings).expect("client");
        let outcome = client.chat(request(false), &key()).await;
        assert_eq!(outcome.is_ok(), works, "{:?}", outcome.err());
        if let Err(error) = outcome {
            assert!(matches!(error, ProviderError::Connect { .. }), "{error:?}");
        }
        assert!(resolver.asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_with_the_key() {
    let fake = fake(ProviderKind::OpenAi).await;
    let target = format!("{}/chat/completions", fake.base_url());
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let error = collect(
        ProviderKind::OpenAi,
        &format!("http://{address}/v1"),
        request(false),
    )
    .await
    .expect_err("a redirect is an error");
    assert!(!matches!(error, ProviderError::Connect { .. }), "{error:?}");
    assert!(fake.requests().is_empty(), "the redirect was followed");
}

fn url_port(base_url: &str) -> u16 {
    base_url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("a port in the fake's URL")
}
