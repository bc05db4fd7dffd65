//! `convergio serve` behind its TLS listener, for real (issue #4): the
//! binary reads its certificate, key and client CA from the environment,
//! serves HTTPS, refuses anonymous callers there (anonymous is for the
//! plaintext loopback tour only) while health stays public, turns a client
//! certificate from the CA into a principal, and fails the handshake of a
//! certificate from another CA.

mod support;

use support::start_with;

use convergio_tests::tls::fixture;

fn client(identity: Option<(&str, &str)>) -> reqwest::Client {
    let ca = std::fs::read(fixture("ca.pem")).expect("ca");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(fixture(cert)).expect("cert");
        pem.extend(std::fs::read(fixture(key)).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_speaks_tls_and_takes_client_certificates_as_principals() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let (cert, key, ca) = (
        fixture("server.pem"),
        fixture("server.key"),
        fixture("ca.pem"),
    );
    let server = start_with(
        data_dir.path(),
        &[
            ("CONVERGIO_TLS_CERT_FILE", cert.to_str().expect("utf-8")),
            ("CONVERGIO_TLS_KEY_FILE", key.to_str().expect("utf-8")),
            ("CONVERGIO_TLS_CLIENT_CA_FILE", ca.to_str().expect("utf-8")),
            ("CONVERGIO_TLS_CLIENT_AUTH", "optional"),
        ],
    );
    let base = server
        .base
        .strip_prefix("https://127.0.0.1:")
        .map(|port| format!("https://localhost:{port}"))
        .unwrap_or_else(|| panic!("a TLS listener announces https: {}", server.base));

    let anonymous = client(None);
    let health = anonymous
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("health over tls");
    assert_eq!(health.status(), 200);
    let refused = anonymous
        .get(format!("{base}/v1/agents"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401, "no anonymous access over TLS");
    assert!(refused.headers().contains_key("www-authenticate"));

    let with_certificate = client(Some(("client-spiffe.pem", "client-spiffe.key")));
    let listing = with_certificate
        .get(format!("{base}/v1/agents"))
        .send()
        .await
        .expect("request with a client certificate");
    assert_eq!(
        listing.status(),
        200,
        "a certificate from the CA is a principal"
    );

    let rogue = client(Some(("rogue-client.pem", "rogue-client.key")));
    assert!(
        rogue.get(format!("{base}/healthz")).send().await.is_err(),
        "a certificate from another CA fails the handshake"
    );
    let plaintext = reqwest::get(format!(
        "http://{}/healthz",
        base.trim_start_matches("https://")
    ))
    .await
    .map(|response| response.status().as_u16());
    assert!(
        !matches!(plaintext, Ok(200)),
        "plain HTTP is not served on the TLS port: {plaintext:?}"
    );
}
