//! The TLS listener (issue 4): HTTP/1.1 and HTTP/2 by ALPN, client
//! certificates from the configured CA become mTLS principals, a client
//! certificate from an untrusted CA fails the handshake, and required
//! client authentication refuses clients without one.

mod support;

use std::sync::Arc;

use convergio_gateway::tls::{ClientAuth, TlsConfig};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use support::security::{fixture, spawn_secure_gateway, Issuer, SecureGateway, SecureOptions};
use tokio::net::TcpStream;

fn tls_config(client_auth: ClientAuth) -> TlsConfig {
    TlsConfig {
        cert_file: fixture("server.pem"),
        key_file: fixture("server.key"),
        client_ca_file: Some(fixture("ca.pem")),
        client_auth,
    }
}

async fn tls_gateway(client_auth: ClientAuth) -> (SecureGateway, Issuer) {
    let issuer = Issuer::new("key-1");
    let mut options = SecureOptions::new(&issuer);
    options.tls = Some(tls_config(client_auth));
    (spawn_secure_gateway(options).await, issuer)
}

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

fn client_config(identity: Option<(&str, &str)>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(fixture("ca.pem")).expect("ca") {
        roots.add(certificate.expect("ca cert")).expect("add ca");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(fixture(cert))
                    .expect("cert")
                    .map(|c| c.expect("cert"))
                    .collect(),
                PrivateKeyDer::from_pem_file(fixture(key)).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

#[tokio::test]
async fn client_certificates_from_the_ca_become_mtls_principals() {
    let (gateway, _issuer) = tls_gateway(ClientAuth::Optional).await;
    let url = format!("https://localhost:{}/whoami", gateway.address.port());
    let response = client(Some(("client-spiffe.pem", "client-spiffe.key")))
        .get(&url)
        .send()
        .await
        .expect("mtls request");
    assert_eq!(response.status(), 200);
    let principal: Value = response.json().await.expect("json");
    assert_eq!(
        principal["subject"],
        "spiffe://acme.example/agents/researcher"
    );
    assert_eq!(principal["org"], "acme.example");
    assert_eq!(principal["method"], "mtls");

    // Optional client auth: no certificate and no token is a plain 401.
    let response = client(None).get(&url).send().await.expect("request");
    assert_eq!(response.status(), 401);
    // A certificate without an identity SAN is refused at the HTTP layer.
    let response = client(Some(("client-nosan.pem", "client-nosan.key")))
        .get(&url)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn untrusted_client_certificates_fail_the_handshake() {
    for client_auth in [ClientAuth::Optional, ClientAuth::Required] {
        let (gateway, _issuer) = tls_gateway(client_auth).await;
        let url = format!("https://localhost:{}/whoami", gateway.address.port());
        let result = client(Some(("rogue-client.pem", "rogue-client.key")))
            .get(&url)
            .send()
            .await;
        assert!(
            result.is_err(),
            "{client_auth:?}: a rogue CA's client must not get an answer"
        );
        let health = client(Some(("client-dns.pem", "client-dns.key")))
            .get(format!(
                "https://localhost:{}/healthz",
                gateway.address.port()
            ))
            .send()
            .await
            .expect("a trusted client still gets in");
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test]
async fn required_client_auth_refuses_clients_without_a_certificate() {
    let (gateway, issuer) = tls_gateway(ClientAuth::Required).await;
    let url = format!("https://localhost:{}/whoami", gateway.address.port());
    let result = client(None)
        .get(&url)
        .bearer_auth(issuer.token("alice", "acme.example"))
        .send()
        .await;
    assert!(result.is_err(), "no certificate, no handshake");
}

#[tokio::test]
async fn alpn_negotiates_http2_and_http1() {
    let (gateway, _issuer) = tls_gateway(ClientAuth::Optional).await;
    for (alpn, expected) in [
        (b"h2".as_slice(), hyper::Version::HTTP_2),
        (b"http/1.1".as_slice(), hyper::Version::HTTP_11),
    ] {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(
            Some(("client-dns.pem", "client-dns.key")),
            &[alpn],
        )));
        let tcp = TcpStream::connect(gateway.address).await.expect("connect");
        let tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let authority = format!("localhost:{}", gateway.address.port());
        let response = if expected == hyper::Version::HTTP_2 {
            let request = hyper::Request::get(format!("https://{authority}/whoami"))
                .body(Empty::<bytes::Bytes>::new())
                .expect("request");
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("h2 request")
        } else {
            let request = hyper::Request::get("/whoami")
                .header("host", &authority)
                .body(Empty::<bytes::Bytes>::new())
                .expect("request");
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await.expect("h1 request")
        };
        assert_eq!(response.version(), expected);
        assert_eq!(response.status(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let principal: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(principal["subject"], "billing.acme.example");
    }
}
