//! The web console (issue 23): plain HTML, ES modules and CSS written by
//! hand under `gateway/console/`, embedded in the binary with
//! `include_str!` and served at `/console/`. There is no front-end build
//! step, so `cargo build` stays the only build and the console works
//! offline (no CDN, nothing fetched at run time).
//!
//! The console is a client of the public REST and SSE APIs only: the pages
//! are public (the `Authenticate` layer lets `/console` through without
//! credentials, see [`crate::layers::is_public_path`]) and every call they
//! make carries the credential the user signed in with (admin token, API key
//! or JWT as `Authorization: Bearer`), kept in the tab's session storage, so
//! the console shows exactly what those credentials allow.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and connections from this origin only, no inline code, no framing),
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates
//! cheaply and always runs the assets of the binary it talks to.

use std::hash::Hasher as _;
use std::sync::LazyLock;

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use convergio_schemas::problem;
use convergio_schemas::{ErrorKind, Problem};

/// The URL prefix the console is served under.
pub const CONSOLE_PATH: &str = "/console";

/// The policy every console answer carries: only this origin's scripts,
/// styles and connections; no inline script or style, no plugins, no
/// framing, no `<base>` tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: its path under `/console/`, media type and text.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path below `/console/` (`index.html`, `js/app.js`).
    pub path: &'static str,
    /// The `Content-Type` it is served with.
    pub media_type: &'static str,
    /// The file's bytes.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $media:expr) => {
        Asset {
            path: $path,
            media_type: $media,
            body: include_str!(concat!("../console/", $path)),
        }
    };
}

/// Every file of `gateway/console/` but its README (a unit test keeps this
/// list and the directory equal).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("console.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/diff.js", JS),
    asset!("js/layout.js", JS),
    asset!("js/pages/agents.js", JS),
    asset!("js/pages/runs.js", JS),
    asset!("js/pages/plans.js", JS),
    asset!("js/pages/memory.js", JS),
    asset!("js/pages/audit.js", JS),
    asset!("js/pages/policies.js", JS),
    asset!("js/pages/peers.js", JS),
];

/// The entity tag of every asset, computed once: `DefaultHasher::new` has
/// fixed keys, so one build always tags its assets alike.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let mut hasher = std::hash::DefaultHasher::new();
            hasher.write(asset.body.as_bytes());
            format!("\"c-{:016x}-{:x}\"", hasher.finish(), asset.body.len())
        })
        .collect()
});

/// The console's routes: `/console` (redirect), `/console/` (the page) and
/// `/console/{*path}` (its scripts and styles).
pub fn console_router() -> Router {
    Router::new()
        .route(
            CONSOLE_PATH,
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { serve_asset("index.html", &headers) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, request: Request| async move {
                serve_asset(&path, request.headers())
            }),
        )
}

fn serve_asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.path == path) else {
        let problem = Problem::new(ErrorKind::NotFound, "no such console file");
        let mut response = problem::http::respond(&problem, HeaderMap::new());
        secure(response.headers_mut());
        return response;
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .any(|candidate| candidate.trim().trim_start_matches("W/") == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (StatusCode::OK, asset.body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.media_type),
        );
        response
    };
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    secure(response.headers_mut());
    response
}

/// The headers every console answer carries (see the module docs).
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("console dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}{name}");
            if entry.path().is_dir() {
                files(&entry.path(), &format!("{path}/"), out);
            } else if name != "README.md" {
                out.push(path);
            }
        }
    }

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_end = rest
                .find(|c: char| !c.is_ascii_lowercase())
                .unwrap_or(rest.len());
            name_end > 0 && rest[name_end..].starts_with('=')
        })
    }

    #[test]
    fn every_console_file_is_embedded_and_every_embedded_file_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        files(&root, "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn no_asset_holds_inline_script_or_style() {
        for asset in ASSETS {
            if asset.media_type == HTML {
                assert!(!asset.body.contains("<script>"), "{}", asset.path);
                assert!(!asset.body.contains("style="), "{}", asset.path);
                assert!(!asset.body.contains("<style"), "{}", asset.path);
                assert!(
                    !has_inline_handler(asset.body),
                    "{}: inline handler",
                    asset.path
                );
            }
        }
    }

    #[tokio::test]
    async fn assets_carry_their_type_the_policy_and_revalidate_by_etag() {
        let empty = HeaderMap::new();
        let page = serve_asset("index.html", &empty);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], HTML);
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let etag = page.headers()[header::ETAG].clone();
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve_asset("index.html", &conditional).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve_asset("js/app.js", &empty).headers()[header::CONTENT_TYPE],
            JS
        );
        let missing = serve_asset("../Cargo.toml", &empty);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
