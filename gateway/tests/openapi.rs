//! The OpenAPI document against the routers (issue 22): every `/v1/…` route
//! the code mounts is documented with its method, and every documented
//! operation is routed. axum cannot list a router's routes, so the routes
//! are read from the routers' source, the one place they are written: each
//! `.route("/v1/…", get(…).post(…))` of the crates that serve REST.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use convergio_gateway::openapi::{document, MountedApis};
use serde_json::Value;

/// The files that build routers, relative to the workspace root.
const ROUTER_DIRS: &[&str] = &["gateway/src", "registry/src", "policy/src"];

/// Path constants used in `.route(…)` calls, with their values.
const PATH_CONSTANTS: &[(&str, &str)] = &[("OPENAPI_PATH", "/v1/openapi.json")];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The text between the parenthesis opening at `start` and its match.
fn balanced(text: &str, start: usize) -> &str {
    let mut depth = 0usize;
    for (offset, ch) in text[start..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start + 1..start + offset];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced .route( call")
}

/// The `(METHOD, path)` pairs one `.route(…)` argument list routes.
fn routes_of(arguments: &str) -> Vec<(String, String)> {
    let arguments = arguments.trim_start();
    let (path, rest) = if let Some(quoted) = arguments.strip_prefix('"') {
        let end = quoted.find('"').expect("closing quote");
        (quoted[..end].to_owned(), &quoted[end + 1..])
    } else {
        let end = arguments.find(',').expect("path, then method router");
        let name = arguments[..end].trim();
        let name = name.rsplit("::").next().unwrap_or(name);
        let value = PATH_CONSTANTS
            .iter()
            .find(|(constant, _)| *constant == name)
            .map_or(name, |(_, value)| *value);
        (value.to_owned(), &arguments[end..])
    };
    let mut routes = Vec::new();
    for method in ["get", "post", "put", "delete", "patch", "any"] {
        let needle = format!("{method}(");
        let mut from = 0;
        while let Some(found) = rest[from..].find(&needle) {
            let at = from + found;
            let before = rest[..at].chars().last().unwrap_or(' ');
            if !(before.is_alphanumeric() || before == '_') {
                routes.push((method.to_uppercase(), path.clone()));
            }
            from = at + needle.len();
        }
    }
    routes
}

fn routed() -> BTreeSet<(String, String)> {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ROUTER_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let mut from = 0;
        while let Some(found) = text[from..].find(".route(") {
            let open = from + found + ".route".len();
            for (method, path) in routes_of(balanced(&text, open)) {
                if path.starts_with("/v1/") {
                    routes.insert((method, path));
                }
            }
            from = open;
        }
    }
    routes
}

fn documented() -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(document(MountedApis::ALL)).expect("document JSON");
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options" | "trace"
            ) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn every_routed_v1_operation_is_documented_and_every_documented_one_is_routed() {
    let routed = routed();
    let documented = documented();
    assert!(
        routed.len() > 50,
        "the source scan found too few routes: {routed:?}"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not documented: {undocumented:?}\ndocumented but not routed: {unrouted:?}"
    );
}

#[test]
fn every_operation_has_an_id_problem_responses_and_security() {
    let document = serde_json::to_value(document(MountedApis::ALL)).expect("document JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "{id} is not unique");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} has no success response"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
            for status in ["401", "403", "500"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    let problem = &document["components"]["schemas"]["Problem"];
    let required: Vec<&str> = problem["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in ["type", "title", "status", "detail", "kind"] {
        assert!(required.contains(&field), "Problem requires {field}");
    }
}

#[test]
fn a_gateway_documents_only_the_apis_it_mounts() {
    let bare = MountedApis {
        federation: false,
        api_keys: false,
        model_agents: false,
        graph_agents: false,
        plugins: false,
        secrets: false,
        memory: false,
        policy: false,
        push: false,
    };
    let document = serde_json::to_value(document(bare)).expect("document JSON");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/v1/agents"));
    assert!(paths.contains_key("/v1/runs"));
    assert!(paths.contains_key("/v1/openapi.json"));
    assert!(!paths.keys().any(|path| path.starts_with("/v1/memory")));
    assert!(!paths.keys().any(|path| path.starts_with("/v1/peers")));
    assert!(!paths.keys().any(|path| path.contains("push-deliveries")));
}
