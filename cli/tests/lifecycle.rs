//! Starting and stopping the real `convergio serve` as an operator would
//! (issue #14): SIGTERM stops an idle server at once and a loaded one without
//! losing an audit record; the data directory is the owner's only; and the
//! example agents keep one identity across restarts.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{admin_get, count_audit, start_logged, Server};

/// What the server printed when its audit queue did not drain.
const DRAIN_WARNING: &str = "did not drain";

/// Generous: a stop must not hang, but this is no timing target.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Sends SIGTERM off the runtime's threads and waits for the exit.
async fn terminate(mut server: Server) -> support::Stopped {
    tokio::task::spawn_blocking(move || {
        let stopped = server.terminate(STOP_DEADLINE);
        stopped.unwrap_or_else(|| panic!("the server did not stop within {STOP_DEADLINE:?}"))
    })
    .await
    .expect("terminate task")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_the_moment_the_server_says_it_listens_still_stops_it_cleanly() {
    // The handler is installed before the listening line: a stop sent at
    // once is a drain and exit 0, never the default action of the signal.
    for _ in 0..3 {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let stderr = data_dir.path().join("stderr.log");
        let server = start_logged(data_dir.path(), &["--no-examples"], &[], &stderr);
        let stopped = terminate(server).await;
        let log = std::fs::read_to_string(&stderr).expect("stderr log");
        assert!(stopped.success, "exit status not 0; stderr: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_server_stops_on_sigterm_without_waiting_for_the_audit_queue() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let stderr = data_dir.path().join("stderr.log");
    let server = start_logged(data_dir.path(), &["--no-examples"], &[], &stderr);
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let stopped = terminate(server).await;
    let log = std::fs::read_to_string(&stderr).expect("stderr log");
    assert!(stopped.success, "exit status not 0; stderr: {log}");
    assert!(
        !log.contains(DRAIN_WARNING),
        "stopped after {:?} with: {log}",
        stopped.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loaded_server_stops_on_sigterm_with_every_answered_decision_audited() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let stderr = data_dir.path().join("stderr.log");
    let server = start_logged(data_dir.path(), &["--no-examples"], &[], &stderr);
    // Every anonymous listing is one audited decision (`discover`).
    let answered = Arc::new(AtomicU64::new(0));
    let url = format!("{}/v1/agents?page_size=1", server.base);
    let mut loaders = Vec::new();
    for _ in 0..16 {
        let answered = answered.clone();
        let url = url.clone();
        loaders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Until the server stops answering.
            while let Ok(response) = client.get(&url).send().await {
                let ok = response.status().is_success();
                if response.bytes().await.is_err() {
                    break;
                }
                assert!(ok, "a listing failed while the server was up");
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // SIGTERM once the load is well under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.load(Ordering::SeqCst) < 300 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = terminate(server).await;
    for loader in loaders {
        loader.await.expect("loader");
    }
    let answered = answered.load(Ordering::SeqCst);
    let log = std::fs::read_to_string(&stderr).expect("stderr log");
    assert!(stopped.success, "exit status not 0; stderr: {log}");
    assert!(!log.contains(DRAIN_WARNING), "{log}");

    // The same data dir again: the chain verifies and holds one record per
    // answered request.
    let stderr = data_dir.path().join("stderr-2.log");
    let server = start_logged(data_dir.path(), &["--no-examples"], &[], &stderr);
    let (status, verified) = admin_get(&server, data_dir.path(), "/v1/audit:verify").await;
    assert_eq!(status, 200, "{verified}");
    let recorded = count_audit(&server, data_dir.path(), "anonymous", "discover").await;
    assert_eq!(
        recorded, answered,
        "{answered} answered listings, {recorded} audit records; chain: {verified}"
    );
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// The data dir is 0700 and every file in it 0600.
#[cfg(unix)]
fn assert_private(data_dir: &Path) {
    assert_eq!(mode_of(data_dir), 0o700, "{}", data_dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        assert_eq!(mode_of(&path), 0o600, "{}", path.display());
        files.push(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    for expected in [
        "convergio.db",
        "convergio.db-wal",
        "convergio.db-shm",
        "admin-token",
    ] {
        assert!(
            files.iter().any(|file| file == expected),
            "{expected} missing from {files:?}"
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_and_its_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = tempfile::tempdir().expect("temp dir");
    let data_dir = scratch.path().join("data");
    let stderr = scratch.path().join("stderr.log");
    let server = start_logged(&data_dir, &["--no-examples"], &[], &stderr);
    // A write or two (audited listings) while it runs.
    let (status, _) = admin_get(&server, &data_dir, "/v1/agents").await;
    assert_eq!(status, 200);
    assert_private(&data_dir);
    assert!(terminate(server).await.success);

    // A data dir an older version left readable: tightened at start.
    let loose = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    loose(&data_dir, 0o755);
    for entry in std::fs::read_dir(&data_dir).expect("data dir") {
        loose(&entry.expect("entry").path(), 0o644);
    }
    let server = start_logged(&data_dir, &["--no-examples"], &[], &stderr);
    let (status, _) = admin_get(&server, &data_dir, "/v1/agents").await;
    assert_eq!(status, 200);
    assert_private(&data_dir);
    let log = std::fs::read_to_string(&stderr).expect("stderr log");
    assert!(
        log.contains("tightened"),
        "no warning about the loose data dir: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn example_agents_keep_one_identity_across_restarts() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let stderr = data_dir.path().join("stderr.log");
    let versions = |body: &Value| body["versions"].as_array().map_or(0, Vec::len);
    let server = start_logged(data_dir.path(), &[], &[], &stderr);
    let (status, first) = admin_get(&server, data_dir.path(), "/v1/agents/echo/versions").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(versions(&first), 1, "{first}");
    assert!(terminate(server).await.success);

    for restart in 1..=2 {
        let server = start_logged(data_dir.path(), &[], &[], &stderr);
        let (status, body) = admin_get(&server, data_dir.path(), "/v1/agents/echo/versions").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(versions(&body), 1, "restart {restart}: {body}");
        // Reachable at its new address through the gateway.
        let reply: Value = reqwest::Client::new()
            .post(format!("{}/agents/echo", server.base))
            .header("A2A-Version", "1.0")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
                "message": {"messageId": format!("m{restart}"), "role": "ROLE_USER",
                    "parts": [{"text": "hello again"}]}}}),
            )
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(
            reply["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED",
            "restart {restart}: {reply}"
        );
        assert!(terminate(server).await.success);
    }
}
