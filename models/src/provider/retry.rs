//! Sending a request head with bounded retries: 429 and 5xx answers and
//! refused connections are retried with exponential backoff, honouring the
//! provider's `Retry-After` (seconds or an HTTP date, capped at
//! `max_backoff`); 401/403 become [`ProviderError::KeyRefused`] naming the
//! key's reference; other answers are not retried.
//!
//! Hand-written rather than a backoff crate: the rule is eight lines, and
//! the wait must come from the provider's answer, which generic retry
//! crates do not read.

use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::ClientSettings;
use crate::error::ProviderError;
use crate::key::ApiKey;

/// The most of a provider's error body kept in an error message.
const MESSAGE_LIMIT: usize = 300;

/// What one call needs to send its head.
pub(super) struct Attempts<'a> {
    pub base_url: &'a str,
    pub key: &'a ApiKey,
    pub settings: &'a ClientSettings,
    /// The whole call's deadline.
    pub deadline: Instant,
    /// A streamed answer's head comes at once, so waiting for it is bounded
    /// by the idle timeout; a whole answer's head comes at its end.
    pub stream: bool,
}

// === impl Attempts ===

impl Attempts<'_> {
    fn timeout_error(&self) -> ProviderError {
        ProviderError::Timeout {
            seconds: self.settings.call_timeout.as_secs_f64(),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .settings
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        doubled.min(self.settings.max_backoff)
    }

    /// Sends the request `build` makes (once per attempt) and returns the
    /// first successful answer.
    pub async fn send(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ProviderError> {
        let max_attempts = self.settings.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head_deadline = if self.stream {
                self.deadline
                    .min(Instant::now() + self.settings.idle_timeout)
            } else {
                self.deadline
            };
            let sent = match tokio::time::timeout_at(head_deadline, build().send()).await {
                Ok(sent) => sent,
                Err(_) if head_deadline < self.deadline => {
                    return Err(ProviderError::Idle {
                        seconds: self.settings.idle_timeout.as_secs_f64(),
                    })
                }
                Err(_) => return Err(self.timeout_error()),
            };
            let response = match sent {
                Ok(response) => response,
                Err(source) if source.is_connect() && attempt < max_attempts => {
                    tracing::debug!(
                        attempt,
                        base_url = self.base_url,
                        "provider connection refused; retrying"
                    );
                    self.wait(self.backoff(attempt)).await?;
                    continue;
                }
                Err(source) if source.is_connect() => {
                    return Err(ProviderError::Connect {
                        base_url: self.base_url.to_owned(),
                        source,
                    })
                }
                Err(source) => return Err(ProviderError::Read { source }),
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(ProviderError::KeyRefused {
                    key_reference: self.key.reference().to_owned(),
                    status: status.as_u16(),
                });
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < max_attempts {
                let wait = retry_after(&response)
                    .map(|wait| wait.min(self.settings.max_backoff))
                    .unwrap_or_else(|| self.backoff(attempt));
                tracing::debug!(
                    attempt,
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "provider asked to retry"
                );
                drop(response);
                self.wait(wait).await?;
                continue;
            }
            let message = self.error_message(response).await;
            return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                ProviderError::RateLimited {
                    attempts: attempt,
                    message,
                }
            } else if status.is_server_error() {
                ProviderError::Unavailable {
                    status: status.as_u16(),
                    attempts: attempt,
                    message,
                }
            } else {
                ProviderError::Rejected {
                    status: status.as_u16(),
                    message,
                }
            });
        }
    }

    /// Sleeps `wait`, unless that would pass the deadline.
    async fn wait(&self, wait: Duration) -> Result<(), ProviderError> {
        if Instant::now() + wait >= self.deadline {
            return Err(self.timeout_error());
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The provider's error message (`error.message`, or the body's text),
    /// bounded and with the key scrubbed out.
    async fn error_message(&self, response: Response) -> String {
        let read_by = self
            .deadline
            .min(Instant::now() + self.settings.idle_timeout);
        let text = match tokio::time::timeout_at(read_by, response.text()).await {
            Ok(Ok(text)) => text,
            _ => return String::from("(no readable error body)"),
        };
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|body| {
                body.pointer("/error/message")
                    .or_else(|| body.get("error"))
                    .or_else(|| body.get("message"))
                    .map(|message| match message {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
            })
            .unwrap_or(text);
        let mut message = self.key.scrub(&message);
        if message.chars().count() > MESSAGE_LIMIT {
            message = message.chars().take(MESSAGE_LIMIT).collect::<String>() + "…";
        }
        message
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, SystemTime::now())
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_after_as_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        let check = |value: &str, expected: Option<Duration>| {
            assert_eq!(parse_retry_after(value, now), expected, "{value}");
        };
        check("2", Some(Duration::from_secs(2)));
        check("0.5", Some(Duration::from_millis(500)));
        check(
            "Wed, 21 Oct 2015 07:28:07 GMT",
            Some(Duration::from_secs(7)),
        );
        check("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO));
        check("soon", None);
        check("-1", None);
    }
}
