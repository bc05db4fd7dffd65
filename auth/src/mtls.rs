//! Principals from TLS client certificates. The TLS handshake (rustls with a
//! client-certificate verifier over the configured CAs) has already proved
//! the chain and possession of the key; this module only reads the identity
//! from the leaf's subject alternative names.
//!
//! A SPIFFE-style URI SAN `spiffe://<org-domain>/<path>` gives subject = the
//! URI and org = its host. Otherwise the first DNS SAN gives subject = the
//! name and org = the name without its first label (`billing.acme.example` →
//! `acme.example`). A certificate with neither is refused: the common name
//! is not an identity (RFC 6125 deprecated it for that).

use convergio_schemas::{AuthMethod, Principal};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::AuthError;

/// How certificate identities become principals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsConfig {
    /// Scopes every certificate principal gets.
    pub scopes: Vec<String>,
}

/// Reads the principal from a DER-encoded leaf certificate.
pub fn principal_from_certificate(der: &[u8], config: &MtlsConfig) -> Result<Principal, AuthError> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|_| AuthError::BadCertificate {
            reason: "not a DER X.509 certificate".to_owned(),
        })?;
    let names = certificate
        .subject_alternative_name()
        .map_err(|_| AuthError::BadCertificate {
            reason: "malformed subject alternative names".to_owned(),
        })?
        .map(|extension| extension.value.general_names.clone())
        .unwrap_or_default();
    let spiffe = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix("spiffe://").map(|rest| (*uri, rest)),
        _ => None,
    });
    let (subject, org) = if let Some((uri, rest)) = spiffe {
        let host = rest.split('/').next().unwrap_or("");
        (uri.to_owned(), Some(host.to_ascii_lowercase()))
    } else if let Some(dns) = names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    }) {
        let org = dns
            .split_once('.')
            .map(|(_, parent)| parent)
            .filter(|parent| parent.contains('.'))
            .map(str::to_ascii_lowercase);
        (dns.to_ascii_lowercase(), org)
    } else {
        return Err(AuthError::BadCertificate {
            reason: "no URI or DNS subject alternative name".to_owned(),
        });
    };
    Ok(Principal {
        subject,
        org,
        scopes: config.scopes.clone(),
        method: AuthMethod::Mtls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identity_from_spiffe_and_dns_sans() {
        let config = MtlsConfig::default();
        let spiffe = principal_from_certificate(
            include_bytes!("../tests/fixtures/client-spiffe.der"),
            &config,
        )
        .expect("spiffe cert");
        assert_eq!(spiffe.subject, "spiffe://acme.example/agents/researcher");
        assert_eq!(spiffe.org.as_deref(), Some("acme.example"));
        assert_eq!(spiffe.method, AuthMethod::Mtls);

        let dns =
            principal_from_certificate(include_bytes!("../tests/fixtures/client-dns.der"), &config)
                .expect("dns cert");
        assert_eq!(dns.subject, "billing.acme.example");
        assert_eq!(dns.org.as_deref(), Some("acme.example"));
    }

    #[test]
    fn refuses_certificates_without_identity_or_garbage() {
        let config = MtlsConfig::default();
        assert!(matches!(
            principal_from_certificate(
                include_bytes!("../tests/fixtures/client-nosan.der"),
                &config
            ),
            Err(AuthError::BadCertificate { .. })
        ));
        assert!(principal_from_certificate(b"not a certificate", &config).is_err());
    }
}
