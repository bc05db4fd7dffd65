//! Shared harness of the cli end-to-end tests: the real `convergio serve`
//! on a loopback port, started on a data dir and killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_convergio");

/// A running `convergio serve`, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, read from the start-up line.
    pub base: String,
    /// Kept open so the server's later start-up lines have a reader.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no shutdown, no drain) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a run (`POST /v1/runs` with `body`, whose mode should be
/// `async`) as `token`, then polls it until it is neither pending nor
/// running (a minute at most): the run's final summary.
pub async fn run_to_end(
    server: &Server,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let accepted: serde_json::Value = client
        .post(format!("{}/v1/runs", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the run starts")
        .json()
        .await
        .expect("json");
    let run_id = accepted["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run id: {accepted}"))
        .to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let summary: serde_json::Value = client
            .get(format!("{}/v1/runs/{run_id}", server.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the run is read")
            .json()
            .await
            .expect("json");
        if summary["status"] != "running" && summary["status"] != "pending" {
            return summary;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never ended: {summary}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A GET of `path` as the administrator: status and JSON body.
pub async fn admin_get(server: &Server, data_dir: &Path, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .bearer_auth(admin_token(data_dir))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// Counts the audit records of `principal` doing `action`, page by page.
pub async fn count_audit(server: &Server, data_dir: &Path, principal: &str, action: &str) -> u64 {
    let mut count = 0;
    let mut after: Option<i64> = None;
    loop {
        let mut path = format!("/v1/audit?principal={principal}&action={action}&limit=500");
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        let (status, page) = admin_get(server, data_dir, &path).await;
        assert_eq!(status, 200, "{page}");
        let records = page["records"].as_array().expect("records");
        count += records.len() as u64;
        match page["next"].as_i64() {
            Some(next) if !records.is_empty() => after = Some(next),
            _ => return count,
        }
    }
}

/// Waits (up to 10 s: the audit queue writes in the background) until an
/// audit record of `principal` matches `wanted`, and returns it.
pub async fn until_audited(
    server: &Server,
    data_dir: &Path,
    principal: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, page) = admin_get(
            server,
            data_dir,
            &format!("/v1/audit?principal={principal}&limit=500"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let records = page["records"].as_array().cloned().unwrap_or_default();
        if let Some(record) = records.iter().find(|record| wanted(record)) {
            return record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no matching audit record of {principal}: {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The admin token `convergio serve` stored in `data_dir`.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("admin token stored")
        .trim()
        .to_owned()
}

/// Starts `convergio serve` on `data_dir` with a port the kernel picks.
/// Upstreams on loopback are allow-listed explicitly (the example cards
/// point at 127.0.0.1), as the SSRF guard refuses them by default.
pub fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// [`start`] with extra `CONVERGIO_*` environment settings. Upstreams on
/// loopback are allow-listed explicitly (`CONVERGIO_NETWORK_ALLOW_CIDRS`
/// 127.0.0.0/8 and ::1: test agents run there, and the SSRF guard refuses them by
/// default); pass that key with an empty value for no allow-list.
pub fn start_with(data_dir: &Path, environment: &[(&str, &str)]) -> Server {
    launch(data_dir, &[], environment, Stdio::null())
}

/// Runs `convergio <args>` (with `--server`/`--data-dir` when a server is
/// given): whether it succeeded, its stdout and its stderr.
pub fn cli(server: Option<(&Server, &Path)>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(BINARY);
    command.args(args).env_remove("CONVERGIO_ADMIN_TOKEN");
    if let Some((server, data_dir)) = server {
        command
            .args(["--server", &server.base, "--data-dir"])
            .arg(data_dir);
    }
    let output = command.output().expect("the CLI runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// How a server stopped by [`Server::terminate`] ended.
pub struct Stopped {
    /// Whether it exited with status 0.
    pub success: bool,
    /// How long it took from SIGTERM to exit.
    pub took: std::time::Duration,
}

impl Server {
    /// Sends SIGTERM (through `kill`, as a container runtime would) and waits
    /// for the process to exit; `None` if it is still running after
    /// `deadline` (it is then killed by `Drop`).
    pub fn terminate(&mut self, deadline: std::time::Duration) -> Option<Stopped> {
        let sent = std::time::Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        loop {
            if let Some(exit) = self.child.try_wait().expect("the server's status") {
                return Some(Stopped {
                    success: exit.success(),
                    took: sent.elapsed(),
                });
            }
            if sent.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Server {
    /// Sends SIGHUP (through `kill`, as an operator would): reload.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -HUP failed");
    }
}

/// [`start_with`] with extra `serve` flags and the server's stderr written
/// to `stderr` (a file, so a chatty server never blocks on a full pipe).
pub fn start_logged(
    data_dir: &Path,
    flags: &[&str],
    environment: &[(&str, &str)],
    stderr: &Path,
) -> Server {
    let log = std::fs::File::create(stderr).expect("stderr log file");
    launch(data_dir, flags, environment, Stdio::from(log))
}

/// Spawns `convergio serve` with `flags` and `environment` (after the
/// loopback allow-list, so a test may override it) and waits for the line
/// naming the bound address: that waits for start-up without sleeping, and
/// ends (EOF) if the process dies.
fn launch(data_dir: &Path, flags: &[&str], environment: &[(&str, &str)], stderr: Stdio) -> Server {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .env("CONVERGIO_LOG", "warn")
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .env_remove("CONVERGIO_DATABASE_URL")
        .env("CONVERGIO_NETWORK_ALLOW_CIDRS", "127.0.0.0/8,::1");
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("convergio starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    reader
        .read_line(&mut first)
        .expect("reads the start-up line");
    let base = first
        .trim()
        .strip_prefix("convergio listening on ")
        .unwrap_or_else(|| panic!("unexpected start-up line {first:?}"))
        .to_owned();
    Server {
        child,
        base,
        _stdout: reader,
    }
}

/// `convergio keys issue` for `subject` of `org` with `scopes`: the key.
pub fn issue_key(
    server: &Server,
    data_dir: &Path,
    subject: &str,
    org: &str,
    scopes: &[&str],
) -> String {
    let mut args = vec![
        "keys",
        "issue",
        "--subject",
        subject,
        "--org",
        org,
        "--json",
    ];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let (ok, stdout, stderr) = cli(Some((server, data_dir)), &args);
    assert!(ok, "{stdout}\n{stderr}");
    let issued: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    issued["key"].as_str().expect("the key, once").to_owned()
}

/// `convergio secrets set NAME` with `value` on stdin (never echoed).
pub fn set_secret(server: &Server, data_dir: &Path, name: &str, value: &str) {
    let mut child = std::process::Command::new(BINARY)
        .args([
            "secrets",
            "set",
            name,
            "--server",
            &server.base,
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("CONVERGIO_ADMIN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the CLI runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{value}\n").as_bytes())
        .expect("writes the secret");
    let output = child.wait_with_output().expect("the CLI ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(value) && !stderr.contains(value));
}
