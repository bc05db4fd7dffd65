//! The HTTP client behind every client subcommand: one place that reaches
//! the server, attaches the admin token, and turns problem+json answers into
//! readable errors (and a non-zero exit). A refused or missing token says
//! where the token came from (or where it was looked for) and how to give
//! one, since the server itself never says why authentication failed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::env;

/// A client for one Convergio server.
pub struct Client {
    base: String,
    token: Option<String>,
    token_source: TokenSource,
    http: reqwest::Client,
}

/// Where the admin token came from, for messages about a refused one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` on the command line.
    Flag,
    /// The `CONVERGIO_ADMIN_TOKEN` environment variable.
    Env,
    /// The `admin-token` file `convergio serve` wrote in the data dir.
    DataDir(PathBuf),
    /// No token: none given, and no file at this path.
    Missing(PathBuf),
}

// === impl TokenSource ===

impl TokenSource {
    /// What to tell someone whose request was refused (401/403) or whose
    /// agent was not found (a 404 may only mean "not visible to you").
    pub fn hint(&self) -> String {
        match self {
            Self::Flag => "the server refused the admin token given with --token".to_owned(),
            Self::Env => format!(
                "the server refused the admin token from {}",
                env::ADMIN_TOKEN
            ),
            Self::DataDir(path) => format!(
                "the server refused the admin token read from {} (was the server restarted \
                 with another data dir or token?)",
                path.display()
            ),
            Self::Missing(path) => format!(
                "no admin token was sent: no --token, no {}, and no {} (run where `convergio \
                 serve` keeps its data, or pass --data-dir DIR or set {})",
                env::ADMIN_TOKEN,
                path.display(),
                env::ADMIN_TOKEN
            ),
        }
    }
}

/// A non-2xx answer: the status and the rendered message. Carried inside
/// the `anyhow::Error`, so callers can react to a status (e.g. 404).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HttpFailure {
    /// The answer's status.
    pub status: StatusCode,
    /// `{what} failed: {status}: {detail}` plus any hint.
    pub message: String,
}

/// Whether `--token` is on this process's command line (clap gives the
/// flag precedence over the environment, so the value came from it).
fn token_flag_given() -> bool {
    std::env::args_os().any(|arg| {
        let arg = arg.to_string_lossy();
        arg == "--token" || arg.starts_with("--token=")
    })
}

/// A successful answer: the JSON body (or `Null`).
pub struct Answer {
    /// The parsed body.
    pub body: Value,
}

// === impl Client ===

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`). The token is the
    /// explicit one, else the one `convergio serve` stored in `data_dir`.
    pub fn new(base: &str, token: Option<String>, data_dir: &Path) -> anyhow::Result<Self> {
        let file = data_dir.join("admin-token");
        let (token, token_source) = match token {
            Some(token) => {
                let from_env = std::env::var(env::ADMIN_TOKEN).ok().as_deref() == Some(&token);
                let source = if from_env && !token_flag_given() {
                    TokenSource::Env
                } else {
                    TokenSource::Flag
                };
                (Some(token), source)
            }
            None => match std::fs::read_to_string(&file)
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
            {
                Some(token) => (Some(token), TokenSource::DataDir(file)),
                None => (None, TokenSource::Missing(file)),
            },
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            token_source,
            http,
        })
    }

    /// The error for a non-2xx answer to `what`, with a hint about the
    /// token when the refusal may be about it.
    fn failure(&self, what: &str, status: StatusCode, body: &Value) -> anyhow::Error {
        let mut message = format!("{what} failed: {}", describe_problem(status, body));
        let about_token = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => true,
            // Without a token the caller is anonymous, and an agent it may
            // not read is answered as unknown.
            StatusCode::NOT_FOUND => matches!(self.token_source, TokenSource::Missing(_)),
            _ => false,
        };
        if about_token {
            message.push_str("\n  hint: ");
            message.push_str(&self.token_source.hint());
        }
        anyhow::Error::new(HttpFailure { status, message })
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the
    /// server's problem detail.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Convergio server at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await.context("reading the answer")?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if !status.is_success() {
            return Err(self.failure(&format!("{method} {path}"), status, &body));
        }
        Ok(Answer { body })
    }
}

// === impl Client (raw bodies and streams) ===

impl Client {
    /// A request to `path` with the token attached, for bodies `send` does
    /// not cover (raw text, event streams).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// A request to `path` authenticated with `api_key` instead of the
    /// token (to see the server as that key's holder does).
    pub fn request_with_key(
        &self,
        method: Method,
        path: &str,
        api_key: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("x-api-key", api_key)
    }

    /// Sends a prepared request; a non-2xx answer becomes an error carrying
    /// the server's problem detail. The response is returned unread.
    pub async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Convergio server at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.context("reading the answer")?;
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Err(self.failure(what, status, &body))
    }
}

/// Reads a `text/event-stream` response to its end, handing each event's
/// `data` (its lines joined, parsed as JSON) to `each`; events without data
/// or with data that is not JSON (keep-alives, comments) are skipped.
pub async fn for_each_event(
    response: reqwest::Response,
    mut each: impl FnMut(Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let mut buffer = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("reading the event stream")?;
        buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let data: String = frame
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n");
            if data.is_empty() {
                continue;
            }
            if let Ok(event) = serde_json::from_str::<Value>(&data) {
                each(event)?;
            }
        }
    }
    Ok(())
}

/// Awaits `work` behind a spinner saying `message` on stderr; drawn only
/// when stderr is a terminal (scripts and pipes see nothing), cleared when
/// the work is done.
pub async fn with_spinner<T>(message: &str, work: impl std::future::Future<Output = T>) -> T {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let done = work.await;
    spinner.finish_and_clear();
    done
}

/// Renders a problem document (or any error body) on one or more lines.
pub fn describe_problem(status: StatusCode, body: &Value) -> String {
    let mut text = format!("{status}");
    if let Some(detail) = body.get("detail").and_then(Value::as_str) {
        text.push_str(": ");
        text.push_str(detail);
    } else if let Some(message) = body.pointer("/error/message").and_then(Value::as_str) {
        text.push_str(": ");
        text.push_str(message);
    } else if let Value::String(raw) = body {
        text.push_str(": ");
        text.push_str(raw);
    }
    if let Some(violations) = body.get("violations").and_then(Value::as_array) {
        for violation in violations {
            let pointer = violation
                .get("pointer")
                .and_then(Value::as_str)
                .unwrap_or("");
            let message = violation
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("");
            text.push_str(&format!("\n  at {pointer:?}: {message}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hints_say_where_the_token_came_from_and_how_to_give_one() {
        assert!(TokenSource::Flag.hint().contains("--token"));
        assert!(TokenSource::Env.hint().contains("CONVERGIO_ADMIN_TOKEN"));
        let read = TokenSource::DataDir(PathBuf::from("/srv/c/admin-token")).hint();
        assert!(read.contains("/srv/c/admin-token"), "{read}");
        let missing = TokenSource::Missing(PathBuf::from("./.convergio/admin-token")).hint();
        for needed in [
            "--data-dir",
            "CONVERGIO_ADMIN_TOKEN",
            "./.convergio/admin-token",
        ] {
            assert!(missing.contains(needed), "{needed} missing from {missing}");
        }
    }
}
