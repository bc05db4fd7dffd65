//! The organisation's Ed25519 signing key (federation): generated with
//! `ring` as PKCS#8, identified by its RFC 7638 JWK thumbprint (`kid`), and
//! published as an OKP JWK. Signed cross-organisation calls
//! ([`crate::peer_call`]) and re-signed agent cards use it.
//!
//! No file I/O here: the caller stores the PKCS#8 document (as PEM, see
//! [`OrgSigningKey::to_pem`]) and hands it back to [`OrgSigningKey::from_pem`].

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Value};

use crate::AuthError;

/// The path every organisation's gateway publishes its key set at
/// ([`OrgSigningKey::jwks`]): part of the federation wire contract, so peers
/// fetch it and the gateway serves it to anyone, without credentials.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// An organisation's Ed25519 signing key with its `kid`.
pub struct OrgSigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for OrgSigningKey {
    // Hand-written so the private key can never be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

// === impl OrgSigningKey ===

impl OrgSigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, AuthError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| {
            AuthError::BadKeySet {
                reason: "the system random source failed".to_owned(),
            }
        })?;
        Self::from_pkcs8(document.as_ref())
    }

    /// The key of a PKCS#8 v1 or v2 DER document.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, AuthError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|error| {
            AuthError::BadKeySet {
                reason: format!("not an Ed25519 PKCS#8 key: {error}"),
            }
        })?;
        let kid = okp_thumbprint(pair.public_key().as_ref());
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
            kid,
        })
    }

    /// The key of a PEM `PRIVATE KEY` block (PKCS#8).
    pub fn from_pem(text: &str) -> Result<Self, AuthError> {
        let start = text.find(PEM_BEGIN).ok_or_else(|| AuthError::BadKeySet {
            reason: "no -----BEGIN PRIVATE KEY----- block".to_owned(),
        })?;
        let rest = &text[start + PEM_BEGIN.len()..];
        let end = rest.find(PEM_END).ok_or_else(|| AuthError::BadKeySet {
            reason: "no -----END PRIVATE KEY----- line".to_owned(),
        })?;
        let body: String = rest[..end].split_whitespace().collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|error| AuthError::BadKeySet {
                reason: format!("private key is not base64: {error}"),
            })?;
        Self::from_pkcs8(&der)
    }

    /// The PKCS#8 document as PEM, for the key file.
    pub fn to_pem(&self) -> String {
        let encoded = STANDARD.encode(&self.pkcs8);
        let mut pem = String::with_capacity(encoded.len() + 80);
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    /// Signs `msg` (Ed25519: 64 bytes).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as a JWK (`kty` OKP, `crv` Ed25519, `alg` EdDSA, `use` sig, `kid`).
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public_key()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// The JWKS this organisation publishes at [`JWKS_PATH`].
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: base64url of the
/// SHA-256 of `{"crv":"Ed25519","kty":"OKP","x":"…"}` (members in
/// lexicographic order, no whitespace).
pub fn okp_thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public_key)
    );
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// An Ed25519 public key read from a JWK, with its thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPublicKey {
    /// The RFC 7638 thumbprint (what `kid` must say).
    pub kid: String,
    /// The raw 32-byte key.
    pub key: Vec<u8>,
}

// === impl PeerPublicKey ===

impl PeerPublicKey {
    /// Reads an OKP/Ed25519 JWK. The `kid` is always the thumbprint: a
    /// `kid` member that says otherwise is refused, so a key cannot pose as
    /// another.
    pub fn from_jwk(jwk: &Value) -> Result<Self, AuthError> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            return Err(AuthError::BadKeySet {
                reason: "only OKP Ed25519 keys are accepted".to_owned(),
            });
        }
        let x = field("x").ok_or_else(|| AuthError::BadKeySet {
            reason: "the key has no x".to_owned(),
        })?;
        let key = URL_SAFE_NO_PAD
            .decode(x.as_bytes())
            .map_err(|error| AuthError::BadKeySet {
                reason: format!("x is not base64url: {error}"),
            })?;
        if key.len() != 32 {
            return Err(AuthError::BadKeySet {
                reason: "an Ed25519 key is 32 bytes".to_owned(),
            });
        }
        let kid = okp_thumbprint(&key);
        if let Some(given) = field("kid") {
            if given != kid {
                return Err(AuthError::BadKeySet {
                    reason: format!("kid {given:?} is not the key's thumbprint {kid:?}"),
                });
            }
        }
        Ok(Self { kid, key })
    }

    /// The key as a JWK.
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&self.key),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    /// Every usable Ed25519 key of a JWKS (`{"keys": […]}`); other key types
    /// are skipped, a set with none is an error.
    pub fn from_jwks(jwks: &Value) -> Result<Vec<Self>, AuthError> {
        let keys: Vec<Self> = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| AuthError::BadKeySet {
                reason: "a JWKS is an object with a keys array".to_owned(),
            })?
            .iter()
            .filter_map(|jwk| Self::from_jwk(jwk).ok())
            .collect();
        if keys.is_empty() {
            return Err(AuthError::BadKeySet {
                reason: "the JWKS holds no Ed25519 key".to_owned(),
            });
        }
        Ok(keys)
    }
}

/// The organisation key signs the cards the gateway serves (A2A card
/// signatures, EdDSA) with the same `kid` it publishes in its JWKS.
impl crate::card_signature::CardSigner for OrgSigningKey {
    fn kid(&self) -> &str {
        OrgSigningKey::kid(self)
    }

    fn algorithm(&self) -> crate::jwt::Algorithm {
        crate::jwt::Algorithm::EdDsa
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        OrgSigningKey::sign(self, message)
    }
}

impl OrgSigningKey {
    /// The public half as a card-verification key (no expiry), for the
    /// registry to recognise cards this organisation signed.
    pub fn card_key(&self) -> crate::card_signature::CardKey {
        crate::card_signature::CardKey::new(
            self.kid().to_owned(),
            crate::jwt::VerifyingKey::Ed25519(self.public_key().to_vec()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_the_kid_is_the_jwk_thumbprint() {
        let key = OrgSigningKey::generate().expect("generates");
        let again = OrgSigningKey::from_pem(&key.to_pem()).expect("parses its own pem");
        assert_eq!(key.kid(), again.kid());
        let public = PeerPublicKey::from_jwk(&key.public_jwk()).expect("own jwk");
        assert_eq!(public.kid, key.kid());
        assert_eq!(public.key, key.public_key());
        assert_eq!(key.sign(b"m").len(), 64);
    }

    #[test]
    fn rfc_8037_example_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the example public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .expect("base64url");
        assert_eq!(
            okp_thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_keys_that_are_not_ed25519_or_lie_about_their_kid() {
        let key = OrgSigningKey::generate().expect("generates");
        let mut lying = key.public_jwk();
        lying["kid"] = Value::from("someone-else");
        assert!(PeerPublicKey::from_jwk(&lying).is_err());
        assert!(PeerPublicKey::from_jwk(&json!({"kty": "RSA", "n": "x", "e": "AQAB"})).is_err());
        assert!(
            PeerPublicKey::from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})).is_err()
        );
        assert!(OrgSigningKey::from_pem("not a key").is_err());
        assert!(PeerPublicKey::from_jwks(&json!({"keys": []})).is_err());
    }
}
