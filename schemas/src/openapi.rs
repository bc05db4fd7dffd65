//! What every OpenAPI document of a Convergio REST surface shares: the
//! problem schema and its responses, and the security schemes.
//!
//! Each API module describes its routes with `#[utoipa::path]` on the
//! handlers and lists only its own failures (`(status = 404, description =
//! "…")`, no body). [`finish`] then gives every failure response the
//! `application/problem+json` [`Problem`] body, adds the failures any
//! request can meet on its way through the gateway's layers (bad or missing
//! credentials, limits, overload, an internal error), and declares the
//! credentials the gateway accepts. So the problem shape is written once.

use std::collections::BTreeMap;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, Content, OpenApi, PathItem, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::problem::PROBLEM_JSON;
use crate::{ErrorKind, Problem, Violation};

/// The security scheme of `Authorization: Bearer …`: a JWT, or the
/// bootstrap admin token.
pub const BEARER: &str = "bearer";
/// The security scheme of `X-API-Key: cvg_…`.
pub const API_KEY: &str = "apiKey";
/// The security scheme of a TLS client certificate.
pub const MUTUAL_TLS: &str = "mutualTLS";

/// The failures any request under `/v1/` can meet before or after its
/// handler, whatever the route: a malformed request, no or bad credentials,
/// a refusal, the limits (slow client, body, target and header size, rate
/// and concurrency), an internal failure and overload or draining.
pub const LAYER_FAILURES: [u16; 10] = [400, 401, 403, 408, 413, 414, 429, 431, 500, 503];

/// Completes `document`: problem bodies on every failure response, the
/// [`LAYER_FAILURES`] on every operation, the problem schemas and the
/// security schemes, required by every operation that does not say
/// otherwise (a public operation says `security(())`).
pub fn finish(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations(item) {
            complete_operation(operation);
        }
    }
    let components = document.components.get_or_insert_with(Components::new);
    for (name, schema) in [
        (Problem::name(), Problem::schema()),
        (Violation::name(), Violation::schema()),
        (ErrorKind::name(), ErrorKind::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT from a configured issuer, or the bootstrap admin token \
                     (CONVERGIO_ADMIN_TOKEN).",
                ))
                .build(),
        ),
    );
    components.security_schemes.insert(
        API_KEY.to_owned(),
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An API key issued by POST /v1/api-keys (`cvg_…`).",
        ))),
    );
    components.security_schemes.insert(
        MUTUAL_TLS.to_owned(),
        SecurityScheme::MutualTls {
            description: Some("A client certificate from a trusted CA, when TLS is on.".to_owned()),
            extensions: None,
        },
    );
    let none: [&str; 0] = [];
    document.security = Some(vec![
        SecurityRequirement::new(BEARER, none),
        SecurityRequirement::new(API_KEY, none),
        SecurityRequirement::new(MUTUAL_TLS, none),
    ]);
}

/// Every operation of a path item.
pub fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete_operation(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for status in LAYER_FAILURES {
        responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(ResponseBuilder::new().description(reason(status)).build())
        });
    }
    for (status, response) in responses.iter_mut() {
        let failure = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (failure, response) {
            give_problem_body(response);
        }
    }
    // Keep the statuses in order for readers of the document.
    let sorted: BTreeMap<String, RefOr<Response>> = std::mem::take(responses).into_iter().collect();
    responses.extend(sorted);
}

fn give_problem_body(response: &mut Response) {
    if response.content.is_empty() {
        response.content.insert(
            PROBLEM_JSON.to_owned(),
            Content::new(Some(Ref::from_schema_name(Problem::name()))),
        );
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "the request is malformed or breaks a rule",
        401 => "no credentials, or credentials that do not verify",
        403 => "the caller may not do this",
        404 => "no such resource, or the caller may not know it",
        408 => "the client took too long to send its request",
        409 => "a conflict with the current state",
        412 => "the If-Match precondition did not hold",
        413 => "the body is over the configured limit",
        414 => "the request target is too long",
        415 => "the content type is not one this route accepts",
        429 => "a rate limit or quota was hit; retry later",
        431 => "the request headers are over the configured limit",
        500 => "an internal failure; the detail is in the server log under the request id",
        503 => "overloaded, draining or a dependency is down; retry later",
        _ => "a failure",
    }
}
