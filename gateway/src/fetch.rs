//! Bounded reads of what the gateway fetches itself with reqwest (a JWKS, a
//! peer's listing or catalogue page): the body is read chunk by chunk and
//! refused once it passes a limit, so a hostile or broken server cannot make
//! the gateway buffer an unbounded answer.

/// Reads at most `limit` bytes of `response`'s body.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(format!("answered more than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("reading the answer: {error}"))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("answered more than {limit} bytes"));
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
) -> Result<Vec<u8>, String> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| format!("fetching the jwks: {}", error_chain(&error)))?;
    read_limited(response, limit)
        .await
        .map_err(|error| format!("the jwks {error}"))
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
