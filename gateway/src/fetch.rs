//! Bounded reads of what the gateway fetches itself with reqwest (a JWKS, a
//! peer's listing or catalogue page): the body is read chunk by chunk and
//! refused once it passes a limit, so a hostile or broken server cannot make
//! the gateway buffer an unbounded answer. A failure is a [`FetchError`]
//! that keeps reqwest's error as its source; callers that report it as a
//! message (a peer's sync or JWKS status) write it with [`error_chain`].

/// Why fetching a document, or reading its body, failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed, or the server answered an error status.
    #[error("fetching {what}")]
    Request {
        /// What was fetched.
        what: &'static str,
        /// The transport error or the error status.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed while the body was read.
    #[error("reading the answer")]
    Read(#[source] reqwest::Error),
    /// The body is longer than the caller reads.
    #[error("answered more than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Reads at most `limit` bytes of `response`'s body.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(FetchError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs a JWKS document, at most `limit` bytes, from a server that must
/// answer 2xx.
pub(crate) async fn jwks(
    http: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|source| FetchError::Request {
            what: "the jwks",
            source,
        })?;
    read_limited(response, limit).await
}

/// An error and its sources on one line (`error sending request for url
/// (…): client error (Connect): tcp connect error: Connection refused (os
/// error 111)`): the top error alone rarely says what happened.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
