//! Every REST operation the server documents has a CLI command (issue 22:
//! "every REST route is reachable from the CLI"): the operations of
//! `/v1/openapi.json` on a real `convergio serve` are compared with the
//! table below, both ways, and every command in it exists (`--help`).

mod support;

use std::collections::BTreeSet;

use support::{admin_get, cli, start};

/// `(method, path as documented, the command that calls it)`. An action on
/// a resource (`/v1/runs/{id}:cancel`) is the POST of that resource.
const COVERED: &[(&str, &str, &str)] = &[
    ("get", "/v1/agents", "agents list"),
    ("post", "/v1/agents", "agents register"),
    ("get", "/v1/agents/{id}", "agents show"),
    ("put", "/v1/agents/{id}", "agents update"),
    ("delete", "/v1/agents/{id}", "agents deregister"),
    ("get", "/v1/agents/{id}/versions", "agents versions"),
    ("get", "/v1/agents/{id}/trust", "agents trust history"),
    ("put", "/v1/agents/{id}/trust", "agents trust set"),
    ("get", "/v1/api-keys", "keys list"),
    ("post", "/v1/api-keys", "keys issue"),
    ("delete", "/v1/api-keys/{id}", "keys revoke"),
    ("get", "/v1/peers", "peers list"),
    ("post", "/v1/peers", "peers add"),
    ("get", "/v1/peers/{domain}", "peers show"),
    ("post", "/v1/peers/{domain}", "peers sync"),
    ("delete", "/v1/peers/{domain}", "peers remove"),
    ("post", "/v1/peers/{domain}/approve", "peers approve"),
    ("post", "/v1/peers/{domain}/refresh", "peers refresh"),
    ("get", "/v1/graph-agents", "graph agents"),
    ("get", "/v1/graph-agents/{name}", "graph agent"),
    ("put", "/v1/graph-agents/{name}", "graph publish"),
    ("delete", "/v1/graph-agents/{name}", "graph unpublish"),
    ("get", "/v1/plugins", "plugins list"),
    ("get", "/v1/plugins/{name}", "plugins show"),
    ("post", "/v1/plugins/{name}", "plugins add"),
    ("delete", "/v1/plugins/{name}", "plugins remove"),
    (
        "get",
        "/v1/plugins/{name}/versions/{version}",
        "plugins download",
    ),
    ("get", "/v1/model-agents", "agents model list"),
    ("get", "/v1/model-agents/{name}", "agents model show"),
    ("put", "/v1/model-agents/{name}", "agents apply"),
    ("delete", "/v1/model-agents/{name}", "agents model delete"),
    ("get", "/v1/secrets", "secrets list"),
    ("put", "/v1/secrets/{name}", "secrets set"),
    ("delete", "/v1/secrets/{name}", "secrets delete"),
    ("get", "/v1/memory", "memory list"),
    ("get", "/v1/memory/{namespace}", "memory show"),
    ("put", "/v1/memory/{namespace}", "memory create"),
    ("delete", "/v1/memory/{namespace}", "memory delete"),
    ("post", "/v1/memory/{namespace}", "memory search"),
    ("get", "/v1/memory/{namespace}/items", "memory items"),
    ("get", "/v1/memory/{namespace}/items/{key}", "memory get"),
    ("put", "/v1/memory/{namespace}/items/{key}", "memory put"),
    (
        "delete",
        "/v1/memory/{namespace}/items/{key}",
        "memory forget",
    ),
    ("post", "/v1/graphs", "graph store"),
    ("get", "/v1/graphs", "graph stored"),
    ("post", "/v1/graphs:validate", "graph validate"),
    ("get", "/v1/graphs/{name}", "graph show"),
    ("post", "/v1/runs", "graph run"),
    ("get", "/v1/runs", "graph list"),
    ("get", "/v1/runs/{id}", "graph status"),
    ("post", "/v1/runs/{id}", "graph cancel"),
    ("get", "/v1/runs/{id}/result", "graph result"),
    ("get", "/v1/runs/{id}/trace", "graph trace"),
    ("get", "/v1/runs/{id}/events", "graph events"),
    ("get", "/v1/runs/{id}/checkpoints", "graph checkpoints"),
    ("post", "/v1/runs/{id}/checkpoints", "graph checkpoints"),
    ("post", "/v1/plans", "plan"),
    ("get", "/v1/plans", "plans list"),
    ("get", "/v1/plans/{id}", "plans show"),
    ("post", "/v1/plans/{id}", "plans execute"),
    ("get", "/v1/policies", "policy show"),
    ("put", "/v1/policies", "policy apply"),
    ("delete", "/v1/policies", "policy reset"),
    ("get", "/v1/policies/{version}", "policy show"),
    ("post", "/v1/policies:rollback", "policy rollback"),
    ("post", "/v1/policies:check", "policy check"),
    ("get", "/v1/audit", "audit list"),
    ("get", "/v1/audit:verify", "audit verify"),
    ("post", "/v1/envelope", "envelope"),
    (
        "get",
        "/v1/tasks/{task_id}/push-deliveries",
        "tasks deliveries",
    ),
    ("get", "/v1/openapi.json", "openapi"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_rest_operation_has_a_cli_command() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = start(data_dir.path());
    let (status, document) = admin_get(&server, data_dir.path(), "/v1/openapi.json").await;
    assert_eq!(status, 200, "{document}");
    let methods = ["get", "put", "post", "delete", "patch"];
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| ((*method).to_owned(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let covered: BTreeSet<(String, String)> = COVERED
        .iter()
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "documented without a CLI command: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "in the table but not documented: {stale:?}"
    );

    let commands: BTreeSet<&str> = COVERED.iter().map(|(_, _, command)| *command).collect();
    for command in commands {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let (ok, _, err) = cli(None, &args);
        assert!(ok, "`convergio {command}` is not a command: {err}");
    }
}
