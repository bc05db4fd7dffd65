//! The HTTP client behind every client subcommand: one place that reaches
//! the server, attaches the admin token, and turns problem+json answers into
//! readable errors (and a non-zero exit).

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A client for one Convergio server.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
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
        let token = token.or_else(|| {
            std::fs::read_to_string(data_dir.join("admin-token"))
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
        });
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
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
            bail!(
                "{method} {path} failed: {}",
                describe_problem(status, &body)
            );
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
        bail!("{what} failed: {}", describe_problem(status, &body))
    }
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
