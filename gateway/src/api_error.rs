//! The refusal of a graph, run or plan API request (`runs_api.rs`,
//! `plans_api.rs`): a problem document rendered by `convergio_schemas`'
//! one REST renderer, with the request id added by [`respond`]. Each API
//! converts its own crate's errors into it (`From` impls beside them).
//! Also the paging both APIs' listings share ([`page`]).

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use convergio_schemas::problem::{self, Problem};
use convergio_schemas::ErrorKind;

use uuid::Uuid;

use crate::layers::RequestId;

/// A refused request, rendered as a problem document.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) problem: Box<Problem>,
}

// === impl ApiError ===

impl ApiError {
    /// A refusal of `kind` saying `detail`.
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self::from_problem(Problem::new(kind, detail))
    }

    /// A refusal rendering `problem`.
    pub(crate) fn from_problem(problem: Problem) -> Self {
        Self {
            problem: Box::new(problem),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem::http::respond(&self.problem, HeaderMap::new())
    }
}

/// The answer to a request whose handler came to `outcome`; a refusal
/// names `request_id`.
pub(crate) fn respond(
    outcome: Result<Response, ApiError>,
    request_id: Option<RequestId>,
) -> Response {
    match outcome {
        Ok(response) => response,
        Err(mut error) => {
            error.problem.request_id = request_id.map(|id| id.as_str().to_owned());
            error.into_response()
        }
    }
}

/// A listing's page size (default 50, 1 to 500) and cursor (the id of the
/// previous page's last item; ids are UUIDv7, so id order is time order).
pub(crate) fn page(
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<(u32, Option<Uuid>), ApiError> {
    let page_size = page_size.unwrap_or(50);
    if !(1..=500).contains(&page_size) {
        return Err(ApiError::new(
            ErrorKind::InvalidInput,
            "page_size is 1 to 500",
        ));
    }
    let before = page_token
        .map(|token| {
            Uuid::parse_str(&token).map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidInput,
                    "page_token is not one this server gave",
                )
            })
        })
        .transpose()?;
    Ok((page_size, before))
}
