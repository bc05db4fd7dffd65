//! The TLS side of the listener: a rustls server configuration (ring
//! provider, ALPN `h2` then `http/1.1`) from PEM files, with client
//! certificates not asked for, optional or required, verified against a
//! configured CA bundle by rustls' `WebPkiClientVerifier`. And the TLS side
//! toward upstreams: the public web PKI by default, or per agent a CA bundle
//! of its own and a client certificate to present ([`upstream_client_config`]).
//!
//! A client certificate from an untrusted CA fails the handshake itself, so
//! such a client never reaches the HTTP layer. A verified leaf is handed to
//! the `Authenticate` layer as a [`PeerCertificate`] connection extension by
//! [`crate::server`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::layers::PeerCertificate;
use crate::GatewayError;

/// Whether the listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates (bearer tokens and API keys only).
    #[default]
    None,
    /// A certificate is verified when presented; clients without one may
    /// still authenticate otherwise.
    Optional,
    /// The handshake fails without a certificate from a trusted CA.
    Required,
}

/// Where the listener's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM bundle of CAs trusted for client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
}

/// A TLS acceptor ready for the listener. Clones share one live server
/// configuration: [`TlsAcceptor::replace`] (a reload, issue 22) gives every
/// handshake from then on the new certificate, key and client CAs, while
/// established connections keep the session they negotiated.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ArcSwap<ServerConfig>>,
}

/// A loaded, checked listener configuration, not yet serving: built whole
/// before anything is swapped, so a bad file changes nothing.
#[derive(Clone)]
pub struct TlsServerConfig(Arc<ServerConfig>);

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

// === impl TlsAcceptor ===

impl TlsAcceptor {
    /// Reads the files and builds the rustls configuration. Errors name the
    /// file, never its content.
    pub fn from_config(config: &TlsConfig) -> Result<Self, GatewayError> {
        Ok(Self::new(TlsServerConfig::load(config)?))
    }

    /// An acceptor serving `config`.
    pub fn new(config: TlsServerConfig) -> Self {
        Self {
            config: Arc::new(ArcSwap::new(config.0)),
        }
    }

    /// Serves `config` to every handshake that starts from now on.
    pub fn replace(&self, config: TlsServerConfig) {
        self.config.store(config.0);
    }

    /// Runs the server side of a handshake with the configuration current
    /// when it starts.
    pub(crate) fn accept<IO>(&self, stream: IO) -> tokio_rustls::Accept<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        tokio_rustls::TlsAcceptor::from(self.config.load_full()).accept(stream)
    }
}

// === impl TlsServerConfig ===

impl TlsServerConfig {
    /// Reads the files and builds the rustls configuration. Errors name the
    /// file, never its content.
    pub fn load(config: &TlsConfig) -> Result<Self, GatewayError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates(&config.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&config.key_file)
            .map_err(|error| config_error(&config.key_file, error))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| GatewayError::internal("choosing the tls protocol versions", error))?;
        let builder = match (config.client_auth, &config.client_ca_file) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(GatewayError::internal_plain(
                    "client certificates need tls.client_ca_file",
                ))
            }
            (client_auth, Some(ca_file)) => {
                let mut roots = RootCertStore::empty();
                for certificate in read_certificates(ca_file)? {
                    roots
                        .add(certificate)
                        .map_err(|error| config_error(ca_file, error))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match client_auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|error| {
                    GatewayError::internal("building the client certificate verifier", error)
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server_config = builder
            .with_single_cert(chain, key)
            .map_err(|error| config_error(&config.cert_file, error))?;
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self(Arc::new(server_config)))
    }
}

/// TLS toward one upstream agent, from its `upstream_credentials` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTlsFiles {
    /// PEM bundle of CAs the upstream's server certificate must chain to
    /// (instead of the public web PKI).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the upstream (mTLS), leaf first.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub client_key_file: Option<PathBuf>,
}

/// The rustls client configuration upstreams without settings of their own
/// are reached with: ring, TLS 1.2 and 1.3, Mozilla's roots.
pub fn public_roots_client_config() -> rustls::ClientConfig {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    client_builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The rustls client configuration for one upstream. Errors name the file,
/// never its content; a certificate without its key (or the reverse) is an
/// error rather than a silent plain connection.
pub fn upstream_client_config(
    files: &UpstreamTlsFiles,
) -> Result<rustls::ClientConfig, GatewayError> {
    let roots = match &files.ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|error| config_error(ca_file, error))?;
            }
            roots
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = client_builder().with_root_certificates(roots);
    match (&files.client_cert_file, &files.client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certificates(cert_file)?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|error| config_error(key_file, error))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| config_error(cert_file, error))
        }
        _ => Err(GatewayError::internal_plain(
            "an upstream client certificate needs both client_cert_file and client_key_file",
        )),
    }
}

fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
}

/// The verified client certificate of a finished handshake, if any.
pub(crate) fn peer_certificate(connection: &rustls::ServerConnection) -> Option<PeerCertificate> {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| PeerCertificate(Arc::new(leaf.as_ref().to_vec())))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, GatewayError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| config_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| config_error(path, error))?;
    if certificates.is_empty() {
        return Err(GatewayError::internal_plain(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

fn config_error<E>(path: &Path, error: E) -> GatewayError
where
    E: std::error::Error + Send + Sync + 'static,
{
    GatewayError::internal(format!("reading the tls file {}", path.display()), error)
}
