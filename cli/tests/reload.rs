//! Hot reload on the real `convergio serve` (issue 22): a certificate
//! swapped on disk is served to the next handshake without a restart while
//! a connection opened before keeps working, and a client CA replaced on
//! disk decides the next handshake; SIGHUP applies a new SSRF allow-list,
//! an upstream token file rotated in place and new quotas; an invalid new
//! configuration is refused whole (old certificate still served, its valid
//! allow-list change not applied, the refusal counted in `/metrics`).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convergio_agents::{ExampleAgent, GateToken, RunningAgent, ServeOptions};
use convergio_tests::tls::read;
use serde_json::json;
use support::{admin_token, start_logged, Server};

/// A client trusting the test CA that reports the server's certificate.
fn tls_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_info(true)
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).expect("ca pem"))
        .build()
        .expect("client")
}

/// The DER of the first certificate in the PEM fixture `name`.
fn leaf_der(name: &str) -> Vec<u8> {
    let pem = String::from_utf8(read(name)).expect("utf-8 pem");
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

/// `GET /healthz` with `client`: the certificate the server presented on
/// the connection that answered.
async fn served_certificate(client: &reqwest::Client, server: &Server) -> Vec<u8> {
    let response = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("health over tls");
    assert_eq!(response.status(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the server's certificate")
        .to_vec()
}

/// The value of the series `convergio_config_reloads_total{result="…"}`.
async fn reloads(client: &reqwest::Client, server: &Server, dir: &Path, result: &str) -> u64 {
    let response = client
        .get(format!("{}/metrics", server.base))
        .bearer_auth(admin_token(dir))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("metrics text");
    let prefix = format!("convergio_config_reloads_total{{result=\"{result}\"}}");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (a minute at most) until `result` reloads number `count`.
async fn wait_for_reloads(
    client: &reqwest::Client,
    server: &Server,
    dir: &Path,
    result: &str,
    count: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reloads(client, server, dir, result).await < count {
        assert!(
            Instant::now() < deadline,
            "no {result} reload counted in a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies the server certificate fixture `name` (`.pem` and `.key`) over
/// the files the server reads.
fn install_certificate(name: &str, cert: &Path, key: &Path) {
    std::fs::write(key, read(&format!("{name}.key"))).expect("key written");
    std::fs::write(cert, read(&format!("{name}.pem"))).expect("certificate written");
}

/// The config file with TLS from `cert`/`key`, connections kept for minutes
/// (the keep-alive check must not race the idle bound), and `extra` YAML.
fn tls_config(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "version: 1\ntls:\n  cert_file: {}\n  key_file: {}\nserver:\n  header_read_timeout_seconds: 600\n{extra}",
        cert.display(),
        key.display()
    )
}

/// Starts `convergio serve` on `dir` with `config` as its file, without
/// examples and with the allow-list from the file only.
fn serve(dir: &Path, config: &Path) -> Server {
    let config_flag = config.to_string_lossy().into_owned();
    start_logged(
        dir,
        &["--no-examples", "--config", &config_flag],
        &[("CONVERGIO_NETWORK_ALLOW_CIDRS", "")],
        &dir.join("stderr.log"),
    )
}

/// Starts one example agent in this process on a loopback port.
async fn spawn_agent(agent: ExampleAgent) -> RunningAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    convergio_agents::spawn(agent, listener, ServeOptions::default())
        .await
        .expect("agent starts")
}

/// Registers `agent` as the administrator: the status (201, or 4xx when
/// the SSRF guard refuses its loopback address).
async fn register(
    client: &reqwest::Client,
    server: &Server,
    dir: &Path,
    agent: &RunningAgent,
) -> u16 {
    client
        .post(format!("{}/v1/agents", server.base))
        .bearer_auth(admin_token(dir))
        .json(&agent.card())
        .send()
        .await
        .expect("registration answered")
        .status()
        .as_u16()
}

/// One A2A call to `agent` as the administrator: the status and body.
async fn call(client: &reqwest::Client, server: &Server, dir: &Path, agent: &str) -> (u16, String) {
    let response = client
        .post(format!("{}/agents/{agent}", server.base))
        .bearer_auth(admin_token(dir))
        .header("A2A-Version", "1.0")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                "parts": [{"text": "hello"}]}}}),
        )
        .send()
        .await
        .expect("call answered");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

fn tls_files(dir: &Path) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("tls.pem"),
        key: dir.join("tls.key"),
    };
    install_certificate("server", &files.cert, &files.key);
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_renewed_on_disk_is_served_to_the_next_handshake() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path();
    let files = tls_files(dir);
    let config = dir.join("convergio.yaml");
    std::fs::write(&config, tls_config(&files.cert, &files.key, "")).expect("config");
    let server = serve(dir, &config);
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let kept = tls_client();
    assert_eq!(
        served_certificate(&kept, &server).await,
        leaf_der("server.pem")
    );

    // Renewed in place, as certbot or cert-manager would: the config file
    // is untouched.
    install_certificate("server-renewed", &files.cert, &files.key);
    wait_for_reloads(&tls_client(), &server, dir, "ok", 1).await;

    assert_eq!(
        served_certificate(&tls_client(), &server).await,
        leaf_der("server-renewed.pem"),
        "a new handshake gets the renewed certificate"
    );
    assert_eq!(
        served_certificate(&kept, &server).await,
        leaf_der("server.pem"),
        "the connection opened before is still open and serving"
    );
    assert_eq!(reloads(&tls_client(), &server, dir, "refused").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_allow_list_upstream_credential_and_quotas() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path();
    let config = dir.join("convergio.yaml");
    // File checks off: only SIGHUP reloads.
    let without_watch = "version: 1\nreload:\n  watch_interval_seconds: 0\n";
    std::fs::write(&config, without_watch).expect("config");
    let server = serve(dir, &config);
    let client = reqwest::Client::new();
    // The agent takes only `rotated` as its bearer token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let echo = convergio_agents::spawn(
        ExampleAgent::Echo,
        listener,
        ServeOptions {
            gate: Some(GateToken::new("rotated")),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("agent starts");
    let refused = register(&client, &server, dir, &echo).await;
    assert!(
        (400..500).contains(&refused),
        "loopback is not allow-listed yet: {refused}"
    );

    let token = dir.join("echo.token");
    std::fs::write(&token, "first\n").expect("token");
    std::fs::write(
        &config,
        format!(
            "{without_watch}network:\n  allow_cidrs: [127.0.0.0/8]\nquotas:\n  per_agent: {{ per_second: 0.001, burst: 2 }}\nupstream_credentials:\n  echo: {{ bearer_token_file: {} }}\n",
            token.display()
        ),
    )
    .expect("config");
    assert!(
        (400..500).contains(&register(&client, &server, dir, &echo).await),
        "nothing changes before the signal"
    );
    server.hangup();
    wait_for_reloads(&client, &server, dir, "ok", 1).await;
    assert_eq!(register(&client, &server, dir, &echo).await, 201);
    let (status, answer) = call(&client, &server, dir, "echo").await;
    assert!(
        answer.contains("error"),
        "the agent refuses the first token: {status} {answer}"
    );

    // The token file rotated: a SIGHUP reads it again.
    std::fs::write(&token, "rotated\n").expect("token");
    server.hangup();
    wait_for_reloads(&client, &server, dir, "ok", 2).await;
    let (status, answer) = call(&client, &server, dir, "echo").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"result\""), "{answer}");
    assert_eq!(
        call(&client, &server, dir, "echo").await.0,
        429,
        "the reloaded quota allows two calls"
    );
    echo.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_new_configuration_is_refused_whole() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path();
    let files = tls_files(dir);
    let config = dir.join("convergio.yaml");
    std::fs::write(&config, tls_config(&files.cert, &files.key, "")).expect("config");
    let server = serve(dir, &config);
    let client = tls_client();
    let echo = spawn_agent(ExampleAgent::Echo).await;
    assert!((400..500).contains(&register(&client, &server, dir, &echo).await));

    // A valid allow-list change with a certificate that does not exist.
    let allow = "network:\n  allow_cidrs: [127.0.0.0/8]\n";
    let missing = dir.join("missing.pem");
    std::fs::write(&config, tls_config(&missing, &files.key, allow)).expect("config");
    wait_for_reloads(&client, &server, dir, "refused", 1).await;
    assert_eq!(
        served_certificate(&tls_client(), &server).await,
        leaf_der("server.pem"),
        "the old certificate is still served"
    );
    assert!(
        (400..500).contains(&register(&client, &server, dir, &echo).await),
        "the allow-list change came with the broken file and is not applied"
    );

    // The same change with an invalid quota, then with a setting that
    // needs a restart: refused too.
    let bad_quota = format!("{allow}quotas:\n  per_agent: {{ per_second: 1, burst: 0 }}\n");
    std::fs::write(&config, tls_config(&files.cert, &files.key, &bad_quota)).expect("config");
    wait_for_reloads(&client, &server, dir, "refused", 2).await;
    let new_database = format!("{allow}database_url: sqlite://{}/other.db\n", dir.display());
    std::fs::write(&config, tls_config(&files.cert, &files.key, &new_database)).expect("config");
    wait_for_reloads(&client, &server, dir, "refused", 3).await;
    assert!((400..500).contains(&register(&client, &server, dir, &echo).await));
    let log = std::fs::read_to_string(dir.join("stderr.log")).expect("stderr log");
    assert!(
        log.contains("database_url"),
        "the refusal names the setting: {log}"
    );

    // Fixed, the change applies.
    std::fs::write(&config, tls_config(&files.cert, &files.key, allow)).expect("config");
    wait_for_reloads(&client, &server, dir, "ok", 1).await;
    assert_eq!(register(&client, &server, dir, &echo).await, 201);
    assert_eq!(reloads(&client, &server, dir, "refused").await, 3);
    echo.shutdown().await;
}

/// [`tls_client`] presenting the client certificate fixture `name`.
fn client_with_identity(name: &str) -> reqwest::Client {
    let mut pem = read(&format!("{name}.pem"));
    pem.extend(read(&format!("{name}.key")));
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.pem")).expect("ca pem"))
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client")
}

/// Whether a fresh connection with `name`'s client certificate completes
/// its handshake (an unknown CA fails it).
async fn handshake_with(name: &str, server: &Server) -> bool {
    client_with_identity(name)
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_ca_replaced_on_disk_decides_the_next_handshake() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path();
    let files = tls_files(dir);
    let client_ca = dir.join("clients.pem");
    std::fs::write(&client_ca, read("ca.pem")).expect("client ca");
    let config = dir.join("convergio.yaml");
    let client_auth = format!(
        "  client_ca_file: {}\n  client_auth: optional\n",
        client_ca.display()
    );
    let yaml = tls_config(&files.cert, &files.key, "")
        .replace("server:\n", &format!("{client_auth}server:\n"));
    std::fs::write(&config, yaml).expect("config");
    let server = serve(dir, &config);
    assert!(handshake_with("client-spiffe", &server).await);
    assert!(!handshake_with("rogue-client", &server).await);

    std::fs::write(&client_ca, read("rogue-ca.pem")).expect("client ca replaced");
    wait_for_reloads(&tls_client(), &server, dir, "ok", 1).await;
    assert!(handshake_with("rogue-client", &server).await);
    assert!(
        !handshake_with("client-spiffe", &server).await,
        "the old CA is no longer trusted"
    );
}
